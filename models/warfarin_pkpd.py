"""Warfarin population PK/PD: oral one-compartment PK and a turnover model of PCA.

Data: the warfarin data of O'Reilly et al. (1963, 1968) as distributed with nlmixr2data
(bundled; provenance in ``bayesbio/datasets/data/PROVENANCE.md``): 32 subjects, one oral dose
(60–153 mg, about 1.5 mg/kg) at t = 0, 251 plasma concentrations (mg/L) over 0.5–120 h and
232 measurements of prothrombin complex activity (PCA, % of normal) over 0–144 h.

Model (per subject ``i``; states: depot amount, central amount, PCA relative to baseline)::

    d depot / dt   = -ka_i depot                                depot += dose at each dose time
    d central / dt =  ka_i depot - (cl_i / v_i) central
    C_i(t) = central / v_i                                      (mg/L)
    d r / dt       =  kout (1 - imax C / (ic50_i + C)) - kout r,   r(0) = 1
    PCA_i(t) = e0_i r(t)                                        (turnover / indirect response:
                                                                 warfarin inhibits the synthesis
                                                                 of clotting factors)
    conc_obs ~ CombinedNoise(C, a_conc, b_conc)                 additive + proportional error
    pca_obs  ~ NormalNoise(PCA, sigma_pca)                      additive error

How it is solved: the PK part is linear and does not depend on ``r``, so for oral (depot)
bolus doses, the bundled data's only kind, the central amount has a closed form, the sum over
the doses given before ``t``::

    central(t) = sum_j  A_j ka τ_j f[-ka τ_j, -k τ_j],   τ_j = max(t - t_j, 0),   k = cl / v

with ``f[x, y] = (e^x - e^y) / (x - y)`` (:func:`~bayesbio.population.analytic.divided_difference_1`,
exact at ``ka == k``), i.e. ``A ka / (ka - k) (e^{-kτ} - e^{-ka τ})``. The concentrations are
read off it, and only ``r`` is integrated (explicit RK45 with forward sensitivities, one state
driven by ``C(t)``; segments still restart at every dose). Other dosing (infusions, doses
into the central or PCA compartment, resets, e.g. in a simulated regimen) is solved as the
three-state ODE above, :func:`rhs`. Both give the same predictions (to the solver tolerance;
``tests/test_warfarin_pkpd.py``). On 12 prior draws one log-density gradient cost 0.76-3.0 ms
with the one-state solve against 2.0-16 ms with the three-state one (6.5 times less in all),
which also failed on one draw whose largest absorption rate, 178 /h, makes the explicit solve
stiff (``benchmarks/results/warfarin_solvers.md``).

    theta_i = theta_pop * (wt_i / 70)^k * exp(eta_theta,i)      theta in (ka, cl, v, e0, ic50)
                                                                k = 0.75 for cl, 1 for v, else 0
    eta_i ~ Normal(0, diag(omega^2))                            (non-centred)

Priors (weakly informative, on the scale of published warfarin models but not centred on any
estimate): ``ka_pop ~ LogNormal(log 1, 1)`` /h, ``cl_pop ~ LogNormal(log 0.15, 1)`` L/h,
``v_pop ~ LogNormal(log 8, 1)`` L, ``e0_pop ~ LogNormal(log 100, 0.5)`` %,
``ic50_pop ~ LogNormal(log 1.5, 1)`` mg/L, ``kout ~ LogNormal(log 0.05, 1)`` /h,
``imax ~ Beta(2, 1)``, ``omega_* ~ HalfNormal(0.5)``, ``a_conc ~ HalfNormal(1)`` mg/L,
``b_conc ~ HalfNormal(0.2)``, ``sigma_pca ~ HalfNormal(10)`` %.

Simplifications (honest about them): first-order absorption without lag time or transit
compartments (the early concentrations, 0.5–3 h, of the few densely sampled subjects are fitted
less well than by the transit model of the reference analyses); no effect compartment (the
delay of PCA comes from the turnover alone); no random effect on ``kout`` and ``imax``.

Posterior variables: the population values above, ``omega_<name>``, the per-patient ``ka``,
``cl``, ``v``, ``e0``, ``ic50`` (dim ``patient``), the random effects ``eta`` (patient ×
random_effect), the noise parameters.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from numpyro.infer import init_to_median

import bayesbio as bb
from bayesbio.population import allometric, lognormal_parameters, output_values, read_nonmem, solve_population
from bayesbio.population.analytic import divided_difference_1

description = "Warfarin population PK/PD (oral one-compartment PK, turnover PCA with Imax inhibition)"

RANDOM = ("ka", "cl", "v", "e0", "ic50")
#: 1-based NONMEM compartments: depot, central (concentration records), PCA
CMT_DEPOT, CMT_CONC, CMT_PCA = 1, 2, 3
COLUMNS = ["id", "time_h", "amt_mg", "dv", "dvid", "evid", "wt_kg"]

# start at prior medians (random effects 0), as the theophylline model does: the far corners
# of Stan's uniform(-2, 2) box give absorption rates of e^(2 + 2) /h and more
init_strategy = init_to_median(num_samples=15)

dims = {name: ["patient"] for name in RANDOM}
dims.update({"eta": ["patient", "random_effect"], "eta_z": ["patient", "random_effect"],
             "conc": ["patient", "record"], "pca": ["patient", "record"]})

#: Solver settings (amounts in mg, PCA relative to baseline: absolute tolerance 1e-6 is far below
#: the measurement noise of either output)
SOLVER = dict(rtol=1e-6, atol=1e-6, max_steps=2000)


def coords(data):
    return {
        "patient": [int(i) for i in np.asarray(data["id"])],
        "random_effect": list(RANDOM),
        "record": list(range(np.shape(data["events"]["obs_time"])[1])),
    }


def nonmem_table(table: pd.DataFrame) -> pd.DataFrame:
    """The bundled file's layout -> NONMEM columns (ID, TIME, AMT, DV, EVID, CMT, WT)."""
    bb.require_columns(table, COLUMNS, source="warfarin_pkpd")
    dvid = table["dvid"].astype(str).str.lower()
    unknown = sorted(set(dvid[table["evid"] == 0]) - {"cp", "pca"})
    if unknown:
        raise bb.errors.DataError(f"warfarin_pkpd: column dvid must be 'cp' or 'pca' on observations; got {unknown}")
    cmt = np.where(table["evid"] == 1, CMT_DEPOT, np.where(dvid == "cp", CMT_CONC, CMT_PCA))
    return pd.DataFrame({
        "ID": table["id"], "TIME": table["time_h"], "AMT": table["amt_mg"],
        "DV": np.where(table["evid"] == 1, np.nan, table["dv"]), "EVID": table["evid"], "CMT": cmt,
        "WT": table["wt_kg"],
    })


