"""The tables of the report, pure functions (no plotting, no HTML): run metadata, the ArviZ
summary, per-chain sampler health, scalar components of the posterior (for the plots, the most
correlated pairs and where divergences concentrate), PSIS-LOO pooled over all observations and
the Pareto-k of the importance weights of an approximation.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayesbio.report.verdict import APPROXIMATIONS, PARETO_K_FAIL, _attrs, _bfmi, _num, _settings, _stats

__all__ = [
    "MAX_CORRELATION_COMPONENTS",
    "MAX_PLOT_COMPONENTS",
    "MAX_SUMMARY_ROWS",
    "LooResult",
    "chain_health",
    "correlated_pairs",
    "divergence_pair",
    "importance_pareto_k",
    "loo_pooled",
    "method_of",
    "plot_components",
    "run_info",
    "scalar_components",
    "summary_table",
]

#: Most scalar components shown in the trace, rank and pair plots.
MAX_PLOT_COMPONENTS = 12
#: Most rows of the summary table (the diagnostics still cover every component).
MAX_SUMMARY_ROWS = 60
#: Most components entering the correlation search for the pair plot.
MAX_CORRELATION_COMPONENTS = 60


@dataclass
class LooResult:
    """PSIS-LOO over all observed values of all observed variables (see :func:`loo_pooled`)."""

    elpd: Any  # arviz ELPDData (pointwise)
    labels: list[str]
    variables: list[str]
    dropped_missing: int
    good_k: float

    @property
    def pareto_k(self) -> np.ndarray:
        return np.asarray(self.elpd.pareto_k)

    def flagged(self) -> list[tuple[str, float]]:
        k = self.pareto_k
        idx = np.flatnonzero(k > self.good_k)
        return [(self.labels[i], float(k[i])) for i in idx[np.argsort(-k[idx])]]


def _chain_draw(var) -> bool:
    return var.dims[:2] == ("chain", "draw")


def method_of(idata) -> str:
    """``posterior.attrs["method"]`` (lower case), else a guess from the groups present."""
    method = str(_attrs(idata).get("method", "")).strip().lower()
    if method:
        return method
    stats = _stats(idata)
    if hasattr(idata, "svi_trace"):
        return "svi"
    if stats is not None and "log_importance_weight" in stats:
        return "laplace"
    if stats is not None and "energy" in stats:
        return "nuts"
    return "unknown"


# ----------------------------------------------------------------------------- components


def _label(name: str, var: xr.DataArray, index: tuple[int, ...]) -> str:
    if not index:
        return name
    parts = []
    for dim, i in zip(var.dims[2:], index):
        coord = var.coords[dim].values[i] if dim in var.coords else i
        if isinstance(coord, (float, np.floating)) and float(coord).is_integer():
            coord = int(coord)
        parts.append(str(coord))
    return f"{name}[{', '.join(parts)}]"


def scalar_components(posterior: xr.Dataset, *, limit: int | None = None, order: str = "model"):
    """Flatten posterior variables into scalar components ``{label: array (chain, draw)}``.

    ``order="model"`` keeps the posterior's variable order; ``order="size"`` takes the
    smallest variables first (scalars, then short vectors), so that ``limit`` keeps whole
    low-dimensional variables rather than the first entries of one long vector.
    """
    names = [v for v in posterior.data_vars if _chain_draw(posterior[v])]
    if order == "size":
        names = sorted(names, key=lambda v: int(np.prod(posterior[v].shape[2:], dtype=np.int64)))
    out: dict[str, np.ndarray] = {}
    for name in names:
        var = posterior[name]
        if var.dtype.kind not in "biuf":
            continue
        values = np.asarray(var.values, dtype=float)
        for index in np.ndindex(*values.shape[2:]):
            if limit is not None and len(out) >= limit:
                return out
            out[_label(name, var, index)] = values[(slice(None), slice(None)) + index]
    return out


def plot_components(posterior: xr.Dataset, limit: int = MAX_PLOT_COMPONENTS) -> dict[str, np.ndarray]:
    """The scalar components shown in trace/rank plots: all of them in model order if they fit
    in ``limit``, else the smallest variables first."""
    total = sum(
        int(np.prod(posterior[v].shape[2:], dtype=np.int64))
        for v in posterior.data_vars
        if _chain_draw(posterior[v])
    )
    return scalar_components(posterior, limit=limit, order="model" if total <= limit else "size")


def correlated_pairs(
    posterior: xr.Dataset, *, top: int = 3, limit: int = MAX_CORRELATION_COMPONENTS
) -> list[tuple[str, str, float]]:
    """The ``top`` most correlated pairs of scalar components (by |Pearson r| over all draws),
    as ``(label_a, label_b, r)``; constant components are ignored.

    A strong posterior correlation is an identifiability hint: the data constrain a
    combination of the two parameters better than each one."""
    comps = scalar_components(posterior, limit=limit, order="size")
    labels, columns = [], []
    for label, values in comps.items():
        flat = values.reshape(-1)
        if np.all(np.isfinite(flat)) and np.std(flat) > 0:
            labels.append(label)
            columns.append(flat)
    if len(columns) < 2:
        return []
    corr = np.corrcoef(np.vstack(columns))
    iu = np.triu_indices(len(labels), k=1)
    values = corr[iu]
    order = np.argsort(-np.abs(values), kind="stable")[:top]
    return [(labels[iu[0][i]], labels[iu[1][i]], float(values[i])) for i in order]


def _diverging(idata) -> np.ndarray | None:
    """Divergence flags flattened over (chain, draw), when they match the posterior's shape."""
    stats = _stats(idata)
    if stats is None or "diverging" not in stats:
        return None
    div = np.asarray(stats["diverging"].values, dtype=bool)
    post = idata.posterior
    if div.shape != (post.sizes.get("chain", 0), post.sizes.get("draw", 0)):
        return None
    return div.reshape(-1)


