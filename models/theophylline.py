"""Theophylline population PK: one compartment, first-order absorption, log-normal BSV.

Data: R ``datasets::Theoph`` (Boeckmann, Sheiner & Beal 1994), 12 subjects given one oral
dose of theophylline (``dose_mg_per_kg`` × ``weight_kg`` mg) at time 0, 11 serum
concentrations each over 24 h (bundled; provenance in ``bayesbio/datasets/data/PROVENANCE.md``).

Model (the structural and statistical model of the nlmixr2 SAEM reference fit)::

    d depot / dt   = -ka_i depot                       depot(0) = dose_i (bolus at t = 0)
    d central / dt =  ka_i depot - (cl_i / v_i) central
    conc_ij = central_i(t_ij) / v_i  (mg/L)            solved in closed form (solver="analytic")
    conc_obs_ij ~ Normal(conc_ij, sigma)               additive residual error

    ka_i = ka_pop exp(eta_ka,i),  cl_i = cl_pop exp(eta_cl,i),  v_i = v_pop exp(eta_v,i)
    eta_k,i ~ Normal(0, omega_k)                       (non-centred)

Priors (weakly informative, broad on the log scale, not centred on the reference values):
``ka_pop ~ LogNormal(log 1, 1)`` (1/h), ``cl_pop ~ LogNormal(log 4, 1)`` (L/h),
``v_pop ~ LogNormal(log 40, 1)`` (L), ``omega_* ~ HalfNormal(1)``, ``sigma ~ HalfNormal(2)`` (mg/L).

Posterior variables: ``ka_pop``, ``cl_pop``, ``v_pop``, ``omega_ka``, ``omega_cl``, ``omega_v``
(SD of the log random effects), ``sigma`` (mg/L), per-patient ``ka``, ``cl``, ``v`` (dim
``patient``), the random effects ``eta`` (patient × random_effect) and the standard normals
``eta_z`` behind them.

Reference (nlmixr2 SAEM, nlmixr2est README): Ka 1.59 /h, CL 2.74 L/h, V 31.7 L, add.sd 0.696 mg/L;
BSV CV% ka 71.1, CL 27.4, V 13.1.

:func:`simulate_table` draws a synthetic population from this model (in the bundled file's
format, so ``bayesbio fit theophylline --data sim.csv`` fits it); the parameter-recovery tests
and ``benchmarks/population.py`` use it.
"""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from numpyro.infer import init_to_median

import bayesbio as bb
from bayesbio.population import bolus, lognormal_parameters, make_batch, patient, solve_population

description = "Theophylline population PK (one compartment, oral absorption, log-normal BSV on ka, CL, V)"

PARAMETERS = ("ka", "cl", "v")

# NUTS starts at prior medians (random effects near 0) instead of Stan's uniform(-2, 2) box on the
# unconstrained scale: in the box's corners (omega ~ e^2, z ~ 2) some ka_i reach e^15 /h, where
# the explicit ODE solver's step budget runs out (make_model("rk45", ...)); one such start left a
# chain stuck at a failure boundary (step size 1e-5, every proposal rejected) in a run with the
# uniform start.
init_strategy = init_to_median(num_samples=15)
# NUTS warm-up starts from a mean-field SVI pre-fit (starting points and initial mass matrix):
# with an identity mass matrix the first warm-up window of a 200-patient fit built trees of
# ~600 leapfrog steps per iteration (57,000 steps in 100 iterations, against 3,000 after the
# pre-fit; bayesbio.infer.prefit)
nuts_prefit = "svi"
#: Simulation-based calibration settings (`bayesbio sbc theophylline`): one chain per replication,
#: one replication per batch (trajectory lengths differ a lot between replications: small true
#: residual errors make long trees); run with `--workers` = cores.
sbc = {"reps": 200, "warmup": 500, "draws": 99, "thin": 5, "batch": 1}
COLUMNS = ["subject", "weight_kg", "dose_mg_per_kg", "time_h", "conc_mg_per_L"]

