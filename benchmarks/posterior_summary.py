"""Posterior diagnostics of a benchmark run (the same code for both sides)."""

from __future__ import annotations

import statistics
from typing import Any, Iterable, Mapping, Sequence


def posterior_diagnostics(
    posterior: Mapping[str, Any], labels: Mapping[str, Sequence[str]] | None = None
) -> dict:
    """Bulk/tail ESS, R-hat, mean and sd of every scalar component of the given variables.

    ``posterior`` maps a variable name to an array of shape ``(chain, draw, ...)``. Returns
    the per-component table plus ``min_ess_bulk``, ``min_ess_tail`` and ``max_r_hat`` over all
    components (ArviZ's rank-normalised split estimators, as in Stan).
    """
    import arviz as az
    import numpy as np

    labels = labels or {}
    arrays = {k: np.asarray(v, dtype=float) for k, v in posterior.items()}
    idata = az.from_dict(posterior=arrays)
    bulk = az.ess(idata, method="bulk")
    tail = az.ess(idata, method="tail")
    rhat = az.rhat(idata)
    rows = []
    for name, arr in arrays.items():
        flat = arr.reshape(arr.shape[:2] + (-1,))
        b = np.asarray(bulk[name]).reshape(-1)
        t = np.asarray(tail[name]).reshape(-1)
        r = np.asarray(rhat[name]).reshape(-1)
        names = list(labels.get(name, []))
        for i in range(flat.shape[-1]):
            if arr.ndim == 2:
                label = name
            elif len(names) == flat.shape[-1]:
                label = f"{name}[{names[i]}]"
            else:
                label = f"{name}[{i}]"
            x = flat[:, :, i]
            rows.append(
                {
                    "parameter": label,
                    "mean": float(x.mean()),
                    "sd": float(x.std(ddof=1)),
                    "ess_bulk": float(b[i]),
                    "ess_tail": float(t[i]),
                    "r_hat": float(r[i]),
                }
            )
    return {
        "min_ess_bulk": min(r["ess_bulk"] for r in rows),
        "min_ess_tail": min(r["ess_tail"] for r in rows),
        "max_r_hat": max(r["r_hat"] for r in rows),
        "parameters": rows,
    }


def median_or_none(xs: Iterable[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
