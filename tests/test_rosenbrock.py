"""The fused Rosenbrock integrators (bayesbio._rosenbrock) against exact answers.

Order of convergence: with a fixed step h, a method of order p has global error C h^p, so
halving h divides the error by 2^p; the observed order log2(e_h / e_{h/2}) converges to p as h
shrinks. We accept |observed - p| <= 0.15 on the finest pair (the asymptotic regime is reached
there; coarser pairs include higher-order error terms).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesbio._rosenbrock import RODAS3, RODAS4, rosenbrock_step
from bayesbio.ode import solve_with_status


def _fixed_step_error(tab, f, y0, exact, t_end, n_steps):
    h = t_end / n_steps
    step = jax.jit(lambda t, y: rosenbrock_step(tab, f, t, y, h)[0])
    t, y = 0.0, jnp.asarray(y0)
    for _ in range(n_steps):
        y = step(t, y)
        t += h
    return float(np.max(np.abs(np.asarray(y) - exact)))


def _harmonic(t, y):  # y = (cos t, -sin t)
    return jnp.stack([y[1], -y[0]])


def _nonautonomous(t, y):  # y = exp(sin t): exercises the ∂f/∂t terms
    return jnp.cos(t) * y


CASES = [
    ("harmonic", _harmonic, [1.0, 0.0], np.array([np.cos(2.0), -np.sin(2.0)]), (20, 40, 80, 160)),
    ("non-autonomous", _nonautonomous, [1.0], np.array([np.exp(np.sin(2.0))]), (40, 80, 160, 320)),
]


@pytest.mark.parametrize("tab, order", [(RODAS3, 3), (RODAS4, 4)], ids=["rodas3", "rodas4"])
@pytest.mark.parametrize("name, f, y0, exact, steps", CASES, ids=[c[0] for c in CASES])
def test_fixed_step_convergence_order(tab, order, name, f, y0, exact, steps):
    errs = [_fixed_step_error(tab, f, y0, exact, 2.0, n) for n in steps]
    observed = np.log2(errs[-2] / errs[-1])
    assert abs(observed - order) <= 0.15, (name, errs, observed)


def test_error_estimate_has_the_embedded_order():
    # the embedded solution has order p-1, so the estimate (difference) scales like h^p
    f, y0 = _harmonic, jnp.array([1.0, 0.0])
    for tab, order in ((RODAS3, 3), (RODAS4, 4)):
        e1 = float(jnp.linalg.norm(rosenbrock_step(tab, f, 0.0, y0, 0.02)[1]))
        e2 = float(jnp.linalg.norm(rosenbrock_step(tab, f, 0.0, y0, 0.01)[1]))
        assert abs(np.log2(e1 / e2) - order) <= 0.2, (tab, e1, e2)


def _decay_rhs(t, y, k):
    return -k * y


@pytest.mark.parametrize("solver", ["rodas4", "rodas3"])
def test_constant_initial_state_gradient_equals_full_gradient(solver):
    # Only perturbed inputs get sensitivity columns; the parameter gradient must not depend on
    # whether y0 is differentiated too. Exact: y = y0 exp(-k t), dL/dk = -sum t y0 exp(-k t).
    ts = jnp.array([0.5, 1.0, 2.0])

    def loss(k, y0):
        return jnp.sum(solve_with_status(_decay_rhs, y0, ts, k, solver=solver, rtol=1e-9, atol=1e-12).ys)

    y0 = jnp.array([2.0])
    g_k_only = jax.grad(loss)(0.7, y0)
    g_k_both, g_y0 = jax.grad(loss, argnums=(0, 1))(0.7, y0)
    exact_k = float(-jnp.sum(ts * 2.0 * jnp.exp(-0.7 * ts)))
    exact_y0 = float(jnp.sum(jnp.exp(-0.7 * ts)))
    # 100x the solver's rtol on O(1) values (see tests/test_ode.py)
    np.testing.assert_allclose(float(g_k_only), exact_k, rtol=1e-7)
    np.testing.assert_allclose(float(g_k_both), exact_k, rtol=1e-7)
    np.testing.assert_allclose(float(g_y0[0]), exact_y0, rtol=1e-7)


def test_stiff_linear_system_is_stable_with_large_steps():
    # eigenvalues -1 and -1e6: L-stability damps the fast mode even when h*|lambda| >> 1
    a = jnp.array([[-1.0, 0.0], [0.0, -1e6]])
    ts = jnp.array([1.0, 5.0])
    sol = solve_with_status(lambda t, y, a: a @ y, jnp.array([1.0, 1.0]), ts, a, solver="rodas4",
                            rtol=1e-6, atol=1e-9, max_steps=200)
    assert not bool(sol.failed)
    # exact: (e^{-t}, e^{-1e6 t} ~ 0); 100x rtol relative on the slow mode, atol-level on the fast
    np.testing.assert_allclose(np.asarray(sol.ys[:, 0]), np.exp(-np.asarray(ts)), rtol=1e-4)
    assert np.all(np.abs(np.asarray(sol.ys[:, 1])) < 1e-8)


@pytest.mark.parametrize("n", [1, 4, 12, 13])
def test_step_matrix_inverse_matches_numpy_and_pivots(n):
    """The per-step inverse (unrolled Gauss–Jordan up to 12 states, LAPACK beyond) against
    NumPy's LU-based inverse, on a matrix whose leading diagonal entry is zero (so elimination
    without row exchanges would divide by zero)."""
    from bayesbio._rosenbrock import _inverse

    rng = np.random.default_rng(n)
    w = rng.normal(size=(n, n)) + n * np.eye(n)
    if n > 1:
        w[0, 0] = 0.0
    got = np.asarray(jax.jit(_inverse)(jnp.asarray(w)))
    # well-conditioned (cond < 1e3 here): both inverses agree to ~cond * eps ~ 1e-13
    np.testing.assert_allclose(got, np.linalg.inv(w), rtol=1e-10, atol=1e-12)


def test_rodas4_dense_output_has_order_three():
    """The continuous extension of one RODAS4 step, at a quarter and at the middle of the step,
    against the exact solution of y' = -2 t y^2, y(0) = 1 (y = 1 / (1 + t^2)): a local error of
    order 3 interpolation is O(h^4), so halving h divides it by ~16 once h is small (measured:
    ratios 11 to 26 for these h at fractions 1/4, 1/2, 3/4). Wrong dense coefficients leave an
    O(h^2) or worse local error (ratio <= 4); we require an observed order above 3."""
    from bayesbio._rosenbrock import RODAS4, rosenbrock_step

    def f(t, y):
        return -2.0 * t * y**2

    exact = lambda t: 1.0 / (1.0 + t**2)  # noqa: E731
    t0 = 0.3
    y0 = jnp.array([exact(t0)])
    for frac in (0.25, 0.5, 0.75):
        errors = []
        for h in (0.05, 0.025, 0.0125):
            y1, _, stages = rosenbrock_step(RODAS4, f, jnp.asarray(t0), y0, jnp.asarray(h))
            d2, d3 = (sum(w * k for w, k in zip(row, stages)) for row in RODAS4.dense)
            s = frac
            y_s = (1 - s) * y0 + s * (y1 + (1 - s) * (d2 + s * d3))
            errors.append(abs(float(y_s[0]) - exact(t0 + s * h)))
        orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
        assert np.all(orders > 3.0), (frac, errors, orders)


def test_rodas4_outputs_between_steps_match_the_exact_solution():
    """Many output times inside the steps (dense output): the solution at every one of them
    within 10 * rtol of the exact one (the local error control keeps the global error of this
    non-stiff problem at a few rtol; the order-3 interpolant adds less than that)."""
    from bayesbio._rosenbrock import RODAS4, rosenbrock

    def f(t, y):
        return -2.0 * t * y**2

    ts = jnp.linspace(0.05, 3.0, 200)
    ys, failed, n_steps = rosenbrock(f, jnp.asarray(0.0), jnp.array([1.0]), ts, rtol=1e-6, atol=1e-9,
                                     max_steps=1000, tableau=RODAS4)
    assert not bool(failed)
    assert int(n_steps) < 100  # far fewer steps than outputs: the outputs do not cut the steps
    err = np.abs(np.asarray(ys[:, 0]) - 1.0 / (1.0 + np.asarray(ts) ** 2))
    assert err.max() < 10 * 1e-6, err.max()