def divergence_pair(idata, *, limit: int = MAX_CORRELATION_COMPONENTS) -> tuple[str, str] | None:
    """Where the divergences concentrate: the two scalar components whose divergent draws lie
    furthest from their overall median (in robust standard units, on the log scale for positive
    components). For a hierarchical funnel this is typically the group scale ``tau`` against a
    group effect. None without divergences."""
    div = _diverging(idata)
    if div is None or not div.any() or div.all():
        return None
    scores = []
    for label, values in scalar_components(idata.posterior, limit=limit, order="size").items():
        x = values.reshape(-1)
        if not np.all(np.isfinite(x)):
            continue
        if np.all(x > 0):
            x = np.log(x)
        mad = np.median(np.abs(x - np.median(x))) * 1.4826
        if mad <= 0:
            continue
        scores.append((abs(np.median(x[div]) - np.median(x)) / mad, label))
    if len(scores) < 2:
        return None
    scores.sort(key=lambda t: -t[0])
    return scores[0][1], scores[1][1]


# ----------------------------------------------------------------------------- tables


def run_info(idata) -> dict[str, Any]:
    """Run metadata from the posterior attrs: model, data, method, settings, seed, software
    versions and wall times (missing entries are left out)."""
    attrs = _attrs(idata)
    post = idata.posterior
    info: dict[str, Any] = {
        "model": attrs.get("model", "unknown"),
        "model_source": attrs.get("model_source"),
        "method": method_of(idata),
        "data_fingerprint": attrs.get("data_fingerprint"),
        "seed": attrs.get("seed"),
        "created_at": attrs.get("created_at"),
        "platform": attrs.get("platform"),
        "x64": attrs.get("x64"),
        "chains": int(post.sizes.get("chain", 0)),
        "draws": int(post.sizes.get("draw", 0)),
        "settings": _settings(attrs),
        "versions": {k[len("version_") :]: str(v) for k, v in attrs.items() if str(k).startswith("version_")},
    }
    if "arviz_version" in attrs and "arviz" not in info["versions"]:
        info["versions"]["arviz"] = str(attrs["arviz_version"])
    times = {}
    for key, label in (
        ("compile_seconds", "compile"),
        ("fit_seconds", "fit"),
        ("warmup_seconds", "warm-up"),
        ("sampling_seconds", "sampling"),
        ("postprocess_seconds", "post-processing"),
    ):
        value = _num(attrs.get(key))
        if value is not None:
            times[label] = value
    info["wall_times"] = times
    extra = {}
    for key in (
        "metric",
        "gradient_evaluations",
        "warmup_solver_failures",
        "converged",
        "final_elbo",
        "pareto_k",
        "mode_gradient_norm",
        "optimizer_iterations",
    ):
        if key in attrs:
            extra[key] = attrs[key]
    info["extra"] = extra
    return {k: v for k, v in info.items() if v is not None}


def summary_table(idata, *, method: str | None = None) -> pd.DataFrame | None:
    """``az.summary`` of every posterior component (mean, sd, HDI, MCSE, ESS, R-hat).

    For SVI and Laplace results the draws are independent draws from an approximation, so only
    the statistics (mean, sd, HDI) are computed: R-hat and ESS say nothing there."""
    method = method or method_of(idata)
    names = [
        v
        for v in idata.posterior.data_vars
        if _chain_draw(idata.posterior[v]) and idata.posterior[v].dtype.kind in "biuf"
    ]
    if not names:
        return None
    kind = "stats" if method in APPROXIMATIONS else "all"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.summary(idata, var_names=names, kind=kind, round_to="none")


