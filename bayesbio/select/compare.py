"""Compare models: fit each, score predictive accuracy and evidence, weigh them.

:func:`compare_models` fits every model with NUTS, computes PSIS-LOO (K-fold refits where
Pareto ``k`` is high), the log evidence by tempered SMC (tempering from a multivariate t fitted to
the NUTS draws) and by bridge sampling, posterior model
probabilities under prior model weights, and stacking weights (``arviz.compare``, method
``"stacking"``, Yao et al. 2018). It works for any bayesbio model: constitutive, ODE,
population or PDE.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from bayesbio.errors import ModelError, OptionError, describe
from bayesbio.select.bridge import log_evidence_bridge
from bayesbio.select.evidence import EvidenceEstimate, posterior_model_probabilities
from bayesbio.select.loo import elpd
from bayesbio.select.smc import log_evidence_smc

__all__ = ["COLUMNS", "Comparison", "compare_models", "stacking_weights"]

#: Columns of the comparison table (one row per model).
COLUMNS = ["model", "elpd_loo", "elpd_loo_se", "p_loo", "max_pareto_k", "log_evidence", "log_evidence_se",
           "posterior_prob", "stacking_weight"]

EVIDENCE_METHODS = ("smc", "bridge")


@dataclass
class Comparison:
    """Result of :func:`compare_models`.

    ``table`` has exactly :data:`COLUMNS`, sorted by ``elpd_loo``; ``details`` adds per model
    the elpd method (``psis-loo``, ``kfold-K``, ``logo``), every evidence estimate and timings;
    ``fits``, ``elpd`` and ``evidence`` keep the InferenceData, ELPDData and EvidenceEstimates.
    """

    table: pd.DataFrame
    details: pd.DataFrame
    fits: dict[str, Any] = field(default_factory=dict)
    elpd: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, dict[str, EvidenceEstimate]] = field(default_factory=dict)


def stacking_weights(elpds: Mapping[str, Any]) -> dict[str, float]:
    """Stacking weights of predictive distributions from pointwise ELPDs (``arviz.compare``)."""
    import arviz as az

    if not isinstance(elpds, Mapping) or not elpds:
        raise OptionError(f"'elpds' must be a non-empty dict {{model: ELPDData}}; got {describe(elpds)}")
    if len(elpds) == 1:
        return {next(iter(elpds)): 1.0}
    sizes = {name: int(e["n_data_points"]) for name, e in elpds.items()}
    if len(set(sizes.values())) != 1:
        raise ModelError(f"stacking needs the same data points for every model; got point counts {sizes}")
    table = az.compare(dict(elpds), ic="loo", method="stacking")
    return {name: float(table.loc[name, "weight"]) for name in elpds}


def _model_name(model) -> str:
    from pathlib import Path

    from bayesbio.model import ModelSpec

    if isinstance(model, ModelSpec):
        return model.name
    if isinstance(model, str):
        return Path(model).stem if model.endswith(".py") else model
    return getattr(model, "__name__", "model")


def compare_models(
    models: Sequence | Mapping[str, Any],
    data=None,
    *,
    chains: int = 4,
    warmup: int = 1000,
    samples: int = 1000,
    seed: int = 0,
    evidence: Sequence[str] = EVIDENCE_METHODS,
    particles: int = 2000,
    smc_runs: int = 4,
    prior_weights: Sequence[float] | Mapping[str, float] | None = None,
    k_threshold: float = 0.7,
    folds: int = 10,
    groups=None,
    progress: bool | None = None,
    nuts_options: Mapping[str, Any] | None = None,
    smc_options: Mapping[str, Any] | None = None,
    log=None,
) -> Comparison:
    """Fit and compare models by LOO, model evidence, posterior probability and stacking.

    Parameters
    ----------
    models : list or dict
        Bundled model names, model-script paths, ModelSpecs or model functions (a dict gives
        them names; functions need ``data``).
    data : dict, path or None
        Data for every model (``None``: each model's bundled data).
    chains, warmup, samples, seed : int
        NUTS settings of each fit (K-fold refits use the same).
    evidence : sequence of {"smc", "bridge"}
        Evidence estimators to run; the first one fills ``log_evidence`` in the table (and
        the posterior probabilities), the others are in ``details`` as checks.
    particles, smc_runs : int
        SMC particles per run and independent runs (their spread is the SMC error).
    prior_weights : sequence or dict, optional
        Prior model probabilities (normalised); default uniform.
    k_threshold : float
        Pareto ``k`` above which PSIS-LOO is replaced by refits.
    folds, groups
        K-fold settings of the fallback (see :func:`bayesbio.select.kfold`).
    progress : bool, optional
    nuts_options : dict, optional
        Further :func:`bayesbio.sample_nuts` options (e.g. ``target_accept``).
    smc_options : dict, optional
        Further :func:`bayesbio.select.log_evidence_smc` options (e.g. ``target_ess``).
    log : callable, optional
        Called with one-line progress messages (e.g. ``print``).

    Returns
    -------
    Comparison
    """
    from bayesbio.infer import sample_nuts
    from bayesbio.select._logdensity import log_density

    if isinstance(models, Mapping):
        named = dict(models)
    elif isinstance(models, (list, tuple)):
        named = {}
        for m in models:
            name = _model_name(m)
            if name in named:
                raise OptionError(f"model '{name}' is given twice; pass a dict to name the models")
            named[name] = m
    else:
        raise OptionError(f"'models' must be a list or dict of models; got {describe(models)}")
    if not named:
        raise OptionError("'models' is empty: give at least one model")
    evidence = list(evidence)
    bad = [e for e in evidence if e not in EVIDENCE_METHODS]
    if bad or not evidence:
        raise OptionError(f"'evidence' must be a non-empty list drawn from {list(EVIDENCE_METHODS)}; got {evidence}")
    if prior_weights is not None and not isinstance(prior_weights, Mapping):
        prior_weights = dict(zip(named, prior_weights)) if len(prior_weights) == len(named) else prior_weights
    say = log or (lambda message: None)
    fit_opts = dict(chains=chains, warmup=warmup, samples=samples, progress=progress, **(nuts_options or {}))

    fits, elpds, methods, estimates, rows, timing = {}, {}, {}, {}, [], {}
    for i, (name, model) in enumerate(named.items()):
        t0 = time.perf_counter()
        say(f"[{name}] NUTS {chains} x ({warmup} + {samples})")
        idata = sample_nuts(model, data, seed=seed + i, **fit_opts)
        fits[name] = idata
        t1 = time.perf_counter()
        e, method = elpd(model, idata, data, k_threshold=k_threshold, folds=folds, groups=groups, seed=seed + i,
                         **fit_opts)
        elpds[name], methods[name] = e, method
        say(f"[{name}] {method}: elpd {float(e['elpd_loo']):.2f} ± {float(e['se']):.2f}, "
            f"max Pareto k {float(np.max(e['pareto_k'])):.2f}")
        t2 = time.perf_counter()
        ld = log_density(model, data)
        estimates[name] = {}
        for m in evidence:
            if m == "smc":
                opts = dict(smc_options or {})
                if opts.get("reference", "t") != "prior":
                    opts.setdefault("reference_draws", idata)  # fit the SMC reference to the NUTS draws
                est = log_evidence_smc(ld, particles=particles, runs=smc_runs, seed=seed + i, **opts)
            else:
                est = log_evidence_bridge(ld, idata, seed=seed + i)
            estimates[name][m] = est
            say(f"[{name}] log evidence ({m}): {est.log_evidence:.3f} ± {est.se:.3f}")
        timing[name] = dict(fit_seconds=t1 - t0, elpd_seconds=t2 - t1, evidence_seconds=time.perf_counter() - t2)

    primary = {name: estimates[name][evidence[0]] for name in named}
    probs = posterior_model_probabilities(primary, prior_weights)
    weights = stacking_weights(elpds)
    details = []
    for name in named:
        e = elpds[name]
        row = {
            "model": name,
            "elpd_loo": float(e["elpd_loo"]),
            "elpd_loo_se": float(e["se"]),
            "p_loo": float(e["p_loo"]),
            "max_pareto_k": float(np.max(e["pareto_k"])),
            "log_evidence": primary[name].log_evidence,
            "log_evidence_se": primary[name].se,
            "posterior_prob": probs[name],
            "stacking_weight": weights[name],
        }
        rows.append(row)
        extra = dict(row, elpd_method=methods[name], evidence_method=evidence[0], **timing[name])
        for m, est in estimates[name].items():
            extra[f"log_evidence_{m}"] = est.log_evidence
            extra[f"log_evidence_{m}_se"] = est.se
        details.append(extra)
    order = np.argsort([-r["elpd_loo"] for r in rows], kind="stable")
    table = pd.DataFrame([rows[k] for k in order], columns=COLUMNS).reset_index(drop=True)
    details = pd.DataFrame([details[k] for k in order]).reset_index(drop=True)
    return Comparison(table=table, details=details, fits=fits, elpd=elpds, evidence=estimates)
