"""The verdict: thresholds and the checks that turn a fitted result into :class:`Finding` objects.

Thresholds (module constants, all from the ArviZ/Stan recommendations):

* R-hat (rank-normalised, split): > 1.01 borderline, > 1.05 failed;
* bulk and tail effective sample size: < 400 borderline, < 100 failed;
* divergent transitions after warm-up: any is a failure;
* tree-depth saturation: any is borderline, more than 10 % of the draws of a chain a failure;
* E-BFMI (energy Bayesian fraction of missing information): < 0.3 in a chain is a failure;
* ODE/PDE solver failures while sampling: any is a failure (during warm-up only: a note);
* Pareto-k̂ of importance weights (Laplace/SVI against the posterior): > 0.7 failed, > 0.5 borderline;
* PSIS-LOO Pareto-k̂ of an observation above ArviZ's ``good_k`` (0.7 for large samples): borderline.

The checks are combined (worst first) by :func:`bayesbio.report.diagnostics.analyse`. This module
also holds the small accessors of an InferenceData (attrs, settings, sample stats, E-BFMI) that
:mod:`~bayesbio.report.tables` shares.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from bayesbio.report.tables import LooResult

__all__ = [
    "APPROXIMATIONS",
    "BFMI_FAIL",
    "CORRELATION_NOTE",
    "ESS_FAIL",
    "ESS_WARN",
    "Finding",
    "LAPLACE_GRADIENT_WARN",
    "PARETO_K_FAIL",
    "PARETO_K_WARN",
    "RHAT_FAIL",
    "RHAT_WARN",
    "SEVERITIES",
    "TREEDEPTH_FAIL_FRACTION",
]

RHAT_WARN = 1.01
RHAT_FAIL = 1.05
ESS_WARN = 400.0
ESS_FAIL = 100.0
BFMI_FAIL = 0.3
TREEDEPTH_FAIL_FRACTION = 0.10
PARETO_K_WARN = 0.5
PARETO_K_FAIL = 0.7
CORRELATION_NOTE = 0.95
LAPLACE_GRADIENT_WARN = 1e-3

SEVERITIES = ("fail", "warn", "note")
APPROXIMATIONS = ("svi", "laplace")


@dataclass
class Finding:
    """One line of the verdict.

    ``severity`` is ``"fail"`` (the results should not be trusted as they are), ``"warn"``
    (borderline: check before relying on the results) or ``"note"`` (information, not a problem).
    """

    check: str
    severity: str
    message: str
    suggestion: str = ""

    def __str__(self) -> str:
        text = f"[{self.severity.upper()}] {self.check}: {self.message}"
        return f"{text} Suggestion: {self.suggestion}" if self.suggestion else text


# ----------------------------------------------------------------------------- helpers


def _attrs(idata) -> dict[str, Any]:
    return dict(idata.posterior.attrs) if hasattr(idata, "posterior") else {}


def _num(value, default=None):
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def _settings(attrs) -> dict[str, Any]:
    raw = attrs.get("settings")
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    try:
        out = json.loads(str(raw))
    except ValueError:
        return {"settings": str(raw)}
    return out if isinstance(out, dict) else {"settings": out}


def _metric_advice(metric) -> str:
    """The mass-matrix remedy for correlated parameters, unless the run already used it."""
    if str(metric).startswith("dense"):  # also "dense, in Laplace-whitened coordinates"
        return "the run already adapted a dense mass matrix"
    return "sample_nuts(..., dense_mass=True) adapts a dense mass matrix"


def _stats(idata):
    return idata.sample_stats if hasattr(idata, "sample_stats") else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _per_chain(counts) -> str:
    return ", ".join(f"chain {c}: {int(n)}" for c, n in enumerate(counts))


def _names(items, limit=5) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _bfmi(idata) -> np.ndarray | None:
    stats = _stats(idata)
    if stats is None or "energy" not in stats:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(az.bfmi(idata), dtype=float)
    except Exception:  # noqa: BLE001 - a single draw, constant energy, ...
        return None


# ----------------------------------------------------------------------------- verdict


def _check_divergences(idata, settings) -> list[Finding]:
    stats = _stats(idata)
    if stats is None or "diverging" not in stats:
        return []
    counts = np.asarray(stats["diverging"].astype(int).sum("draw").values).reshape(-1)
    total = int(counts.sum())
    if total == 0:
        return []
    n = int(stats["diverging"].size)
    target = _num(settings.get("target_accept"))
    raise_to = 0.99 if target is not None and target >= 0.95 else 0.95
    now = f" (now {target:g})" if target is not None else ""
    return [
        Finding(
            "Divergences",
            "fail",
            f"{_plural(total, 'divergent transition')} after warm-up ({100 * total / n:.1f}% of the draws; "
            f"{_per_chain(counts)}). The sampler could not follow the curvature of the posterior, so the "
            "draws may be biased (typically missing a narrow region such as the neck of a hierarchical "
            "funnel).",
            f"raise target_accept{now} to e.g. {raise_to} (sample_nuts(..., target_accept={raise_to})); if "
            "divergences remain, reparameterise (non-centred form for hierarchical effects: "
            "theta = mu + tau * z with z ~ Normal(0, 1)) and check that the priors are not needlessly wide. "
            "The pair plot marks divergent draws in red.",
        )
    ]


def _check_rhat_ess(summary: pd.DataFrame | None, metric: str | None = None) -> list[Finding]:
    if summary is None:
        return []
    out = []
    if "r_hat" in summary:
        rhat = summary["r_hat"].astype(float)
        bad = rhat[rhat > RHAT_WARN].sort_values(ascending=False)
        if len(bad):
            worst = float(bad.iloc[0])
            out.append(
                Finding(
                    "R-hat",
                    "fail" if worst > RHAT_FAIL else "warn",
                    f"{_plural(len(bad), 'component')} with R-hat > {RHAT_WARN} (worst {worst:.3f}: "
                    f"{_names(f'{k} {v:.3f}' for k, v in bad.items())}). The chains do not agree: they "
                    "have not mixed or converged yet, or they sit in different modes.",
                    "run longer (more warm-up and draws) and with more chains (at least 4); if the "
                    "chains stay apart, look at the trace plot for multiple modes and consider better "
                    "initial values or more informative priors.",
                )
            )
    for column, kind in (("ess_bulk", "bulk"), ("ess_tail", "tail")):
        if column not in summary:
            continue
        ess = summary[column].astype(float)
        low = ess[ess < ESS_WARN].sort_values()
        if len(low):
            worst = float(low.iloc[0])
            out.append(
                Finding(
                    f"Effective sample size ({kind})",
                    "fail" if worst < ESS_FAIL else "warn",
                    f"{_plural(len(low), 'component')} with {kind} ESS < {ESS_WARN:.0f} (lowest {worst:.0f}: "
                    f"{_names(f'{k} {v:.0f}' for k, v in low.items())}). "
                    + ("Posterior means and intervals" if kind == "bulk" else "Tail quantiles and intervals")
                    + " are estimated with a large Monte-Carlo error.",
                    "run longer (more draws per chain or more chains); a very low ESS with long trees points "
                    f"to strong correlations: consider reparameterising ({_metric_advice(metric)}).",
                )
            )
    return out


def _check_treedepth(idata, settings) -> list[Finding]:
    stats = _stats(idata)
    if stats is None:
        return []
    if "reached_max_treedepth" in stats:
        hits = stats["reached_max_treedepth"].astype(int)
    elif "tree_depth" in stats and "max_tree_depth" in settings:
        hits = (stats["tree_depth"] >= int(settings["max_tree_depth"])).astype(int)
    else:
        return []
    counts = np.asarray(hits.sum("draw").values).reshape(-1)
    total = int(counts.sum())
    if total == 0:
        return []
    draws = int(hits.sizes["draw"])
    worst = float(counts.max()) / max(1, draws)
    depth = settings.get("max_tree_depth")
    now = f" (now {int(depth)})" if depth is not None else ""
    return [
        Finding(
            "Tree depth",
            "fail" if worst > TREEDEPTH_FAIL_FRACTION else "warn",
            f"{_plural(total, 'draw')} hit the maximum tree depth{now} ({_per_chain(counts)}; worst chain "
            f"{100 * worst:.1f}%). The trajectories were cut short: sampling is inefficient and may explore "
            "the posterior poorly.",
            "raise max_tree_depth (e.g. sample_nuts(..., max_tree_depth=12)) or, better, reparameterise "
            "(rescale parameters to order one, non-centred forms; for correlated ones "
            f"{_metric_advice(idata.posterior.attrs.get('metric') if hasattr(idata, 'posterior') else None)}).",
        )
    ]


def _check_bfmi(idata) -> list[Finding]:
    bfmi = _bfmi(idata)
    if bfmi is None:
        return []
    low = [(c, float(v)) for c, v in enumerate(bfmi) if np.isfinite(v) and v < BFMI_FAIL]
    if not low:
        return []
    return [
        Finding(
            "E-BFMI",
            "fail",
            f"E-BFMI < {BFMI_FAIL} in {_plural(len(low), 'chain')} "
            f"({', '.join(f'chain {c}: {v:.2f}' for c, v in low)}). The momentum resampling barely changes "
            "the energy, so the sampler explores the tails slowly (a heavy-tailed or funnel-shaped "
            "posterior).",
            "reparameterise (non-centred hierarchical effects, log-scale for positive parameters) or "
            "make the "
            "priors more informative; running longer alone rarely helps.",
        )
    ]


def _check_solver(idata, method) -> list[Finding]:
    stats = _stats(idata)
    if stats is None:
        return []
    out = []
    suggestion = (
        "tighten the priors to physiologically plausible ranges, use a stiff solver "
        "(e.g. solver='kvaerno5' in bb.solve), or raise max_steps."
    )
    if "solver_failures" in stats:
        var = stats["solver_failures"]
        counts = (
            np.asarray(var.sum("draw").values).reshape(-1) if "draw" in var.dims else np.asarray(var.values)
        )
        total = int(counts.sum())
        if total:
            from bayesbio.infer._patients import patient_failure_table

            who = ""  # population models: the patients with most failed solves while sampling
            patients = patient_failure_table(idata)
            if patients is not None and "sampling" in patients and patients["sampling"].sum() > 0:
                worst = patients[patients["sampling"] > 0]
                worst = worst.sort_values("sampling", ascending=False, kind="stable")
                named = _names([f"{p} ({int(n)})" for p, n in worst["sampling"].items()], limit=3)
                who = f" Failed solves by {patients.index.name}, most first: {named}."
            where = (
                "draws with a non-finite log density (failed solves)"
                if method == "laplace"
                else "failed ODE/PDE solves while sampling"
            )
            out.append(
                Finding(
                    "ODE solver failures",
                    "fail",
                    f"{total} {where} ({_per_chain(counts)}). Parameter values where the solver fails are "
                    "treated as impossible, which can cut off part of the posterior and cause divergences."
                    + who,
                    suggestion,
                )
            )
    for name, phase in (("warmup_solver_failures", "warm-up"), ("fit_solver_failures", "the fit")):
        if name in stats:
            counts = np.asarray(stats[name].values).reshape(-1)
            total = int(counts.sum())
            if total:
                out.append(
                    Finding(
                        f"ODE solver failures ({phase})",
                        "note",
                        f"{total} failed solves during {phase} ({_per_chain(counts)}), none of them in "
                        "the kept "
                        "draws counted above. Early exploration often visits extreme parameter values; "
                        "this is "
                        "harmless unless it is frequent or failures also occur in the draws.",
                        "if warm-up is slow or unstable, " + suggestion if total > 100 else "",
                    )
                )
    return out


def _check_approximation(idata, method, importance_k) -> list[Finding]:
    attrs = _attrs(idata)
    out = []
    if method == "svi" and "converged" in attrs and not int(attrs["converged"]):
        steps = _settings(attrs).get("steps")
        out.append(
            Finding(
                "SVI convergence",
                "fail",
                "the ELBO was still changing at the end of the optimisation"
                + (f" ({steps} steps)" if steps else "")
                + ", so the approximation is not at its optimum.",
                "raise steps or lower learning_rate (see the ELBO trace below); for results you rely on, "
                "use NUTS (bb.sample_nuts).",
            )
        )
    if method in APPROXIMATIONS:
        label = "Laplace" if method == "laplace" else "SVI"
        if importance_k is None:
            out.append(
                Finding(
                    f"{label} accuracy (Pareto-k)",
                    "note",
                    "importance weights of the posterior against the approximation are not stored for this "
                    f"{label} run, so the Pareto-k check of the approximation could not be done: its "
                    "accuracy "
                    "is unverified. R-hat and ESS do not apply to independent draws from an approximation.",
                    "check the conclusions you rely on with NUTS (bb.sample_nuts)."
                    if method == "svi"
                    else "",
                )
            )
        elif importance_k > PARETO_K_WARN:
            out.append(
                Finding(
                    f"{label} accuracy (Pareto-k)",
                    "fail" if importance_k > PARETO_K_FAIL else "warn",
                    f"Pareto-k of the importance weights is {importance_k:.2f} (> "
                    f"{PARETO_K_FAIL if importance_k > PARETO_K_FAIL else PARETO_K_WARN}): the approximation "
                    "differs materially from the posterior (skewed, heavy-tailed, or multimodal).",
                    "use NUTS (bb.sample_nuts) for these results.",
                )
            )
    if method == "laplace":
        g = _num(attrs.get("mode_gradient_norm"))
        if g is not None and g > LAPLACE_GRADIENT_WARN:
            out.append(
                Finding(
                    "Laplace mode",
                    "warn",
                    f"the mode search stopped with gradient norm {g:.2e} (> {LAPLACE_GRADIENT_WARN:g}): the "
                    "Gaussian may be off-centre.",
                    "raise max_iter or more starts, or use NUTS.",
                )
            )
    return out


def _check_loo(loo: LooResult | None) -> list[Finding]:
    if loo is None:
        return []
    flagged = loo.flagged()
    if not flagged:
        return []
    return [
        Finding(
            "PSIS-LOO Pareto-k",
            "warn",
            f"{_plural(len(flagged), 'observation')} with Pareto-k > {loo.good_k:.2f} "
            f"({_names(f'{lab} {k:.2f}' for lab, k in flagged)}): the LOO estimate is unreliable for them; "
            "they are highly influential (outliers, or a model that misfits them).",
            "look at these observations in the posterior predictive plots; consider a heavier-tailed noise "
            "model (e.g. bb.StudentTNoise) or K-fold cross-validation for model comparison.",
        )
    ]


def _check_pairs(pairs, metric: str | None = None) -> list[Finding]:
    strong = [(a, b, r) for a, b, r in pairs if abs(r) > CORRELATION_NOTE]
    if not strong:
        return []
    return [
        Finding(
            "Identifiability hint",
            "note",
            "strongly correlated posterior components: "
            + "; ".join(f"{a} and {b} (r = {r:+.2f})" for a, b, r in strong)
            + ". The data constrain a combination of these better than each one (or one is a deterministic "
            "function of the other).",
            "if unintended, reparameterise in the well-identified combination or add data that separate them "
            f"({_metric_advice(metric)}).",
        )
    ]


def _sorted(findings):
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: rank.get(f.severity, len(rank)))