def chain_health(idata) -> pd.DataFrame | None:
    """Per-chain sampler health: draws, divergences, tree-depth saturation, E-BFMI, mean
    acceptance, step size and ODE solver failures (sampling and warm-up)."""
    stats = _stats(idata)
    if stats is None:
        return None
    chains = int(idata.posterior.sizes.get("chain", 0))
    draws = int(idata.posterior.sizes.get("draw", 0))
    table = pd.DataFrame(index=pd.Index(range(chains), name="chain"))
    table["draws"] = draws

    def per_chain(name, reducer):
        if name not in stats or "chain" not in stats[name].dims:
            return None
        var = stats[name]
        if "draw" in var.dims:
            return np.asarray(reducer(var, "draw").values)
        return np.asarray(var.values)

    div = per_chain("diverging", lambda v, d: v.astype(int).sum(d))
    if div is not None:
        table["divergences"] = div.astype(int)
    sat = per_chain("reached_max_treedepth", lambda v, d: v.astype(int).sum(d))
    if sat is not None:
        table["max tree depth hits"] = sat.astype(int)
    depth = per_chain("tree_depth", lambda v, d: v.mean(d))
    if depth is not None:
        table["mean tree depth"] = depth
    bfmi = _bfmi(idata)
    if bfmi is not None and bfmi.shape == (chains,):
        table["E-BFMI"] = bfmi
    acc = per_chain("acceptance_rate", lambda v, d: v.mean(d))
    if acc is not None:
        table["mean acceptance"] = acc
    step = per_chain("step_size", lambda v, d: v.mean(d))
    if step is not None:
        table["step size"] = step
    fail = per_chain("solver_failures", lambda v, d: v.sum(d))
    if fail is not None:
        table["solver failures"] = fail.astype(int)
    for name, column in (
        ("warmup_solver_failures", "solver failures (warm-up)"),
        ("fit_solver_failures", "solver failures (fit)"),
    ):
        value = per_chain(name, lambda v, d: v.sum(d))
        if value is not None and value.shape == (chains,):
            table[column] = value.astype(int)
    return table if table.shape[1] > 1 else None


# ----------------------------------------------------------------------------- LOO


def loo_pooled(idata) -> LooResult | None:
    """PSIS-LOO over every observed value of every observed variable.

    ``az.loo`` needs a single log-likelihood variable. With several observed variables (e.g.
    ``y_init`` and ``y`` of Lotka–Volterra) their pointwise values are flattened and
    concatenated into one variable, so each observed value is one LOO point and ``elpd_loo``
    is the sum over all observations of all variables (the same as adding up per-variable
    LOO estimates; taking only the largest variable would silently ignore the others).
    Values that are missing in ``observed_data`` (NaN; their log-likelihood is masked to 0)
    are left out. Returns None without a ``log_likelihood`` group.
    """
    if not hasattr(idata, "log_likelihood"):
        return None
    ll = idata.log_likelihood
    observed = idata.observed_data if hasattr(idata, "observed_data") else None
    blocks, labels, variables = [], [], []
    dropped = 0
    for name in ll.data_vars:
        var = ll[name]
        if not _chain_draw(var):
            continue
        values = np.asarray(var.values, dtype=float)
        chains, draws = values.shape[:2]
        flat = values.reshape(chains, draws, -1)
        keep = np.ones(flat.shape[2], dtype=bool)
        if observed is not None and name in observed:
            obs = np.asarray(observed[name].values, dtype=float)
            if obs.size == flat.shape[2]:
                keep &= np.isfinite(obs.reshape(-1))
        keep &= np.all(np.isfinite(flat), axis=(0, 1))
        dropped += int((~keep).sum())
        index = list(np.ndindex(*values.shape[2:])) or [()]
        for j, idx in enumerate(index):
            if keep[j]:
                labels.append(_label(name, var, idx))
        blocks.append(flat[:, :, keep])
        variables.append(name)
    if not blocks or sum(b.shape[2] for b in blocks) == 0:
        return None
    pooled = np.concatenate(blocks, axis=2)
    ds = xr.Dataset(
        {"observations": (("chain", "draw", "observation"), pooled)},
        coords={"observation": np.arange(pooled.shape[2])},
    )
    data = az.InferenceData(posterior=idata.posterior, log_likelihood=ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        elpd = az.loo(data, pointwise=True, var_name="observations")
    good_k = float(getattr(elpd, "good_k", PARETO_K_FAIL) or PARETO_K_FAIL)
    return LooResult(elpd=elpd, labels=labels, variables=variables, dropped_missing=dropped, good_k=good_k)


def importance_pareto_k(idata) -> float | None:
    """Pareto-k̂ of the importance weights posterior/approximation: recomputed from
    ``sample_stats.log_importance_weight`` when stored, else ``posterior.attrs["pareto_k"]``."""
    stats = _stats(idata)
    if stats is not None and "log_importance_weight" in stats:
        log_w = np.asarray(stats["log_importance_weight"].values, dtype=float).reshape(-1)
        log_w = np.where(np.isfinite(log_w), log_w, -np.inf)
        if np.isfinite(log_w).sum() >= 10:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, k = az.psislw(log_w)
            k = float(np.asarray(k).reshape(-1)[0])
            if not math.isnan(k):  # inf is a (very bad) answer
                return k
    return _num(_attrs(idata).get("pareto_k"))
