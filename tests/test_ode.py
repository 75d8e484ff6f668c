"""ODE solves against exact answers: matrix exponentials, an independent stiff reference,
failure handling inside models, and input validation.

Tolerance policy. An adaptive solver controls the *local* error per step to about
``rtol * |y| + atol``; the *global* error at a requested time is a sum of propagated local
errors and is in practice 1-100x the local tolerance (Hairer, Nørsett & Wanner, Solving ODEs I,
§II.4). Every numerical comparison below therefore allows 100x the solver tolerance it ran
with, measured relative to the size of the state (or of the gradient) at that time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density

import bayesbio as bb
from bayesbio.errors import OptionError, SolverError
from bayesbio.ode import SOLVERS, solve_with_status

# ------------------------------------------------------------------------------------------
# linear ODE y' = A y: y(t) = expm(A (t - t0)) y0 exactly

A = jnp.array([[-1.0, 0.5, 0.1], [0.2, -2.0, 0.3], [0.1, 0.4, -3.0]])  # eigenvalues -0.89, -2.00, -3.11
Y0 = jnp.array([1.0, -0.5, 2.0])
TS = jnp.array([0.1, 0.5, 1.0, 2.0, 5.0])
RTOL, ATOL = 1e-8, 1e-10
# 100x the solver's rtol (see the module docstring); measured: <= 2e-8 for the explicit
# Runge-Kutta solvers, ~4e-7 for kvaerno5 (its embedded error estimate is less sharp).
LINEAR_TOL = 1e-6
# Weights of the scalar test function L = sum(W * y(ts)): every state and time contributes.
W = jnp.array([1.0, 2.0, -1.0]) * jnp.arange(1.0, 6.0)[:, None]

# Solvers checked here: the default fused Dormand-Prince loop, the fused Rosenbrock loop, a
# diffrax explicit solver and diffrax's stiff ESDIRK solver.
LINEAR_SOLVERS = [s for s in ("rk45", "rodas4", "tsit5", "kvaerno5") if s in SOLVERS]


def linear_rhs(t, y, a):
    return a @ y


def exact_linear(y0, a, ts, t0=0.0):
    return jax.vmap(lambda t: jax.scipy.linalg.expm(a * (t - t0)) @ y0)(ts)


def loss_exact(y0, a, ts, t0):
    return jnp.sum(W * exact_linear(y0, a, ts, t0))


def loss_numeric(y0, a, ts, t0, solver, sensitivity):
    sol = solve_with_status(
        linear_rhs, y0, ts, a, t0=t0, solver=solver, rtol=RTOL, atol=ATOL, sensitivity=sensitivity
    )
    return jnp.sum(W * sol.ys)


def assert_close_scaled(actual, expected, tol, what):
    """max |actual - expected| <= tol * max |expected| along the last axis (per time point)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = np.max(np.abs(expected), axis=-1, keepdims=True)
    err = np.abs(actual - expected) / scale
    assert np.all(err <= tol), f"{what}: scaled error {err.max():.3g} > {tol:g}\n{actual}\nvs\n{expected}"


@pytest.mark.parametrize("sensitivity", ["forward", "adjoint"])
@pytest.mark.parametrize("solver", LINEAR_SOLVERS)
def test_linear_ode_matches_matrix_exponential(solver, sensitivity):
    sol = solve_with_status(
        linear_rhs, Y0, TS, A, solver=solver, rtol=RTOL, atol=ATOL, sensitivity=sensitivity
    )
    assert not bool(sol.failed)
    assert sol.ys.shape == (TS.shape[0], 3)
    assert_close_scaled(sol.ys, exact_linear(Y0, A, TS), LINEAR_TOL, f"{solver}/{sensitivity}")


def test_initial_time_offset_and_output_at_t0():
    # ts[0] == t0 returns the initial state itself; a shifted t0 shifts the solution
    t0 = 1.5
    ts = t0 + jnp.array([0.0, 0.5, 2.0])
    sol = solve_with_status(linear_rhs, Y0, ts, A, t0=t0, rtol=RTOL, atol=ATOL)
    assert not bool(sol.failed)
    np.testing.assert_allclose(sol.ys[0], Y0, rtol=0, atol=1e-14)
    assert_close_scaled(sol.ys, exact_linear(Y0, A, ts, t0), LINEAR_TOL, "t0 offset")


