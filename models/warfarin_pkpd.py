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

How it is solved (``make_model(pk="closed_form")``, the bundled ``model``): no ODE solver. The
PK chain (depot -> central) is linear and does not depend on ``r``, so its amounts have a closed
form; for an oral dose ``A`` at ``t = 0`` the central amount is the familiar
``A ka / (ka - k) (e^{-kt} - e^{-ka t})``, ``k = cl / v``. The amounts at every segment start
(after that event's doses and resets) come from a short scan over the segments
(:func:`~bayesbio.population.analytic.propagate_chain`); within a segment the central amount is
:func:`chain_central` of the segment's start state. Given ``C(t)``, the PD equation is linear in
``r``: on each segment ``r`` is its start value decayed, plus the approach to baseline, minus
``kout J``, where ``J(tau) = int_0^tau e^{-kout (tau - s)} I(s) ds`` and ``I`` the inhibition. ``J``
is computed by Gauss-Legendre quadrature (``QUADRATURE``: 8 nodes per sub-interval on a mesh
graded geometrically toward the segment start, where absorption is fastest, divided uniformly and
cut at every record) and accumulated from record to record. Every dosing history is covered (oral
doses, boluses and infusions into any compartment, resets), exactly at segment boundaries; the
quadrature error is the only approximation (at most 2.2e-9 in ``r`` over 200 prior draws,
``tests/test_warfarin_pkpd.py``); where ``kout`` is too fast for the mesh
(``MAX_DECAY_PER_SUBINTERVAL``) the prediction fails like a failed solve rather than lose
accuracy. ``make_model(pk="ode")`` solves the whole model as the three-state ODE above
(:func:`rhs`, explicit RK45 at ``SOLVER``); both give the same predictions and gradients (to
that error and the solver tolerance). The quadrature form costs about the same
at every parameter value (no step-size control; the three-state solve becomes stiff at large
``ka``): one log-density gradient on prior draws, ``benchmarks/results/warfarin_solvers.md``.
Its cost grows with segments x records (every segment's quadrature runs to every record's time,
clipped); the bundled data have one segment per subject.

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
from bayesbio.population.analytic import divided_difference_1, propagate_chain

description = "Warfarin population PK/PD (oral one-compartment PK, turnover PCA with Imax inhibition)"

RANDOM = ("ka", "cl", "v", "e0", "ic50")
#: 1-based NONMEM compartments: depot, central (concentration records), PCA
CMT_DEPOT, CMT_CONC, CMT_PCA = 1, 2, 3
COLUMNS = ["id", "time_h", "amt_mg", "dv", "dvid", "evid", "wt_kg"]

# start at prior medians (random effects 0), as the theophylline model does: the far corners
# of Stan's uniform(-2, 2) box give absorption rates of e^(2 + 2) /h and more
init_strategy = init_to_median(num_samples=15)

#: Simulation-based calibration settings (`bayesbio sbc warfarin_pkpd`): one chain per replication,
#: one replication per batch (trajectory lengths differ a lot between replications); run with
#: `--workers 2 --parallel processes` (two worker threads leak memory with this script:
#: benchmarks/results/sbc/README.md). Result: benchmarks/results/sbc/warfarin_pkpd/.
sbc = {"reps": 200, "warmup": 500, "draws": 99, "thin": 5, "batch": 1}

dims = {name: ["patient"] for name in RANDOM}
dims.update({"eta": ["patient", "random_effect"], "eta_z": ["patient", "random_effect"],
             "conc": ["patient", "record"], "pca": ["patient", "record"]})

#: Solver settings of `pk="ode"` (amounts in mg, PCA relative to baseline: absolute tolerance 1e-6 is far below
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


def chain_central(s, start, rate, ka, k):
    """Central amount a time ``s`` (any shape) after a segment start with depot and central amounts
    ``start`` (2,) and constant inputs ``rate`` (2,) (the chain of :func:`_pk_matrix`), in closed form::

        c(s) = c0 e^{-ks} + (ka a0 - u0) (e^{-ks} - e^{-ka s}) / (ka - k) + (u0 + u1) (1 - e^{-ks}) / k

    (:func:`~bayesbio.population.analytic.propagate_chain`'s second state, specialised to this
    chain: two quotients of :func:`~bayesbio.population.analytic.divided_difference_1`, stable and
    with exact gradients at ``ka == k``, and no overflow when the rates are far apart)."""
    a0, c0, u0, u1 = start[0], start[1], rate[0], rate[1]
    return (c0 * jnp.exp(-k * s) + (ka * a0 - u0) * s * divided_difference_1(-k * s, -ka * s)
            + (u0 + u1) * s * divided_difference_1(0.0, -k * s))


#: Quadrature of the PD response (module docstring): each segment's mesh is graded geometrically
#: toward its start (``ratio``, ``levels``: the finest sub-interval is ``ratio**-levels`` of the
#: segment), divided uniformly (``uniform`` parts) and cut at every record, with ``nodes``
#: Gauss-Legendre nodes per sub-interval. Accuracy: ``tests/test_warfarin_pkpd.py`` (against a
#: much finer quadrature on prior draws, and against the three-state ODE at rtol 1e-10).
QUADRATURE = dict(ratio=2.5, levels=12, uniform=32, nodes=8)
#: Largest ``kout * width`` of a sub-interval the quadrature accepts: there the 8-node rule
#: integrates the weight ``e^{-kout (hi - s)}`` alone to a relative error of 1.5e-7 (1.6e-8 at 10,
#: 9e-10 at 8); beyond it the prediction fails like a failed solve instead of being inaccurate.
#: The limit scales with the longest segment: kout > 12 * uniform / length. On the bundled data
#: (segments of 144 h and 120 h) that is kout > 2.7 /h (3.2 /h), a rate the prior gives
#: probability ~4e-5; a table with segments of 720 h would refuse kout > 0.53 /h (~1 % of the
#: prior): raise ``QUADRATURE["uniform"]`` in proportion for such data, or use ``pk="ode"``.
MAX_DECAY_PER_SUBINTERVAL = 12.0


def _mesh(ratio, levels, uniform, nodes):
    """Fractions of a segment (sorted, static) and Gauss-Legendre nodes and weights on [0, 1]."""
    fractions = np.unique(np.concatenate([ratio ** -np.arange(levels, 0, -1.0), np.arange(1, uniform) / uniform]))
    x, w = np.polynomial.legendre.leggauss(nodes)
    return fractions, (x + 1.0) / 2.0, w / 2.0


def _segment_integrals(length, offsets, start, rate, ka, k, v, kout, imax, ic50):
    """``J(tau) = int_0^tau e^{-kout (tau - s)} I(s) ds`` (``I`` the inhibition) of one segment at its
    end and at ``offsets`` (the records' times after its start, clipped to the segment), and
    whether the mesh is too coarse for ``kout`` (``MAX_DECAY_PER_SUBINTERVAL``)."""
    fractions, x, w = _mesh(**QUADRATURE)
    offsets = jnp.clip(offsets, 0.0, length)
    knots = jnp.sort(jnp.concatenate([jnp.zeros(1), length * jnp.asarray(fractions), offsets, length[None]]))
    lo, width = knots[:-1], jnp.diff(knots)
    s = lo[:, None] + width[:, None] * x
    conc = chain_central(s, start, rate, ka, k) / v
    inhibition = imax * conc / (ic50 + conc)
    # each sub-interval's own integral, weighted to its right end; then J at every knot by the
    # recurrence J_i = e^{-kout width_i} J_{i-1} + local_i (an associative scan)
    local = width * jnp.sum(w * jnp.exp(-kout * (lo[:, None] + width[:, None] - s)) * inhibition, axis=1)
    too_coarse = kout * jnp.max(width) > MAX_DECAY_PER_SUBINTERVAL
    _, cumulative = jax.lax.associative_scan(
        lambda a, b: (a[0] * b[0], a[1] * b[0] + b[1]), (jnp.exp(-kout * width), local))
    at_knots = jnp.concatenate([jnp.zeros(1, cumulative.dtype), cumulative])
    return at_knots[-1], at_knots[jnp.searchsorted(knots, offsets)], too_coarse


def subject_predictions(ka, k, v, ic50, kout, imax, pk_start, events):
    """Concentration and ``r``, both (O,), of one subject at its records (``events``: one batch row;
    ``pk_start`` (E, 2): :func:`pk_segment_starts`). Each record reads its own segment
    (``obs_segment``, so a pre-dose record sees the state before the dose). The concentration is
    :func:`chain_central` / ``v``; ``r`` is the variation-of-constants solution of its linear ODE::

        r(s0 + tau) = r0 e^{-kout tau} + (1 + u_r / kout)(1 - e^{-kout tau}) - kout J(tau)

    (``r0`` the segment's start value after resets and PCA doses, ``u_r`` its input into the PCA
    state), with ``J`` by quadrature (:func:`_segment_integrals`); ``r`` is NaN where the
    quadrature's mesh is too coarse for ``kout``."""
    seg_start, length = events["seg_start"], events["seg_end"] - events["seg_start"]
    offsets = events["obs_time"][None, :] - seg_start[:, None]  # (E, O)
    pk_rate = events["seg_rate"][:, :2]
    j_end, j_records, too_coarse = jax.vmap(
        lambda n, o, y, u: _segment_integrals(n, o, y, u, ka, k, v, kout, imax, ic50)
    )(length, offsets, pk_start, pk_rate)
    rate_r, bolus_r = events["seg_rate"][:, CMT_PCA - 1], events["seg_bolus"][:, CMT_PCA - 1]

    def carry(r0, tau, j, u):
        return r0 * jnp.exp(-kout * tau) + (1.0 + u / kout) * -jnp.expm1(-kout * tau) - kout * j

    def segment(r, seg):
        reset, bolus, tau, j, u = seg
        r0 = jnp.where(reset, 1.0, r) + bolus
        return carry(r0, tau, j, u), r0

    one = jnp.ones((), jnp.result_type(kout, float))
    _, r_start = jax.lax.scan(segment, one, (events["seg_reset"], bolus_r, length, j_end, rate_r))
    e = events["obs_segment"]
    tau = jnp.clip(events["obs_time"] - seg_start[e], 0.0, length[e])
    conc = jax.vmap(chain_central, in_axes=(0, 0, 0, None, None))(tau, pk_start[e], pk_rate[e], ka, k) / v
    r = carry(r_start[e], tau, jnp.take_along_axis(j_records, e[None, :], axis=0)[0], rate_r[e])
    return conc, jnp.where(jnp.any(too_coarse), jnp.nan, r)


def predictions(p, kout, imax, events, pk="closed_form"):
    """Concentrations (mg/L) and PCA relative to baseline, both (P, O), at every record.

    ``pk="ode"``: the three-state ODE (:func:`rhs`). ``pk="closed_form"``: the PK chain in
    closed form and ``r`` by quadrature (:func:`subject_predictions`); a subject whose predictions
    are not finite (parameters far outside any physiological range, or ``kout`` too fast for the
    quadrature's mesh) gets NaN and fails like a failed solve (``-inf`` log density; :func:`~bayesbio.population.simulate` marks the draw failed)."""
    shared = {"kout": kout, "imax": imax}
    if pk == "ode":
        states = solve_population(rhs, p, events, shared=shared, y0=jnp.array([0.0, 0.0, 1.0]), **SOLVER)
        return states[..., 1] / p["v"][:, None], states[..., 2]
    if pk != "closed_form":
        raise bb.errors.ModelError(f"warfarin_pkpd: pk must be 'closed_form' or 'ode'; got {pk!r}")
    ev = {k: jnp.asarray(events[k]) for k in ("seg_start", "seg_end", "seg_bolus", "seg_rate", "seg_reset",
                                             "obs_time", "obs_segment")}
    k = p["cl"] / p["v"]
    starts = jax.vmap(pk_segment_starts)(p["ka"], k, ev)
    conc, r = jax.vmap(subject_predictions, in_axes=(0, 0, 0, 0, None, None, 0, 0))(
        p["ka"], k, p["v"], p["ic50"], kout, imax, starts, ev)
    bad = ~jnp.all(jnp.isfinite(conc) & jnp.isfinite(r), axis=-1)
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
    if pk == "closed_form":  # finite placeholders where predictions() failed (NaN): the log density
        bad = jnp.isnan(conc) | jnp.isnan(r)  # is then -inf (its failure site), not NaN
        conc, r = jnp.where(bad, 1.0, conc), jnp.where(bad, 1.0, r)
    pca = p["e0"][:, None] * r
    bb.observe("conc", bb.CombinedNoise(conc, a_conc, b_conc), obs=output_values(events, CMT_CONC - 1))
    bb.observe("pca", bb.NormalNoise(pca, sigma_pca), obs=output_values(events, CMT_PCA - 1))


model = make_model()
