"""Shared pieces of the two tumour-growth test models (logistic, Gompertz): data and likelihood.

Data: two lesions of Laleh et al. (2022) (``tests/data/tumour_lesions_subset.csv``, copied from
``tumour_lesions_laleh2022.csv`` of the shared data folder; TumorGrowth.jl, MIT). Volumes in
cm^3, time in units of 100 days since each lesion's first reading.
"""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

import bayesbio as bb

DEFAULT = __file__.replace("tumour_growth_common.py", "tumour_lesions_subset.csv")


def load_data(path=None):
    table = pd.read_csv(path or DEFAULT)
    bb.require_columns(table, ["patient_lesion_id", "time_days", "lesion_volume_mm3"], source=path or DEFAULT)
    groups = [g.sort_values("time_days") for _, g in table.groupby("patient_lesion_id", sort=True)]
    n = max(len(g) for g in groups)
    ts = np.full((len(groups), n), np.nan)
    v = np.full((len(groups), n), np.nan)
    for i, g in enumerate(groups):
        t = g["time_days"].to_numpy(float)
        ts[i, : len(g)] = (t - t[0]) / 100.0
        v[i, : len(g)] = g["lesion_volume_mm3"].to_numpy(float) / 1000.0
    last = np.nanmax(ts, axis=1, keepdims=True)  # pad times past the last reading (values stay missing)
    pad = np.isnan(ts)
    ts[pad] = (last + 0.01 * np.cumsum(pad, axis=1))[pad]
    return {"ts": ts, "v0_obs": v[:, 0], "v": v[:, 1:], "ts_obs": ts[:, 1:]}


def growth_model(rhs, data):
    n = data["v"].shape[0]
    with numpyro.plate("lesion", n):
        r = numpyro.sample("r", dist.LogNormal(0.0, 1.0))
        k = numpyro.sample("K", dist.LogNormal(jnp.log(2.0 * jnp.asarray(data["v0_obs"])), 1.5))
        v0 = numpyro.sample("v0", dist.LogNormal(jnp.log(jnp.asarray(data["v0_obs"])), 0.3))
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.5))
    preds = [bb.solve(rhs, v0[i][None], data["ts_obs"][i], jnp.stack([r[i], k[i]]), t0=0.0, rtol=1e-6, atol=1e-8,
                      max_steps=500, name=f"lesion{i}")[:, 0] for i in range(n)]
    bb.observe("v0_obs", bb.LogNormalNoise(v0, sigma), obs=data["v0_obs"])
    bb.observe("v", bb.LogNormalNoise(jnp.stack(preds), sigma), obs=data["v"])