# Gradients: forward sensitivities are integrated under the same error control as the state,
# and the adjoint differentiates the numerical solution, which converges to the exact one at the
# same rate, so both are held to the same 100x-tolerance bound (relative to max |gradient|).
# Measured: <= 4e-8 (forward and adjoint, rk45 and tsit5).
GRAD_TOL = 1e-6
GRAD_SOLVERS = [s for s in ("rk45", "rodas4", "tsit5") if s in SOLVERS]


@pytest.mark.parametrize("sensitivity", ["forward", "adjoint"])
@pytest.mark.parametrize("solver", GRAD_SOLVERS)
def test_gradients_wrt_y0_and_params_match_matrix_exponential(solver, sensitivity):
    grad = jax.jit(jax.grad(loss_numeric, argnums=(0, 1)), static_argnums=(4, 5))
    g_y0, g_a = grad(Y0, A, TS, 0.0, solver, sensitivity)
    e_y0, e_a = jax.grad(loss_exact, argnums=(0, 1))(Y0, A, TS, 0.0)
    assert np.all(np.isfinite(g_y0)) and np.all(np.isfinite(g_a))
    assert np.max(np.abs(g_y0 - e_y0)) <= GRAD_TOL * np.max(np.abs(e_y0)), (g_y0, e_y0)
    assert np.max(np.abs(g_a - e_a)) <= GRAD_TOL * np.max(np.abs(e_a)), (g_a, e_a)


@pytest.mark.parametrize("solver", GRAD_SOLVERS)
def test_forward_gradients_wrt_times(solver):
    t0 = 0.2
    ts = TS + t0
    grad = jax.jit(jax.grad(loss_numeric, argnums=(2, 3)), static_argnums=(4, 5))
    g_ts, g_t0 = grad(Y0, A, ts, t0, solver, "forward")
    e_ts, e_t0 = jax.grad(loss_exact, argnums=(2, 3))(Y0, A, ts, t0)
    # against the exact derivative (d y(t_i)/d t_i = A y(t_i), d y/d t0 = -expm(A(t - t0)) A y0)
    np.testing.assert_allclose(g_ts, e_ts, rtol=GRAD_TOL, atol=GRAD_TOL * np.max(np.abs(e_ts)))
    np.testing.assert_allclose(g_t0, e_t0, rtol=GRAD_TOL)

    # against central finite differences of the solver itself: step h = 1e-3 gives truncation
    # error h^2/6 |y'''| ~ 2e-7 relative and solver noise ~ (global error 1e-8) / h ~ 1e-5, so
    # 1e-4 relative is the right bound.
    h = 1e-3

    loss = jax.jit(loss_numeric, static_argnums=(4, 5))

    def f(ts_, t0_):
        return float(loss(Y0, A, ts_, t0_, solver, "forward"))

    fd_ts = np.array(
        [(f(ts.at[i].add(h), t0) - f(ts.at[i].add(-h), t0)) / (2 * h) for i in range(ts.shape[0])]
    )
    fd_t0 = (f(ts, t0 + h) - f(ts, t0 - h)) / (2 * h)
    np.testing.assert_allclose(g_ts, fd_ts, rtol=1e-4, atol=1e-4 * np.max(np.abs(fd_ts)))
    np.testing.assert_allclose(g_t0, fd_t0, rtol=1e-4)


@pytest.mark.parametrize("solver", GRAD_SOLVERS[:1])
def test_grad_of_jitted_function_with_forward_sensitivities(solver):
    # jax.grad(jax.jit(f)) is the everyday pattern of optimisation loops (optax, scipy.optimize)
    loss = jax.jit(loss_numeric, static_argnums=(4, 5))
    g_y0, g_a = jax.grad(loss, argnums=(0, 1))(Y0, A, TS, 0.0, solver, "forward")
    e_y0, e_a = jax.grad(loss_exact, argnums=(0, 1))(Y0, A, TS, 0.0)
    assert np.max(np.abs(g_a - e_a)) <= GRAD_TOL * np.max(np.abs(e_a))