def load_data(path=None):
    """Events (oral dose into the depot; records of both outputs), subject ids and weights.
    ``path``: a CSV with the columns of the bundled file."""
    table = bb.datasets.load("warfarin_pkpd") if path is None else bb.read_table(path)
    pop = read_nonmem(nonmem_table(table), n_states=3, covariates=["WT"])
    return {"events": pop.batch.to_dict(), "id": np.asarray(pop.ids, dtype=float),
            "weight": pop.covariates["WT"]}


def rhs(t, y, p):
    """The whole model as one three-state ODE (depot, central, r): the general solve."""
    depot, central, r = y[0], y[1], y[2]
    conc = central / p["v"]
    inhibition = p["imax"] * conc / (p["ic50"] + conc)
    return jnp.stack([
        -p["ka"] * depot,
        p["ka"] * depot - p["cl"] / p["v"] * central,
        p["kout"] * (1.0 - inhibition) - p["kout"] * r,
    ])


def central_amount(t, p):
    """Central amount at time ``t`` of one subject after its oral bolus doses ``p["dose_time"]``,
    ``p["dose_amount"]`` (amount 0 on padding), in closed form (module docstring)."""
    tau = jnp.maximum(t - p["dose_time"], 0.0)
    k = p["cl"] / p["v"]
    return jnp.sum(p["dose_amount"] * p["ka"] * tau * divided_difference_1(-p["ka"] * tau, -k * tau))


