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

How it is solved (``make_model(pk="closed_form")``, the bundled ``model``): the PK chain
(depot -> central) is linear and does not depend on ``r``, so its amounts have a closed form
(:func:`~bayesbio.population.analytic.propagate_chain`: divided differences of ``exp``, exact
at ``ka == k``); for an oral dose ``A`` at ``t = 0`` the central amount is the familiar
``A ka / (ka - k) (e^{-kt} - e^{-ka t})``, ``k = cl / v``. The amounts at every segment start
(after that event's doses) come from a short scan over the segments; at any time the central
amount is its segment's start state carried forward in closed form (:func:`central_amount`).
Only ``r`` is integrated (explicit RK45 with forward sensitivities, one state driven by the
closed-form ``C(t)``), restarting at every event as before. This covers oral doses, infusions
into either PK compartment and doses into the PCA state. A bolus into the central compartment
or a reset after the first event makes ``C(t)`` jump, which the one-state solve does not
resolve: such subjects are refused with a ``DataError`` where the events are concrete (the
check trace before sampling, a direct call) and otherwise fail like a failed solve (``-inf``
log density, a failed draw in :func:`~bayesbio.population.simulate`); ``make_model(pk="ode")``
solves the whole model as the three-state ODE above (:func:`rhs`) for any history. Cost: the
forward sensitivities of the PD solve carry every segment's start state and inputs (5 columns
per segment), and the cost of a long multiple-dose history grows with its number of doses
(``pk="ode"`` may then be cheaper; not measured); the bundled data have one segment per subject. Both give the same predictions and
gradients (to the solver tolerance; ``tests/test_warfarin_pkpd.py``). One log-density
gradient on prior draws: ``benchmarks/results/warfarin_solvers.md``.

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
from bayesbio.ode import FAILURE_SITE_SUFFIX
from bayesbio.population import allometric, lognormal_parameters, output_values, read_nonmem, solve_population
from bayesbio.population.analytic import propagate_chain

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


def _pk_matrix(ka, k):
    """``K`` of the PK chain ``d(depot, central)/dt = K (depot, central) + input``."""
    return jnp.array([[-1.0, 0.0], [1.0, 0.0]]) * ka + jnp.array([[0.0, 0.0], [0.0, -1.0]]) * k


def pk_segment_starts(ka, k, events):
    """Depot and central amounts (E, 2) at the start of each of one subject's segments, after
    its resets and bolus doses, in closed form (``seg_*`` arrays of one batch row)."""
    K = _pk_matrix(ka, k)

    def step(y, seg):
        start, end, bolus, rate, reset = seg
        y = jnp.where(reset, 0.0, y) + bolus
        return propagate_chain(y, end - start, K, rate), y

    segs = (events["seg_start"], events["seg_end"], events["seg_bolus"][:, :2], events["seg_rate"][:, :2],
            events["seg_reset"])
    _, starts = jax.lax.scan(step, jnp.zeros(2, jnp.result_type(ka, float)), segs)
    return starts


def central_amount(t, p):
    """Central amount (mg) of one subject at time ``t``: its segment's start state carried to ``t``
    in closed form. ``p``: ``ka``, ``cl``, ``v``, the segment starts ``seg_start`` (E,), the
    start states ``pk_start`` (E, 2) and the PK inputs ``pk_rate`` (E, 2)."""
    e = jnp.clip(jnp.searchsorted(p["seg_start"], t, side="right") - 1, 0, p["seg_start"].shape[0] - 1)
    return propagate_chain(p["pk_start"][e], t - p["seg_start"][e], _pk_matrix(p["ka"], p["cl"] / p["v"]),
                           p["pk_rate"][e])[1]


def rhs_pd(t, y, p):
    """``dr/dt`` alone (one state), driven by the closed-form concentration."""
    conc = central_amount(t, p) / p["v"]
    inhibition = p["imax"] * conc / (p["ic50"] + conc)
    return p["kout"] * (1.0 - inhibition) - p["kout"] * y


def closed_form_unsupported(events):
    """bool (P,): subjects whose history makes the concentration jump (a bolus into the central
    compartment, or a reset after the first event), which the closed-form path does not cover.
    A reset at the first event changes nothing (the state is already ``y0`` there). NumPy on
    concrete arrays, JAX on traced ones."""
    xp = jnp if any(isinstance(events[k], jax.core.Tracer) for k in ("seg_bolus", "seg_reset")) else np
    bolus_central = xp.asarray(events["seg_bolus"])[..., CMT_CONC - 1] != 0
    later_reset = xp.asarray(events["seg_reset"])[..., 1:].astype(bool)
    return xp.any(bolus_central, axis=-1) | xp.any(later_reset, axis=-1)