@pytest.mark.parametrize("solver", GRAD_SOLVERS)
def test_forward_sensitivities_only_for_differentiated_parameter_leaves(solver, monkeypatch):
    """A parameter leaf that is data (here a constant input ``u``, as an infusion rate from a
    dosing table) gets no sensitivity columns, and the gradient with respect to the other leaf
    is unchanged: y' = A y + u with y(0) = Y0 is exact as expm on the augmented system."""
    import bayesbio.ode as ode

    u = jnp.array([0.3, -0.2, 0.5])

    def rhs(t, y, p):
        return p["a"] @ y + p["u"]

    def loss(a):
        sol = solve_with_status(rhs, Y0, TS, {"a": a, "u": u}, solver=solver, rtol=RTOL, atol=ATOL,
                                sensitivity="forward")
        return jnp.sum(W * sol.ys)

    def loss_exact_input(a):  # [y; 1]' = [[A, u], [0, 0]] [y; 1]
        big = jnp.zeros((4, 4)).at[:3, :3].set(a).at[:3, 3].set(u)
        z = jax.vmap(lambda t: jax.scipy.linalg.expm(big * t) @ jnp.append(Y0, 1.0))(TS)
        return jnp.sum(W * z[:, :3])

    widths = []
    if solver == "rk45":  # the fused loop integrates [y | S] flat: its width tells the columns
        inner = ode.dopri5

        def spy(f, t0, x0, ts, **kw):
            widths.append(x0.shape[0])
            return inner(f, t0, x0, ts, **kw)

        monkeypatch.setattr(ode, "dopri5", spy)
        monkeypatch.setitem(ode._FUSED, "rk45", spy)
    g = jax.grad(loss)(A)
    e = jax.grad(loss_exact_input)(A)
    assert np.max(np.abs(g - e)) <= GRAD_TOL * np.max(np.abs(e))
    if solver == "rk45":
        # 3 states + 3 x 9 columns for the 9 entries of A; the 3 of u would make it 39
        assert widths == [3 + 3 * 9], widths


@pytest.mark.parametrize("max_groups", [16, 0])
def test_rk45_sensitivity_columns_by_leaf_and_all_at_once_agree_with_exact(max_groups, monkeypatch):
    """The fused RK45 forms its sensitivity columns leaf by leaf (2 to ``_MAX_COLUMN_GROUPS``
    leaves) or as one vmapped JVP; both give the exact gradient with respect to y0, a matrix
    leaf, a vector leaf, a scalar leaf and an empty leaf of a dict whose constant leaf "ab" sits
    between differentiated ones (3 + 9 + 3 + 1 + 0 = 16 columns): y' = (A + c I) y + b + ab is
    exact as expm on the augmented system [y; 1]. The solver's initial state tells which path
    ran: the leaf-by-leaf path stores S = [I | 0] column by column, the other row by row."""
    import bayesbio.ode as ode

    monkeypatch.setattr(ode, "_MAX_COLUMN_GROUPS", max_groups)
    b0, c0, ab = jnp.array([0.3, -0.2, 0.5]), jnp.asarray(-0.4), jnp.array([0.1, 0.0, -0.3])
    initial_states = []
    inner = ode.dopri5

    def spy(f, t0, x0, ts, **kw):
        initial_states.append(np.asarray(x0))
        return inner(f, t0, x0, ts, **kw)

    monkeypatch.setattr(ode, "dopri5", spy)
    monkeypatch.setitem(ode._FUSED, "rk45", spy)

    def rhs(t, y, p):
        return (p["a"] + p["c"] * jnp.eye(3)) @ y + p["b"] + p["ab"] + jnp.sum(p["d"])

    def loss(y0, a, b, c, d):
        sol = solve_with_status(rhs, y0, TS, {"a": a, "ab": ab, "b": b, "c": c, "d": d}, solver="rk45",
                                rtol=RTOL, atol=ATOL, sensitivity="forward")
        return jnp.sum(W * sol.ys)

    def loss_exact_input(y0, a, b, c):
        big = jnp.zeros((4, 4)).at[:3, :3].set(a + c * jnp.eye(3)).at[:3, 3].set(b + ab)
        z = jax.vmap(lambda t: jax.scipy.linalg.expm(big * t) @ jnp.append(y0, 1.0))(TS)
        return jnp.sum(W * z[:, :3])

    got = jax.grad(loss, argnums=(0, 1, 2, 3, 4))(Y0, A, b0, c0, jnp.zeros(0))
    want = jax.grad(loss_exact_input, argnums=(0, 1, 2, 3))(Y0, A, b0, c0)
    for name, g, e in zip(("y0", "a", "b", "c"), got, want):
        assert np.max(np.abs(g - e)) <= GRAD_TOL * np.max(np.abs(e)), (name, g, e)
    assert got[4].shape == (0,)
    s0 = np.eye(3, 16)  # d y / d [y0 | a | b | c] at t0
    layout = s0.T.reshape(-1) if max_groups else s0.reshape(-1)
    assert len(initial_states) == 1
    np.testing.assert_array_equal(initial_states[0], np.concatenate([np.asarray(Y0), layout]))


