"""Population layer: dosing events and batched solves against the closed-form one-compartment
solution, gradients, padding, failure safety, random effects and covariates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density

from bayesbio.errors import DataError, ModelError, OptionError, SolverError
from bayesbio.population import (
    allometric,
    as_batch,
    bolus,
    categorical,
    individual_parameters,
    infusion,
    lognormal_parameters,
    make_batch,
    patient,
    repeat,
    reset,
    solve_population,
    solve_population_with_status,
)


def one_compartment(t, y, p):
    """Depot (state 0) with first-order absorption into the central compartment (state 1)."""
    depot, central = y[0], y[1]
    k = p["cl"] / p["v"]
    return jnp.stack([-p["ka"] * depot, p["ka"] * depot - k * central])


def closed_form(t, ka, cl, v, f_oral, oral, iv, infusions):
    """Central amount: superposition of oral doses (t_d, D), IV boluses (t_d, D) and infusions
    (t_s, R, T) of the linear one-compartment model (Gibaldi & Perrier, Pharmacokinetics, ch. 1-3)."""
    k = cl / v
    out = jnp.zeros_like(t)
    for td, d in oral:
        tau = t - td
        term = f_oral * d * ka / (ka - k) * (jnp.exp(-k * tau) - jnp.exp(-ka * tau))
        out = out + jnp.where(tau >= 0, term, 0.0)
    for td, d in iv:
        tau = t - td
        out = out + jnp.where(tau >= 0, d * jnp.exp(-k * jnp.maximum(tau, 0.0)), 0.0)
    for ts, rate, dur in infusions:
        tau = t - ts
        during = rate / k * (1 - jnp.exp(-k * tau))
        after = rate / k * (1 - jnp.exp(-k * dur)) * jnp.exp(-k * (tau - dur))
        out = out + jnp.where(tau < 0, 0.0, jnp.where(tau <= dur, during, after))
    return out


ORAL = [(0.0, 100.0), (12.0, 100.0), (24.0, 100.0)]
IV = [(36.0, 40.0)]
INFUSIONS = [(30.0, 25.0, 2.0)]  # 50 mg over 2 h
# observation times, with a pre-dose (trough) and a post-dose sample at 12 and 36
OBS = np.array([0.5, 2.0, 12.0, 12.0, 13.0, 24.5, 30.0, 31.0, 32.0, 33.5, 36.0, 36.0, 40.0, 48.0])
PRE = np.array([False, False, True, False, False, False, False, False, False, False, True, False, False, False])


def regimen_batch():
    doses = repeat(bolus(0.0, 100.0, 0), every=12.0, count=3)
    doses += [infusion(30.0, 50.0, 1, duration=2.0), bolus(36.0, 40.0, 1)]
    return make_batch([patient(doses, OBS, obs_compartment=1, pre_dose=PRE)], n_states=2)


def expected_central(ka, cl, v, f_oral=1.0):
    t = jnp.asarray(OBS)
    amount = closed_form(t, ka, cl, v, f_oral, ORAL, [], INFUSIONS)
    # the IV bolus at 36 is seen by the post-dose sample only
    iv_tau = t - 36.0
    seen = (iv_tau > 0) | ((iv_tau == 0) & ~jnp.asarray(PRE))
    return amount + jnp.where(seen, 40.0 * jnp.exp(-(cl / v) * jnp.maximum(iv_tau, 0.0)), 0.0)


TIGHT = dict(rtol=1e-10, atol=1e-10, max_steps=20000)


def simulate(theta, batch, **options):
    ka, cl, v, f_oral = theta
    params = {"ka": jnp.atleast_1d(ka), "cl": cl[None], "v": v[None]}
    sol = solve_population_with_status(
        one_compartment, params, batch, bioavailability=jnp.stack([f_oral, 1.0]), **options
    )
    return sol.ys[0, :, 1], sol.failed


def test_multiple_doses_and_infusion_match_closed_form():
    batch = regimen_batch()
    theta = jnp.array([1.3, 2.7, 30.0, 0.8])
    central, failed = simulate(theta, batch, **TIGHT)
    exact = expected_central(*theta)
    assert not bool(failed)
    rel = np.abs(np.asarray(central) - np.asarray(exact)) / np.abs(np.asarray(exact))
    # acceptance criterion of the population issue: relative error below 1e-6 (solver at rtol 1e-10)
    assert rel.max() < 1e-6, rel
    # the trough at 12 h is strictly below the post-dose sample only through the depot; at 36 h the
    # IV bolus must jump the central amount by exactly 40 mg
    assert abs(float(central[11] - central[10]) - 40.0) < 1e-6


def test_gradients_match_closed_form_and_finite_differences():
    batch = regimen_batch()
    weights = jnp.linspace(0.5, 1.5, OBS.size)

    @jax.jit
    def loss(theta):
        return jnp.sum(weights * jnp.log(simulate(theta, batch, **TIGHT)[0]))

    def loss_exact(theta):
        return jnp.sum(weights * jnp.log(expected_central(*theta)))

    theta = jnp.array([1.3, 2.7, 30.0, 0.8])
    g = np.asarray(jax.grad(loss)(theta))
    g_exact = np.asarray(jax.grad(loss_exact)(theta))
    # forward sensitivities integrated at rtol 1e-10: the gradient is exact to ~1e-8 relative
    np.testing.assert_allclose(g, g_exact, rtol=1e-6)
    # central differences, relative step 1e-5: truncation O(h^2) ~ 1e-10, solver noise ~ 1e-10/1e-5
    h = 1e-5 * np.asarray(theta)
    fd = np.array([
        (float(loss(theta.at[i].add(h[i]))) - float(loss(theta.at[i].add(-h[i])))) / (2 * h[i]) for i in range(4)
    ])
    np.testing.assert_allclose(g, fd, rtol=1e-4)


def test_expm_solver_is_exact_for_the_linear_regimen_with_gradients():
    """solver="expm": the exact linear solution, no tolerance to set."""
    batch = regimen_batch()
    theta = jnp.array([1.3, 2.7, 30.0, 0.8])
    central, failed = simulate(theta, batch, solver="expm")
    exact = expected_central(*theta)
    assert not bool(failed)
    rel = np.abs(np.asarray(central) - np.asarray(exact)) / np.abs(np.asarray(exact))
    # Pade scaling-and-squaring in double precision: ~1e-15 per propagator, a few segments chained
    assert rel.max() < 1e-12, rel
    weights = jnp.linspace(0.5, 1.5, OBS.size)
    g = jax.grad(lambda th: jnp.sum(weights * jnp.log(simulate(th, batch, solver="expm")[0])))(theta)
    g_exact = jax.grad(lambda th: jnp.sum(weights * jnp.log(expected_central(*th))))(theta)
    # reverse-mode through the exact propagators: agreement to rounding (1e-9 leaves 1e6 ulps)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_exact), rtol=1e-9)


def test_expm_solver_handles_large_infusion_rates_and_equal_rate_constants():
    # ka == k makes the textbook closed form 0/0; the matrix exponential has no such case.
    # Limit: central(t) = D ka t exp(-k t). A large infusion rate is rescaled, not squared.
    batch = make_batch([patient([bolus(0.0, 100.0, 0)], [0.5, 1.0, 4.0], obs_compartment=1)], n_states=2)
    ka = 0.25
    params = {"ka": jnp.array([ka]), "cl": jnp.array([0.25 * 8.0]), "v": jnp.array([8.0])}
    sol = solve_population_with_status(one_compartment, params, batch, solver="expm")
    t = np.array([0.5, 1.0, 4.0])
    np.testing.assert_allclose(np.asarray(sol.ys[0, :, 1]), 100.0 * ka * t * np.exp(-ka * t), rtol=1e-12)
    big = make_batch([patient([infusion(0.0, 1e7, 1, duration=1.0)], [0.5, 2.0], obs_compartment=1)], n_states=2)
    sol = solve_population_with_status(one_compartment, params, big, solver="expm")
    k = 0.25
    want = np.array([1e7 / k * (1 - np.exp(-k * 0.5)), 1e7 / k * (1 - np.exp(-k)) * np.exp(-k * 1.0)])
    assert not bool(sol.failed[0])
    np.testing.assert_allclose(np.asarray(sol.ys[0, :, 1]), want, rtol=1e-12)


def test_expm_solver_rejects_nonlinear_rhs_via_check_linear():
    from bayesbio.population.linear import check_linear

    p = {"ka": 1.0, "cl": 2.0, "v": 10.0}
    check_linear(one_compartment, p, 2)  # linear: no error
    with pytest.raises(ModelError, match="not linear in y"):
        check_linear(lambda t, y, p: -p["ka"] * y**2, p, 2)
    with pytest.raises(ModelError, match="depends on t"):
        check_linear(lambda t, y, p: -p["ka"] * y + t, p, 2)
    # inside a solve (traced parameters) a non-linear rhs is a failed solve, never its linearisation
    batch = make_batch([patient([bolus(0.0, 100.0, 0)], [1.0, 2.0], obs_compartment=1)], n_states=2)
    mm = lambda t, y, p: jnp.stack([-p["vmax"][0] * y[0] / (1.0 + y[0]), y[0] * 0.1 - 0.2 * y[1]])  # noqa: E731
    failed = jax.jit(lambda v: solve_population_with_status(mm, {"vmax": v}, batch, solver="expm").failed)
    assert bool(failed(jnp.array([[2.0]]))[0])
    failed = jax.jit(lambda p: solve_population_with_status(one_compartment, p, batch, solver="expm").failed)
    assert not bool(failed({"ka": jnp.array([1.0]), "cl": jnp.array([2.0]), "v": jnp.array([10.0])})[0])


def test_batched_solve_pads_unequal_patients_and_matches_single_solves():
    pats = [
        patient([bolus(0.0, 320.0, 0)], [0.25, 1.0, 2.0, 4.0, 8.0, 24.0], obs_compartment=1),
        patient([bolus(0.0, 200.0, 0), bolus(8.0, 200.0, 0)], [1.0, 9.0, 10.0], obs_compartment=1),
        patient([infusion(0.0, 100.0, 1, rate=50.0)], [0.5, 3.0], obs_compartment=1),
    ]
    batch = make_batch(pats, n_states=2)
    assert batch.obs_time.shape == (3, 6) and batch.obs_valid.sum() == 11
    params = {"ka": jnp.array([1.5, 0.8, 1.0]), "cl": jnp.array([2.7, 3.5, 2.0]), "v": jnp.array([31.0, 25.0, 40.0])}
    sol = solve_population_with_status(one_compartment, params, batch, **TIGHT)
    assert sol.ys.shape == (3, 6, 2) and not bool(jnp.any(sol.failed))
    for i, p in enumerate(pats):
        single = solve_population_with_status(
            one_compartment, {k: v[i : i + 1] for k, v in params.items()}, make_batch([p], n_states=2), **TIGHT
        )
        n = p.n_obs
        # same arithmetic up to lockstep stepping of the vmapped loop: agreement at solver tolerance
        np.testing.assert_allclose(sol.ys[i, :n], single.ys[0, :n], rtol=1e-8, atol=1e-9)
    # patient 3: an infusion of 50 mg/h into central, k = 0.05 /h
    k = 2.0 / 40.0
    exact = 50.0 / k * (1 - np.exp(-k * np.array([0.5])))
    after = 50.0 / k * (1 - np.exp(-2 * k)) * np.exp(-k * 1.0)
    np.testing.assert_allclose(sol.ys[2, :2, 1], [exact[0], after], rtol=1e-8)


def test_large_populations_are_solved_in_chunks_with_the_same_result(monkeypatch):
    """Populations above PATIENT_CHUNK run as a sequence of lockstep chunks (lax.map of vmap),
    padded with copies of the last patient; values and gradients equal the one-chunk solve."""
    import bayesbio.population.batched as batched

    rng = np.random.default_rng(5)
    pats = [patient([bolus(0.0, 100.0 + 10 * i, 0)], np.sort(rng.uniform(0.2, 24.0, 4)), obs_compartment=1)
            for i in range(7)]
    batch = make_batch(pats, n_states=2)
    theta = {"ka": jnp.asarray(rng.uniform(0.5, 3, 7)), "cl": jnp.asarray(rng.uniform(1, 4, 7)),
             "v": jnp.asarray(rng.uniform(20, 40, 7))}

    # per-patient initial states and bioavailabilities: the chunked (padded, sliced) branch
    y0 = jnp.asarray(np.stack([np.zeros(7), rng.uniform(0, 5, 7)], axis=1))
    bio = jnp.asarray(np.stack([rng.uniform(0.5, 1.0, 7), np.ones(7)], axis=1))

    def loss(p):
        sol = solve_population_with_status(one_compartment, p, batch, y0=y0, bioavailability=bio)
        return jnp.sum(jnp.log(sol.ys[..., 1])), (sol.ys, sol.failed)

    (_, (ys_one, _)), g_one = jax.value_and_grad(loss, has_aux=True)(theta)
    monkeypatch.setattr(batched, "PATIENT_CHUNK", 3)  # 7 patients: 3 equal chunks of 3, 2 padding
    (_, (ys_chunk, failed_chunk)), g_chunk = jax.value_and_grad(loss, has_aux=True)(theta)
    assert ys_chunk.shape == (7, 4, 2) and failed_chunk.shape == (7,) and not bool(jnp.any(failed_chunk))
    # each patient's own loop does the same arithmetic in any chunk, up to how XLA vectorises it
    # for another batch size: equal to rounding of the solution's scale (~100 mg), so 1e-12
    # relative plus 1e-12 x 100 absolute (depot amounts decay to ~1e-9 where rounding dominates)
    np.testing.assert_allclose(np.asarray(ys_chunk), np.asarray(ys_one), rtol=1e-12, atol=1e-10)
    for k in theta:  # sums of such terms: rounding amplified by at most a few orders
        np.testing.assert_allclose(np.asarray(g_chunk[k]), np.asarray(g_one[k]), rtol=1e-9)


def test_chunks_group_patients_by_step_cost(monkeypatch):
    """Before chunking, patients are put in order of a step-count proxy (the fastest rate at the
    first dose times the span): for one compartment with absorption that is the order of ka.
    The results still come back in the input order, equal to the one-chunk solve."""
    import bayesbio.population.batched as batched

    ka = np.array([3.0, 0.2, 1.5, 0.5, 8.0, 0.3, 2.0, 0.8, 5.0])
    pats = [patient([bolus(0.0, 100.0, 0)], [0.5, 2.0, 8.0, 24.0], obs_compartment=1) for _ in ka]
    batch = make_batch(pats, n_states=2)
    theta = {"ka": jnp.asarray(ka), "cl": jnp.full(9, 2.0), "v": jnp.full(9, 30.0)}
    cost = jax.vmap(lambda p, ev: batched._step_cost(one_compartment, None, p, ev, None, None))(theta, batch)
    # row sums of |J| = (ka, ka + cl / v): the larger is ka + k, times the 24 h span
    np.testing.assert_allclose(np.asarray(cost), (ka + 2.0 / 30.0) * 24.0, rtol=1e-12)

    def loss(p):
        sol = solve_population_with_status(one_compartment, p, batch, **TIGHT)
        return jnp.sum(jnp.log(sol.ys[..., 1])), sol.ys

    (_, ys_one), g_one = jax.value_and_grad(loss, has_aux=True)(theta)
    monkeypatch.setattr(batched, "PATIENT_CHUNK", 3)  # 3 chunks: (0.2, 0.3, 0.5), (0.8, 1.5, 2), (3, 5, 8)
    chunks, inner = [], batched._chunk_index

    def spy(n, cost=None):
        chunks.append(inner(n, cost))
        return chunks[-1]

    monkeypatch.setattr(batched, "_chunk_index", spy)
    (_, ys_chunk), g_chunk = jax.value_and_grad(loss, has_aux=True)(theta)
    # the chunks the solve ran: patients in order of ka, three by three
    assert len(chunks) == 1
    np.testing.assert_array_equal(np.asarray(chunks[0]), [[1, 5, 3], [7, 2, 6], [0, 8, 4]])
    # same arithmetic per patient in any chunk (see the test above for the tolerances)
    np.testing.assert_allclose(np.asarray(ys_chunk), np.asarray(ys_one), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(np.asarray(g_chunk["ka"]), np.asarray(g_one["ka"]), rtol=1e-9)


def test_rhs_without_forward_mode_is_still_solved_in_chunks(monkeypatch):
    """An rhs that forward-mode AD cannot trace (here through a custom VJP) gets no step-cost
    ordering, and its value-only solve works in chunks as before."""
    import bayesbio.population.batched as batched

    @jax.custom_vjp
    def same(x):
        return x

    same.defvjp(lambda x: (x, None), lambda _, g: (g,))

    def rhs_vjp_only(t, y, p):
        return same(one_compartment(t, y, p))

    ka = np.array([3.0, 0.2, 1.5, 0.5, 8.0, 0.3, 2.0])
    pats = [patient([bolus(0.0, 100.0, 0)], [0.5, 2.0, 8.0], obs_compartment=1) for _ in ka]
    batch = make_batch(pats, n_states=2)
    theta = {"ka": jnp.asarray(ka), "cl": jnp.full(7, 2.0), "v": jnp.full(7, 30.0)}
    monkeypatch.setattr(batched, "PATIENT_CHUNK", 3)
    with pytest.raises(TypeError):  # what the ordering would meet
        jax.jacfwd(lambda y: rhs_vjp_only(0.0, y, {"ka": 1.0, "cl": 2.0, "v": 30.0}))(jnp.ones(2))
    sol = solve_population_with_status(rhs_vjp_only, theta, batch, **TIGHT)
    ref = solve_population_with_status(one_compartment, theta, batch, **TIGHT)
    np.testing.assert_allclose(np.asarray(sol.ys), np.asarray(ref.ys), rtol=1e-12, atol=1e-10)


def test_reset_returns_to_initial_state():
    p = patient([bolus(0.0, 100.0, 1), reset(5.0), bolus(5.0, 50.0, 1)], [4.0, 6.0], obs_compartment=1)
    batch = make_batch([p], n_states=2)
    params = {"ka": jnp.array([1.0]), "cl": jnp.array([1.0]), "v": jnp.array([10.0])}
    ys = solve_population_with_status(one_compartment, params, batch, **TIGHT).ys[0, :, 1]
    # k = 0.1 /h; after the reset only the 50 mg bolus at 5 h remains
    np.testing.assert_allclose(ys, [100 * np.exp(-0.4), 50 * np.exp(-0.1)], rtol=1e-8)


def test_failed_solve_is_minus_infinity_not_an_error():
    batch = regimen_batch().to_dict()

    def model(data):
        ka = numpyro.sample("ka", dist.LogNormal(0.0, 1.0))
        params = {"ka": jnp.atleast_1d(ka), "cl": jnp.array([2.7]), "v": jnp.array([30.0])}
        amounts = solve_population(one_compartment, params, data["events"], max_steps=3)
        numpyro.deterministic("c", amounts)

    def logp(ka):
        return log_density(model, ({"events": batch},), {}, {"ka": ka})[0]

    value, grad = jax.jit(jax.value_and_grad(logp))(1.3)
    assert np.isneginf(float(value))
    # the failed solve contributes no gradient (masked in the custom VJP): only the prior's is left
    assert np.isfinite(float(grad))


def test_batch_round_trips_through_model_data():
    batch = regimen_batch()
    again = as_batch(batch.to_dict())
    for name, value in batch.to_dict().items():
        np.testing.assert_array_equal(np.asarray(getattr(again, name)), value)
    with pytest.raises(DataError, match="missing field"):
        as_batch({"obs_time": np.zeros((1, 1))})


def test_make_batch_and_patient_errors():
    with pytest.raises(DataError, match="compartment 2"):
        make_batch([patient([bolus(0.0, 1.0, 2)], [1.0])], n_states=2)
    with pytest.raises(DataError, match="sorted"):
        patient([bolus(0.0, 1.0)], [2.0, 1.0])
    with pytest.raises(DataError, match="exactly one of 'rate' and 'duration'"):
        infusion(0.0, 10.0, 1)
    with pytest.raises(DataError, match="amount"):
        bolus(0.0, -1.0)
    with pytest.raises(SolverError, match="patient axis first"):
        solve_population_with_status(one_compartment, {"ka": 1.0, "cl": 1.0, "v": 1.0}, regimen_batch())


def _trace(fn, *args, **kwargs):
    return handlers.trace(handlers.seed(fn, 0)).get_trace(*args, **kwargs)


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("correlation", ["diagonal", "lkj"])
def test_lognormal_parameters_sites_and_values(centered, correlation):
    typical = {"ka": 1.5, "cl": 2.7, "v": 31.0}
    omega = jnp.array([0.6, 0.3, 0.1])

    def model():
        return lognormal_parameters(typical, omega, 5, centered=centered, correlation=correlation,
                                    factors={"cl": jnp.linspace(0.5, 1.5, 5)})

    tr = _trace(model)
    eta = tr["eta"]["value"]
    assert eta.shape == (5, 3)
    assert tr["eta"]["type"] == ("sample" if centered else "deterministic")
    assert ("eta_z" in tr) == (not centered)
    assert ("eta_corr_cholesky" in tr) == (correlation == "lkj")
    for j, k in enumerate(typical):
        factor = np.linspace(0.5, 1.5, 5) if k == "cl" else 1.0
        np.testing.assert_allclose(tr[k]["value"], typical[k] * factor * np.exp(eta[:, j]), rtol=1e-12)


def test_random_effects_have_the_prior_covariance():
    # 20000 patients: the sample covariance of eta matches diag(omega) R diag(omega) to ~2%
    omega = jnp.array([0.5, 0.2])

    def model():
        return lognormal_parameters({"a": 1.0, "b": 1.0}, omega, 20000, record=False)

    eta = _trace(model)["eta"]["value"]
    np.testing.assert_allclose(np.std(np.asarray(eta), axis=0), omega, rtol=0.03)  # 3 sd of an SD estimate: 3/sqrt(2*20000)=1.5%


def test_effects_and_covariate_errors():
    with pytest.raises(ModelError, match="'omega' must have the keys"):
        _trace(lambda: lognormal_parameters({"ka": 1.0, "cl": 1.0}, {"ka": 0.1}, 3))
    with pytest.raises(OptionError, match="correlation"):
        _trace(lambda: lognormal_parameters({"ka": 1.0, "cl": 1.0}, jnp.ones(2), 3, correlation="full"))
    with pytest.raises(ModelError, match="shape"):
        individual_parameters({"ka": 1.0}, jnp.zeros((3, 2)))
    with pytest.raises(DataError, match="positive"):
        allometric(np.array([70.0, 0.0]))
    with pytest.raises(DataError, match="codes must lie"):
        categorical([0, 3], jnp.zeros(1))
    np.testing.assert_allclose(allometric(np.array([70.0, 140.0]), 70.0, 0.75), [1.0, 2**0.75])
    np.testing.assert_allclose(categorical(np.array([0, 1, 2]), jnp.log(jnp.array([2.0, 3.0]))), [1.0, 2.0, 3.0])