dims = {
    "ka": ["patient"],
    "cl": ["patient"],
    "v": ["patient"],
    "eta": ["patient", "random_effect"],
    "eta_z": ["patient", "random_effect"],
    "conc": ["patient", "sample"],
}


def coords(data):
    n_patients, n_samples = np.shape(data["events"]["obs_time"])
    return {
        "patient": [int(s) for s in np.asarray(data["subject"])],
        "random_effect": list(PARAMETERS),
        "sample": list(range(n_samples)),
    }


def load_data(path=None):
    """Events (one oral dose into the depot, concentrations observed in the central compartment),
    subject labels and weights. ``path``: a CSV with the columns of the bundled file."""
    table = bb.datasets.load("theophylline") if path is None else pd.read_csv(path)
    bb.require_columns(table, COLUMNS, source=path or "theophylline")
    # subjects in order of first appearance (rows without a subject are left out), each one's
    # rows in stable order of time: one sort of the whole table, then NumPy slices per subject
    # (per-subject pandas grouping and sorting took ~20 s for 10,000 simulated patients)
    codes, uniques = pd.factorize(table["subject"], sort=False)
    time_h = table["time_h"].to_numpy(float)
    conc = table["conc_mg_per_L"].to_numpy(float)
    dose_per_kg = table["dose_mg_per_kg"].to_numpy(float)
    weight = table["weight_kg"].to_numpy(float)
    order = np.lexsort((time_h, codes))  # stable: equal times keep the file's order
    order = order[codes[order] >= 0]
    groups = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1) if order.size else []
    patients, subjects, weights = [], [], []
    for rows in groups:
        first = rows[0]
        subject = uniques[codes[first]]
        patients.append(
            patient([bolus(0.0, float(dose_per_kg[first] * weight[first]), 0)], time_h[rows], conc[rows],
                    obs_compartment=1, id=subject)
        )
        subjects.append(subject)
        weights.append(float(weight[first]))
    batch = make_batch(patients, n_states=2)
    return {"events": batch.to_dict(), "subject": np.asarray(subjects), "weight": np.asarray(weights)}


#: Simulation truth: the nlmixr2 SAEM estimates, CV% converted to log-scale SDs sqrt(log(1 + CV^2)).
TRUTH = {
    "ka_pop": 1.59, "cl_pop": 2.74, "v_pop": 31.7,
    "omega_ka": float(np.sqrt(np.log(1 + 0.711**2))), "omega_cl": float(np.sqrt(np.log(1 + 0.274**2))),
    "omega_v": float(np.sqrt(np.log(1 + 0.131**2))), "sigma": 0.696,
}
#: Nominal sampling times (h) of the simulated design (the Theoph design without the pre-dose sample).
DESIGN_TIMES = np.array([0.25, 0.5, 1.0, 2.0, 3.5, 5.0, 7.0, 9.0, 12.0, 24.0])