def rhs_pd(t, y, p):
    """``dr/dt`` alone (one state), driven by the closed-form concentration."""
    conc = central_amount(t, p) / p["v"]
    inhibition = p["imax"] * conc / (p["ic50"] + conc)
    return p["kout"] * (1.0 - inhibition) - p["kout"] * y


def oral_doses_only(events) -> bool:
    """Whether every dose is a bolus into the depot and nothing resets the state, so that
    :func:`central_amount` covers the history (concrete event arrays; traced ones: False)."""
    try:
        ev = {k: np.asarray(events[k]) for k in ("dose_valid", "dose_cmt", "dose_rate", "seg_reset")}
    except Exception:  # noqa: BLE001 - traced events: take the general (three-state) solve
        return False
    valid = ev["dose_valid"].astype(bool)
    return bool(np.all(ev["dose_cmt"][valid] == CMT_DEPOT - 1) and np.all(ev["dose_rate"][valid] == 0)
                and not np.any(ev["seg_reset"]))


def predictions(p, kout, imax, events):
    """Concentrations (mg/L) and PCA relative to baseline, both (P, O), at every record."""
    if not oral_doses_only(events):
        states = solve_population(
            rhs, p, events, shared={"kout": kout, "imax": imax}, y0=jnp.array([0.0, 0.0, 1.0]), **SOLVER
        )
        return states[..., 1] / p["v"][:, None], states[..., 2]
    doses = {"dose_time": jnp.asarray(events["dose_time"]),
             "dose_amount": jnp.where(jnp.asarray(events["dose_valid"]), jnp.asarray(events["dose_amount"]), 0.0)}
    pk = {"ka": p["ka"], "cl": p["cl"], "v": p["v"], **doses}
    at_records = jax.vmap(jax.vmap(central_amount, in_axes=(0, None)), in_axes=(0, 0))
    conc = at_records(jnp.asarray(events["obs_time"]), pk) / p["v"][:, None]
    pca_only = dict(events, seg_bolus=np.asarray(events["seg_bolus"])[..., CMT_PCA - 1:],
                    seg_rate=np.asarray(events["seg_rate"])[..., CMT_PCA - 1:])
    r = solve_population(rhs_pd, {**pk, "ic50": p["ic50"]}, pca_only, shared={"kout": kout, "imax": imax},
                         y0=jnp.array([1.0]), **SOLVER)
    return conc, r[..., 0]


def model(data):
    events = data["events"]
    n_patients = np.shape(events["obs_time"])[0]
    typical = {
        "ka": numpyro.sample("ka_pop", dist.LogNormal(jnp.log(1.0), 1.0)),
        "cl": numpyro.sample("cl_pop", dist.LogNormal(jnp.log(0.15), 1.0)),
        "v": numpyro.sample("v_pop", dist.LogNormal(jnp.log(8.0), 1.0)),
        "e0": numpyro.sample("e0_pop", dist.LogNormal(jnp.log(100.0), 0.5)),
        "ic50": numpyro.sample("ic50_pop", dist.LogNormal(jnp.log(1.5), 1.0)),
    }
    kout = numpyro.sample("kout", dist.LogNormal(jnp.log(0.05), 1.0))
    imax = numpyro.sample("imax", dist.Beta(2.0, 1.0))
    omega = {k: numpyro.sample(f"omega_{k}", dist.HalfNormal(0.5)) for k in RANDOM}
    a_conc = numpyro.sample("a_conc", dist.HalfNormal(1.0))
    b_conc = numpyro.sample("b_conc", dist.HalfNormal(0.2))
    sigma_pca = numpyro.sample("sigma_pca", dist.HalfNormal(10.0))

    weight = data["weight"]
    factors = {"cl": allometric(weight, 70.0, 0.75), "v": allometric(weight, 70.0, 1.0)}
    p = lognormal_parameters(typical, omega, n_patients, factors=factors)
    conc, r = predictions(p, kout, imax, events)
    pca = p["e0"][:, None] * r
    bb.observe("conc", bb.CombinedNoise(conc, a_conc, b_conc), obs=output_values(events, CMT_CONC - 1))
    bb.observe("pca", bb.NormalNoise(pca, sigma_pca), obs=output_values(events, CMT_PCA - 1))