def test_grad_of_jitted_function_with_adjoint():
    loss = jax.jit(loss_numeric, static_argnums=(4, 5))
    g_y0, g_a = jax.grad(loss, argnums=(0, 1))(Y0, A, TS, 0.0, "tsit5", "adjoint")
    e_y0, e_a = jax.grad(loss_exact, argnums=(0, 1))(Y0, A, TS, 0.0)
    assert np.max(np.abs(g_a - e_a)) <= GRAD_TOL * np.max(np.abs(e_a))


# ------------------------------------------------------------------------------------------
# stiff problem: Robertson's chemical kinetics (Hairer & Wanner, Solving ODEs II, §IV.1)


def robertson(t, y, k):
    k1, k2, k3 = k[0], k[1], k[2]
    return jnp.stack(
        [
            -k1 * y[0] + k3 * y[1] * y[2],
            k1 * y[0] - k3 * y[1] * y[2] - k2 * y[1] ** 2,
            k2 * y[1] ** 2,
        ]
    )


ROBERTSON_K = jnp.array([0.04, 3e7, 1e4])
ROBERTSON_Y0 = jnp.array([1.0, 0.0, 0.0])
ROBERTSON_TS = jnp.array([1e-4, 1e-2, 0.4, 4.0, 40.0, 400.0, 1000.0])


