"""Synthetic population PK (one-compartment, first-order absorption, two oral doses): a model
script of any size, for benchmarks/population_scaling.py and `bayesbio fit --devices N`.

    bayesbio fit benchmarks/model_scripts/population_pk.py --data 100000 --devices 8

``--data N`` (``load_data("N")``) simulates N patients (default 1000); the simulation is
vectorised NumPy (closed form), so 10^6 patients take seconds.

Design (every patient): 100 mg at t = 0 and 12 h into the depot, 6 concentrations at
0.5, 2, 6, 12 (pre-dose), 14 and 24 h. Truth: ka 1.2 /h, CL 3 L/h, V 30 L, log-normal
between-subject SD 0.3 on CL and V, proportional (log-normal) residual SD 0.15.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import init_to_median

import bayesbio as bb
from bayesbio.population import bolus, lognormal_parameters, make_batch, patient, solve_population

description = "synthetic one-compartment oral population PK of any size (benchmarks)"
#: NUTS starts at the prior medians (as the bundled theophylline model): a uniform(-2, 2) start
#: puts some patients at extreme parameters, where the lockstep solve of all patients is slow
init_strategy = init_to_median()
#: ``--data`` is a number of patients, not a file
data_is_file = False
dims = {"eta": ["patient", "effect"], "eta_z": ["patient", "effect"], "omega": ["effect"]}

DOSE = 100.0
DOSE_TIMES = (0.0, 12.0)
OBS_TIMES = np.array([0.5, 2.0, 6.0, 12.0, 14.0, 24.0])
PRE_DOSE = np.array([False, False, False, True, False, False])
TRUTH = {"ka": 1.2, "cl": 3.0, "v": 30.0, "omega": 0.3, "sigma": 0.15}


def rhs(t, y, p):
    k = p["cl"] / p["v"]
    return jnp.stack([-p["ka"] * y[0], p["ka"] * y[0] - k * y[1]])


def _central(t, ka, cl, v):
    """Closed-form central amount after the oral doses (superposition)."""
    k = cl / v
    out = np.zeros(np.broadcast_shapes(np.shape(t), np.shape(ka)))
    for td in DOSE_TIMES:
        tau = t - td
        term = DOSE * ka / (ka - k) * (np.exp(-k * np.maximum(tau, 0)) - np.exp(-ka * np.maximum(tau, 0)))
        out = out + np.where(tau > 0, term, 0.0)
    return out


def simulate(n_patients: int, seed: int = 0) -> dict:
    """Events of ``n_patients`` patients with simulated concentrations (vectorised)."""
    rng = np.random.default_rng(seed)
    template = make_batch(
        [patient([bolus(t, DOSE, 0) for t in DOSE_TIMES], OBS_TIMES, obs_compartment=1, pre_dose=PRE_DOSE)],
        n_states=2,
    ).to_dict()
    events = {k: np.repeat(v, n_patients, axis=0) for k, v in template.items()}
    cl = TRUTH["cl"] * np.exp(TRUTH["omega"] * rng.standard_normal((n_patients, 1)))
    v = TRUTH["v"] * np.exp(TRUTH["omega"] * rng.standard_normal((n_patients, 1)))
    conc = _central(OBS_TIMES[None, :], TRUTH["ka"], cl, v) / v
    events["obs_value"] = conc * np.exp(TRUTH["sigma"] * rng.standard_normal(conc.shape))
    return {"events": events}


def load_data(path=None) -> dict:
    n = 1000 if path is None else int(str(path))
    return simulate(n)


def coords(data):
    n = data["events"]["obs_time"].shape[0]
    return {"patient": list(range(n)), "effect": ["cl", "v"]}


def model(data):
    events = data["events"]
    n_patients = events["obs_time"].shape[0]
    ka = numpyro.sample("ka", dist.LogNormal(0.0, 0.5))
    cl = numpyro.sample("cl_pop", dist.LogNormal(1.0, 0.5))
    v = numpyro.sample("v_pop", dist.LogNormal(3.4, 0.5))
    omega = numpyro.sample("omega", dist.HalfNormal(0.5).expand([2]))
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.5))
    p = lognormal_parameters({"cl": cl, "v": v}, omega, n_patients, record=False)
    amounts = solve_population(rhs, p, events, shared={"ka": ka})
    conc = amounts[..., 1] / p["v"][:, None]
    bb.observe("conc", bb.LogNormalNoise(conc, sigma), obs=events["obs_value"])