def simulate_table(n_patients: int, *, seed: int = 0, truth=None) -> pd.DataFrame:
    """A synthetic population in the bundled file's format, drawn from this model.

    Each patient: weight ~ Uniform(50, 90) kg, 4 mg/kg orally at t = 0, 6 to 10 of the
    :data:`DESIGN_TIMES` (a random subset, so patients have unequal numbers of samples) each
    jittered by ±10%, concentrations from the model with ``truth`` (default :data:`TRUTH`).
    Solved with the same batched ODE solver at rtol 1e-8 (in double precision when JAX's x64
    mode is on, as on the command line and in the tests).
    """
    from bayesbio.population import solve_population_with_status

    truth = dict(TRUTH, **(truth or {}))
    rng = np.random.default_rng(seed)
    weight = rng.uniform(50.0, 90.0, n_patients).round(1)
    dose_per_kg = np.full(n_patients, 4.0)
    eta = rng.normal(size=(n_patients, 3)) * np.array([truth["omega_ka"], truth["omega_cl"], truth["omega_v"]])
    ka = truth["ka_pop"] * np.exp(eta[:, 0])
    cl = truth["cl_pop"] * np.exp(eta[:, 1])
    v = truth["v_pop"] * np.exp(eta[:, 2])
    patients, times = [], []
    for i in range(n_patients):
        keep = np.sort(rng.choice(DESIGN_TIMES.size, size=rng.integers(6, DESIGN_TIMES.size + 1), replace=False))
        t = np.round(DESIGN_TIMES[keep] * rng.uniform(0.9, 1.1, keep.size), 3)
        times.append(t)
        patients.append(patient([bolus(0.0, dose_per_kg[i] * weight[i], 0)], t, obs_compartment=1))
    batch = make_batch(patients, n_states=2)
    params = {"ka": ka, "cl": cl, "v": v}
    sol = solve_population_with_status(rhs, params, batch, rtol=1e-8, atol=1e-8, max_steps=10000)
    conc = np.asarray(sol.ys[..., 1]) / v[:, None]
    rows = []
    for i, t in enumerate(times):
        y = conc[i, : t.size] + truth["sigma"] * rng.normal(size=t.size)
        rows += [(i + 1, weight[i], dose_per_kg[i], tt, round(float(yy), 4)) for tt, yy in zip(t, y)]
    return pd.DataFrame(rows, columns=COLUMNS)


def rhs(t, y, p):
    depot, central = y[0], y[1]
    return jnp.stack([-p["ka"] * depot, p["ka"] * depot - p["cl"] / p["v"] * central])


def make_model(solver: str = "analytic", *, centered: bool = False, **solve_options):
    """The model function, its concentrations solved with ``solver`` (any solver of
    :func:`~bayesbio.population.solve_population`).

    ``centered=True`` samples the random effects ``eta`` directly (``eta ~ Normal(0, omega)``)
    instead of the standard normals ``eta_z`` behind them: the same posterior in other
    coordinates, for populations whose data pin each patient's parameters down (then the
    centred form is nearly Gaussian, and ``prefit="laplace"`` whitens it; see
    ``benchmarks/README.md``).

    The bundled :data:`model` solves this linear model in closed form (``"analytic"``: exact,
    no step budget, equally cheap at any absorption rate). ``benchmarks/population.py`` fits
    ``make_model("rk45", rtol=1e-6, atol=1e-6, max_steps=5000)`` (via
    ``benchmarks/model_scripts/theophylline_rk45.py``) against Stan's ``ode_rk45`` with the
    same tolerances.
    """

    def model(data):
        events = data["events"]
        n_patients = np.shape(events["obs_time"])[0]
        ka_pop = numpyro.sample("ka_pop", dist.LogNormal(jnp.log(1.0), 1.0))
        cl_pop = numpyro.sample("cl_pop", dist.LogNormal(jnp.log(4.0), 1.0))
        v_pop = numpyro.sample("v_pop", dist.LogNormal(jnp.log(40.0), 1.0))
        omega = {k: numpyro.sample(f"omega_{k}", dist.HalfNormal(1.0)) for k in PARAMETERS}
        sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
        p = lognormal_parameters({"ka": ka_pop, "cl": cl_pop, "v": v_pop}, omega, n_patients, centered=centered)
        amounts = solve_population(rhs, p, events, solver=solver, **solve_options)
        conc = amounts[..., 1] / p["v"][:, None]
        bb.observe("conc", bb.NormalNoise(conc, sigma), obs=events["obs_value"])

    return model


#: The bundled model: concentrations in closed form. (Until 2026-12 it used the explicit
#: ``rk45`` solver at rtol = atol = 1e-6 with 5000 steps per segment; in its simulation-based
#: calibration, prior draws of ``omega_ka`` above ~1 gave absorption rates of hundreds per hour,
#: where that solver's cost per gradient grows ~50-fold and single fits ran for over 40 minutes.)
model = make_model("analytic")