@pytest.mark.parametrize("solver", ["kvaerno5", "rodas4", "rodas3"])
def test_robertson_stiff(solver):
    from scipy.integrate import solve_ivp

    sol = solve_with_status(
        robertson, ROBERTSON_Y0, ROBERTSON_TS, ROBERTSON_K, solver=solver, rtol=1e-6, atol=1e-10,
        max_steps=4096,
    )
    assert not bool(sol.failed)
    ys = np.asarray(sol.ys)
    # mass conservation: the rhs sums to zero, so y1 + y2 + y3 = 1 up to the local errors
    # (rtol 1e-6 on O(1) states)
    np.testing.assert_allclose(ys.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    # independent reference: SciPy's Radau IIA at tolerances 1e4 x tighter
    ref = solve_ivp(
        lambda t, y: np.asarray(robertson(t, y, np.asarray(ROBERTSON_K))),
        (0.0, float(ROBERTSON_TS[-1])), np.asarray(ROBERTSON_Y0), method="Radau",
        t_eval=np.asarray(ROBERTSON_TS), rtol=1e-10, atol=1e-14,
    ).y.T
    # y1, y3 are O(1): 100 x rtol; y2 ~ 1e-5..4e-5 is resolved by rtol (atol 1e-10 is 1e-5 of it)
    np.testing.assert_allclose(ys[:, [0, 2]], ref[:, [0, 2]], rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(ys[:, 1], ref[:, 1], rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("solver", [s for s in ("tsit5", "rk45") if s in SOLVERS])
def test_robertson_explicit_solver_runs_out_of_steps_without_raising(solver):
    # an explicit solver needs ~1e5 steps for this problem (stability-limited step ~ 1e-3)
    sol = solve_with_status(
        robertson, ROBERTSON_Y0, ROBERTSON_TS, ROBERTSON_K, solver=solver, rtol=1e-6, atol=1e-10,
        max_steps=200,
    )
    assert bool(sol.failed)
    assert np.all(np.isfinite(np.asarray(sol.ys)))  # finite placeholders, not NaN


# ------------------------------------------------------------------------------------------
# failures inside models: y' = k y^2, y(0) = 1  =>  y(t) = 1 / (1 - k t), blows up at t = 1/k

BLOWUP_TS = np.array([0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0])
OBSERVED = BLOWUP_TS <= 1.5  # data at t <= 1.5; the solve runs to t = 2 (blows up for k > 0.5)
K_TRUE = 0.3
DATA_NOISE = 0.05  # sd of the noise added to the simulated data
SIGMA = 0.25  # noise sd assumed by the model: wide enough that the posterior reaches towards k = 0.5


def blowup_rhs(t, y, k):
    return k * y**2


def blowup_model(data):
    k = numpyro.sample("k", dist.LogNormal(jnp.log(0.3), 1.0))
    y = bb.solve(blowup_rhs, jnp.array([1.0]), data["ts"], k)
    bb.observe("y", bb.NormalNoise(y[: data["y"].shape[0], 0], SIGMA), obs=data["y"])


def blowup_data():
    rng = np.random.default_rng(42)
    exact = 1.0 / (1.0 - K_TRUE * BLOWUP_TS[OBSERVED])
    return {"ts": BLOWUP_TS, "y": exact + DATA_NOISE * rng.standard_normal(exact.shape)}


def test_failed_solve_gives_minus_infinite_log_density_not_an_exception():
    data = blowup_data()

    def logp(k):
        return log_density(blowup_model, (data,), {}, {"k": k})[0]

    # eagerly once (the failure factor site exists), then compiled as the samplers use it
    bad, trace = log_density(blowup_model, (data,), {}, {"k": jnp.array(1.0)})  # blows up at t = 1
    assert float(bad) == -np.inf
    assert "ode__solver_failed" in trace
    logp = jax.jit(logp)
    assert np.isfinite(float(logp(jnp.array(K_TRUE))))
    assert float(logp(jnp.array(1.0))) == -np.inf
    assert float(logp(jnp.array(0.6))) == -np.inf  # blows up at t = 1.67 < 2
    # the gradient at a failed point is finite (the solve's cotangent is zeroed; what remains
    # is the prior's), so a sampler rejects the proposal instead of crashing on NaN
    g = jax.jit(jax.grad(lambda k: log_density(blowup_model, (data,), {}, {"k": k})[0]))(jnp.array(1.0))
    assert np.isfinite(float(g))


def test_nuts_records_solver_failures_and_completes():
    # Initial points are uniform in (-2, 2) on log k, i.e. k in (0.14, 7.4), and the first
    # warm-up trajectories use large steps, so proposals with k > 0.5 (blow-up before t = 2)
    # happen during warm-up.
    data = blowup_data()
    idata = bb.sample_nuts(
        blowup_model, data, chains=2, warmup=30, samples=30, chain_method="sequential", seed=3
    )
    k = idata.posterior["k"].values
    assert k.shape == (2, 30)
    assert np.all(np.isfinite(k))
    per_draw = int(idata.sample_stats["solver_failures"].sum())
    warmup = int(idata.posterior.attrs["warmup_solver_failures"])
    assert per_draw + warmup > 0, "no solver failure was recorded although k > 0.5 blows up"
    assert idata.sample_stats["warmup_solver_failures"].shape == (2,)
    assert int(idata.sample_stats["warmup_solver_failures"].sum()) == warmup
    # the kept draws are where the solve succeeds and near the truth
    assert np.all(k < 0.5)
    assert abs(float(np.median(k)) - K_TRUE) < 0.05


# ------------------------------------------------------------------------------------------
# bad input names the offending field


def decay(t, y, k):
    return -k * y


@pytest.mark.parametrize(
    "kwargs, error, field",
    [
        (dict(ts=jnp.array([0.0, 2.0, 1.0])), SolverError, "'ts'"),
        (dict(y0=jnp.array([1.0, jnp.nan])), SolverError, "'y0'"),
        (dict(rhs=lambda t, y, k: jnp.zeros(3)), SolverError, "rhs"),
        (dict(solver="rk99"), OptionError, "'solver'"),
        (dict(rtol=-1e-6), OptionError, "'rtol'"),
        (dict(atol=0.0), OptionError, "'atol'"),
        (dict(max_steps=0), OptionError, "'max_steps'"),
        (dict(sensitivity="backward"), OptionError, "'sensitivity'"),
    ],
    ids=["unsorted-ts", "nan-y0", "rhs-shape", "unknown-solver", "negative-rtol", "zero-atol",
         "max-steps", "sensitivity"],
)
@pytest.mark.parametrize("entry", [solve_with_status, bb.solve], ids=["solve_with_status", "solve"])
def test_bad_input_raises_named_error(entry, kwargs, error, field):
    args = dict(rhs=decay, y0=jnp.array([1.0, 2.0]), ts=jnp.array([0.5, 1.0]), params=0.3)
    args.update(kwargs)
    rhs, y0, ts, params = args.pop("rhs"), args.pop("y0"), args.pop("ts"), args.pop("params")
    with pytest.raises(error) as info:
        if entry is bb.solve:
            # solve registers a NumPyro site: run it inside a seeded model trace
            with numpyro.handlers.trace(), numpyro.handlers.seed(rng_seed=0):
                entry(rhs, y0, ts, params, **args)
        else:
            entry(rhs, y0, ts, params, **args)
    assert field in str(info.value), str(info.value)