def _check_closed_form(events) -> None:
    """A clear error where the event arrays are concrete: a direct call, and the check trace that
    :func:`bayesbio.sample_nuts` and the other runners make before compiling (data held as NumPy)."""
    bad = closed_form_unsupported(events)
    if isinstance(bad, jax.core.Tracer):
        return
    if np.any(bad):
        raise bb.errors.DataError(
            "warfarin_pkpd: events: subjects at rows "
            f"{np.flatnonzero(bad)[:10].tolist()} have a bolus into the central compartment (CMT "
            f"{CMT_CONC}) or a reset (EVID 3/4) after their first event; the closed-form PK "
            "(make_model(pk='closed_form')) covers oral doses, infusions and doses into the PCA "
            "compartment only; use make_model(pk='ode')"
        )


def predictions(p, kout, imax, events, pk="closed_form"):
    """Concentrations (mg/L) and PCA relative to baseline, both (P, O), at every record.

    ``pk="ode"``: the three-state ODE (:func:`rhs`). ``pk="closed_form"``: the PK chain in
    closed form and only ``r`` integrated; subjects with a history it does not cover get NaN
    predictions and fail the solve (``-inf`` log density), and where the events are concrete
    a :class:`~bayesbio.errors.DataError` is raised instead."""
    shared = {"kout": kout, "imax": imax}
    if pk == "ode":
        states = solve_population(rhs, p, events, shared=shared, y0=jnp.array([0.0, 0.0, 1.0]), **SOLVER)
        return states[..., 1] / p["v"][:, None], states[..., 2]
    if pk != "closed_form":
        raise bb.errors.ModelError(f"warfarin_pkpd: pk must be 'closed_form' or 'ode'; got {pk!r}")
    _check_closed_form(events)
    ev = {k: jnp.asarray(events[k]) for k in ("seg_start", "seg_end", "seg_bolus", "seg_rate", "seg_reset")}
    k = p["cl"] / p["v"]
    starts = jax.vmap(pk_segment_starts)(p["ka"], k, ev)
    pk_p = {"ka": p["ka"], "cl": p["cl"], "v": p["v"], "seg_start": ev["seg_start"], "pk_start": starts,
            "pk_rate": ev["seg_rate"][..., :2]}
    at_records = jax.vmap(jax.vmap(central_amount, in_axes=(0, None)), in_axes=(0, 0))
    conc = at_records(jnp.asarray(events["obs_time"]), pk_p) / p["v"][:, None]
    # the PD state alone: the same segments, with the doses and inputs of the PCA compartment only
    pca_only = dict(events, seg_bolus=ev["seg_bolus"][..., CMT_PCA - 1:CMT_PCA],
                    seg_rate=ev["seg_rate"][..., CMT_PCA - 1:CMT_PCA])
    r = solve_population(rhs_pd, {**pk_p, "ic50": p["ic50"]}, pca_only, shared=shared, y0=jnp.array([1.0]),
                         **SOLVER)[..., 0]
    # a failure site (as a failed solve's): -inf log density, and simulate() marks the draw failed
    bad = jnp.asarray(closed_form_unsupported(events))
    numpyro.factor("pk_closed_form" + FAILURE_SITE_SUFFIX, jnp.where(jnp.any(bad), -jnp.inf, 0.0))
    return jnp.where(bad[:, None], jnp.nan, conc), jnp.where(bad[:, None], jnp.nan, r)


def make_model(pk: str = "closed_form"):
    """The model with its PK solved in closed form (default) or as the three-state ODE (``"ode"``)."""
    if pk not in ("closed_form", "ode"):
        raise bb.errors.ModelError(f"warfarin_pkpd.make_model: pk must be 'closed_form' or 'ode'; got {pk!r}")

    def model(data):
        _model(data, pk)

    return model


def _model(data, pk):
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
    conc, r = predictions(p, kout, imax, events, pk)
    if pk == "closed_form":  # finite placeholders where the history is not covered: the log density
        bad = jnp.asarray(closed_form_unsupported(events))[:, None]  # is then -inf (the failure site), not NaN
        conc, r = jnp.where(bad, 1.0, conc), jnp.where(bad, 1.0, r)
    pca = p["e0"][:, None] * r
    bb.observe("conc", bb.CombinedNoise(conc, a_conc, b_conc), obs=output_values(events, CMT_CONC - 1))
    bb.observe("pca", bb.NormalNoise(pca, sigma_pca), obs=output_values(events, CMT_PCA - 1))


model = make_model()
