"""solver="analytic": closed-form solutions of one-state and two-state-chain linear models.

References: 60-digit decimal arithmetic (Python's ``decimal``; cancellation there costs at
most ~25 of the 60 digits at the closest nodes tested) for the divided differences and the textbook
one-compartment formula; the matrix-exponential solver (``solver="expm"``, ~1e-15 relative)
and a tight RK45 solve for dosing histories; central finite differences for gradients.
"""

import decimal
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesbio.errors import ModelError
from bayesbio.population import bolus, infusion, make_batch, patient, reset, solve_population_with_status
from bayesbio.population.analytic import divided_difference_1, divided_difference_2, propagate_chain

_CTX = decimal.Context(prec=60)


def _sixty_digits(f):
    """Run ``f`` with 60-digit Decimal operators too (``+ - * /`` use the thread's context, 28 digits
    by default, not ``_CTX``)."""
    @functools.wraps(f)
    def wrapped(*args):
        with decimal.localcontext(_CTX):
            return f(*args)
    return wrapped


def _D(x):
    return _CTX.create_decimal(float(x))  # the exact binary value of the float node


@_sixty_digits
def _phi1_exact(x):
    return _D(1) if x == 0 else _CTX.divide(_CTX.exp(x) - 1, x)


@_sixty_digits
def _dd1_exact(x, y):
    x, y = _D(x), _D(y)
    return _CTX.exp(x) if x == y else _CTX.divide(_CTX.exp(x) - _CTX.exp(y), x - y)


@_sixty_digits
def _dd2_exact(x, y):
    """f[0, x, y] of exp: (phi1(x) - phi1(y)) / (x - y), or phi1'(x) at x == y."""
    x, y = _D(x), _D(y)
    if x != y:
        return _CTX.divide(_phi1_exact(x) - _phi1_exact(y), x - y)
    if x == 0:
        return _D(0.5)
    return _CTX.divide(x * _CTX.exp(x) - _CTX.exp(x) + 1, x * x)


@_sixty_digits
def _central_difference(f, x, y, wrt):
    h = 1e-7  # in 60 digits: truncation ~h^2 |f'''| / 6 ~ 1e-15 relative, no rounding to speak of
    if wrt == 0:
        return _CTX.divide(f(x + h, y) - f(x - h, y), _D(x + h) - _D(x - h))
    return _CTX.divide(f(x, y + h) - f(x, y - h), _D(y + h) - _D(y - h))


NODES = [
    (-1.0, -2.0), (-1.0, -1.0), (-1.0, -1.0 + 1e-7), (-1.0, -1.0 + 1e-4), (0.0, -1e-9), (0.0, 0.0),
    (-300.0, -0.1), (-0.1, -300.0), (-1e4, -2e4), (-30.0, -30.000001), (-55.0, -5.0), (2.0, -3.0),
    # either side of the switch point of the chain step's f[x, y] (|x - y| = 2e-2), near and far
    # from 0; confluent nodes (|x - y| < 1e-5) either side of phi1' series (midpoint |m| = 5e-2);
    # the quotient branch of f[0, x, y] just outside the confluent band
    (-1.0, -1.02), (-1.0, -1.0199999), (-1.0, -1.0200001), (-10.0, -10.03), (-700.0, -700.01), (3.0, 3.01),
    (-0.0500001, -0.0499999), (-0.0501, -0.0501), (-0.0499, -0.0499 + 1e-8), (-0.04999, -0.05001),
]


@pytest.mark.parametrize("x, y", NODES)
def test_divided_differences_match_60_digit_arithmetic(x, y):
    # tolerance: the module's stated ~1e-11 relative (series/quotient switch points), with room
    assert float(divided_difference_1(x, y)) == pytest.approx(float(_dd1_exact(x, y)), rel=1e-11, abs=0)
    assert float(divided_difference_2(x, y)) == pytest.approx(float(_dd2_exact(x, y)), rel=1e-10, abs=0)


def _chain_dd1(x, y):
    """f[x, y] as the chain step forms it: y1(1) of dy0 = x y0, dy1 = y0 + y y1 from (1, 0)."""
    K = jnp.array([[x, 0.0], [1.0, y]])
    return propagate_chain(jnp.array([1.0, 0.0]), 1.0, K, jnp.zeros(2))[1]


def _chain_dd2(x, y):
    """f[0, x, y] as the chain step forms it: y1(1) of the same system from (0, 0), input (1, 0)."""
    K = jnp.array([[x, 0.0], [1.0, y]])
    return propagate_chain(jnp.zeros(2), 1.0, K, jnp.array([1.0, 0.0]))[1]


@pytest.mark.parametrize("x, y", NODES)
def test_the_chain_step_matches_60_digit_arithmetic(x, y):
    # the chain step shares e^x, e^y, e^((x + y) / 2) between its divided differences (its own
    # forms, not divided_difference_1/2); tolerances as above
    assert float(_chain_dd1(x, y)) == pytest.approx(float(_dd1_exact(x, y)), rel=1e-11, abs=0)
    assert float(_chain_dd2(x, y)) == pytest.approx(float(_dd2_exact(x, y)), rel=1e-10, abs=0)


@pytest.mark.parametrize("z", [-0.0501, -0.0499, 0.0499, 0.0501, -3.0, 0.3, -1e-7, 0.0])
def test_the_confluent_limit_matches_60_digit_arithmetic_either_side_of_its_series(z):
    # f[0, z, z] = phi1'(z): its series below |z| = 5e-2 (truncation < 5e-19), its closed form
    # above (rounding ~eps / z^2 ~ 1e-13 at the switch); no midpoint truncation at equal nodes
    assert float(_chain_dd2(z, z)) == pytest.approx(float(_dd2_exact(z, z)), rel=1e-12, abs=0)
    assert float(divided_difference_2(z, z)) == pytest.approx(float(_dd2_exact(z, z)), rel=1e-12, abs=0)


@pytest.mark.parametrize("x, y", [(-1.0, -1.0), (-0.5, -0.5 + 1e-12), (-40.0, -40.0), (-3.0, -0.2), (-1.0, -1.02),
                                  (-1.0, -1.0199999), (-1.0, -1.0200001), (-1.0, -1.005), (-2.0, -2.015), (0.5, 0.49),
                                  (-10.0, -10.03), (0.0, 0.0)])
@pytest.mark.parametrize("dd1", [divided_difference_1, _chain_dd1], ids=["divided_difference_1", "chain step"])
def test_divided_difference_1_gradient_is_right_at_and_near_equal_nodes(dd1, x, y):
    # d/dx f[x, y] = f[x, x, y]; at x == y that is e^x / 2 (the derivative of a smooth function
    # must not depend on which branch a max() or abs() picks at a tie). Tolerance 1e-12: the
    # quotients lose ~eps / |x - y| to cancellation (at most ~2e-13 at these nodes); the central
    # differences in 60 digits (h = 1e-7) are off by ~h^2 / 6 ~ 2e-15
    gx, gy = jax.grad(dd1, argnums=(0, 1))(x, y)
    assert float(gx) == pytest.approx(float(_central_difference(_dd1_exact, x, y, 0)), rel=1e-12, abs=0)
    assert float(gy) == pytest.approx(float(_central_difference(_dd1_exact, x, y, 1)), rel=1e-12, abs=0)


def _chain_phi1(x):
    """f[0, x] = phi1(x) as the chain step forms it for the first state: y0(1) of dy0 = x y0 + 1 from 0."""
    K = jnp.array([[x, 0.0], [1.0, -1.0]])
    return propagate_chain(jnp.zeros(2), 1.0, K, jnp.array([1.0, 0.0]))[0]


def _chain_phi1_second(x):
    """phi1(x) for the second state: y1(1) of dy0 = -y0, dy1 = y0 + x y1 + 1 from 0."""
    K = jnp.array([[-1.0, 0.0], [1.0, x]])
    return propagate_chain(jnp.zeros(2), 1.0, K, jnp.array([0.0, 1.0]))[1]


@pytest.mark.parametrize("x, y", [(-1.0, -2.0), (-3.0, -0.2), (-30.0, -2.0), (-1.0, -1.02), (-1.0, -1.0199999),
                                  (0.0, -0.019), (-0.04, -0.06), (-1e-4, -3e-4), (-0.5, -0.5 + 1e-4),
                                  (-0.5, -0.5 + 1.1e-5), (-0.5, -0.5 + 9e-6), (-1.0, -1.0), (-1.0, -1.0 + 1e-7),
                                  (0.0, 0.0), (-0.06, -0.06)])
def test_the_chain_steps_gradient_of_f_0_x_y_matches_60_digit_differences(x, y):
    # the chain step's derivatives are written out (a custom JVP), not traced. Outside the confluent
    # band the quotient (phi1'(x) - f) / (x - y) loses ~eps / (x - y)^2 to cancellation: tolerance
    # 50 eps / (x - y)^2, at least 1e-13 (the largest, 9e-5 at x - y = 1.1e-5 just outside the band, is
    # the worst case). Inside it (|x - y| < 1e-5 max(1, |x|, |y|)) the midpoint expansion's first
    # neglected term is O((x - y)^2): tolerance 1e-11
    d = abs(x - y)
    confluent = d < 1e-5 * max(1.0, abs(x), abs(y))
    rel = 1e-11 if confluent else max(1e-13, 50 * 2.2e-16 / d**2)
    gx, gy = jax.grad(_chain_dd2, argnums=(0, 1))(x, y)
    assert float(gx) == pytest.approx(float(_central_difference(_dd2_exact, x, y, 0)), rel=rel, abs=0)
    assert float(gy) == pytest.approx(float(_central_difference(_dd2_exact, x, y, 1)), rel=rel, abs=0)


@_sixty_digits
def _phi1_derivatives_exact(x):
    """(phi1', phi1'', phi1''') at x in 60 digits, from (z phi1)^(n) = e^z: phi1^(n) = (e^z - n phi1^(n-1)) / z."""
    if x == 0:
        return _D(1) / 2, _D(1) / 3, _D(1) / 4
    xd = _D(x)
    d1 = _dd2_exact(x, x)
    d2 = (_CTX.exp(xd) - 2 * d1) / xd
    return d1, d2, (_CTX.exp(xd) - 3 * d2) / xd


@pytest.mark.parametrize("x", [0.0, -1e-6, -0.03, -0.0499, -0.0501, -1.0, 2.0, -40.0])
def test_the_chain_steps_derivatives_of_f_0_x_x_are_those_of_phi1(x):
    # at equal nodes each gets phi1''(x) / 2 = f[0, x, x, x]: its series below |x| = 5e-2 (truncation
    # < 1e-16, Horner's rounding a few eps: tolerance 1e-14), else (e^x - 2 phi1'(x)) / x (~12 eps / x^2
    # < 1.2e-12 relative: tolerance 1e-11). Second derivatives (through the custom JVP's own
    # derivatives): phi1''' [[1/3, 1/6], [1/6, 1/3]]; their largest error, at the switch points, is
    # the closed forms' cancellation (~eps / x^3): tolerance 1e-8
    _, d2, d3 = _phi1_derivatives_exact(x)
    gx, gy = jax.grad(_chain_dd2, argnums=(0, 1))(x, x)
    rel = 1e-14 if abs(x) < 5e-2 else 1e-11
    assert float(gx) == pytest.approx(float(d2 / 2), rel=rel, abs=0)
    assert float(gy) == pytest.approx(float(d2 / 2), rel=rel, abs=0)
    hessian = np.asarray(jax.hessian(_chain_dd2, argnums=(0, 1))(x, x)).reshape(2, 2)
    want = float(d3) * np.array([[1 / 3, 1 / 6], [1 / 6, 1 / 3]])
    np.testing.assert_allclose(hessian, want, rtol=1e-8, atol=0)


@pytest.mark.parametrize("x", [0.0, -1e-7, -1e-4, -0.0499, -0.0501, -3.0, 2.0, -40.0])
@pytest.mark.parametrize("phi1", [_chain_phi1, _chain_phi1_second], ids=["first state", "second state"])
def test_the_chain_steps_gradient_of_phi1_matches_60_digit_arithmetic(phi1, x):
    # d/dx phi1(x) = phi1'(x) = f[0, x, x]: its series below |x| = 5e-2, (e^x - phi1) / x above
    # (cancellation ~2 eps / |x| < 1e-14); tolerance 1e-12
    assert float(jax.grad(phi1)(x)) == pytest.approx(float(_dd2_exact(x, x)), rel=1e-12, abs=0)


@_sixty_digits
def _one_compartment(t, dose, ka, k, v):
    """Textbook oral one-compartment concentration, in 60-digit arithmetic."""
    t, ka, k, dose, v = _D(t), _D(ka), _D(k), _D(dose), _D(v)
    if ka == k:
        return dose / v * ka * t * _CTX.exp(-k * t)
    return dose / v * ka / (ka - k) * (_CTX.exp(-k * t) - _CTX.exp(-ka * t))


def _rhs(t, y, p):
    return jnp.stack([-p["ka"] * y[0], p["ka"] * y[0] - p["cl"] / p["v"] * y[1]])


@pytest.mark.parametrize("ka", [0.05, 1.5, 2.7 / 31.0, 300.0, 5000.0])
def test_single_oral_dose_matches_the_textbook_formula(ka):
    times = np.array([0.25, 1.0, 3.5, 12.0, 24.0])
    batch = make_batch([patient([bolus(0.0, 320.0, 0)], times)], n_states=2)
    p = {"ka": jnp.array([ka]), "cl": jnp.array([2.7]), "v": jnp.array([31.0])}
    sol = solve_population_with_status(_rhs, p, batch, solver="analytic")
    assert not bool(sol.failed[0])
    conc = np.asarray(sol.ys[0, :, 1]) / 31.0
    want = np.array([float(_one_compartment(t, 320.0, ka, 2.7 / 31.0, 31.0)) for t in times])
    # ~1e-11 relative (module docstring) plus the rounding of k = cl / v and of the division by v
    np.testing.assert_allclose(conc, want, rtol=1e-10, atol=1e-300)


def _history_batch():
    """Two patients: repeated oral doses, an infusion into the depot and one into the central
    compartment, a reset, records before, at and after events, pre-dose records."""
    a = patient(
        [bolus(0.0, 100.0, 0), bolus(12.0, 100.0, 0), infusion(24.0, 60.0, 1, duration=2.0),
         infusion(30.0, 40.0, 0, duration=4.0)],
        [0.5, 2.0, 12.0, 13.0, 24.0, 25.0, 26.0, 31.0, 34.0, 48.0],
        pre_dose=[False, False, True, False, False, False, False, False, False, False], obs_compartment=1,
    )
    b = patient([bolus(1.0, 50.0, 1), reset(10.0), bolus(10.0, 80.0, 0)], [0.0, 2.0, 9.0, 11.0, 20.0],
                obs_compartment=1)
    return make_batch([a, b], n_states=2)


@pytest.mark.parametrize("ka", [[1.2, 0.4], [0.0871, 0.0871], [250.0, 30.0]])
def test_dosing_histories_match_the_matrix_exponential_and_rk45(ka):
    batch = _history_batch()
    p = {"ka": jnp.array(ka), "cl": jnp.array([2.7, 2.7]), "v": jnp.array([31.0, 31.0])}
    a = solve_population_with_status(_rhs, p, batch, solver="analytic")
    e = solve_population_with_status(_rhs, p, batch, solver="expm")
    r = solve_population_with_status(_rhs, p, batch, solver="rk45", rtol=1e-11, atol=1e-11, max_steps=200_000)
    assert not np.any(np.asarray(a.failed)) and not np.any(np.asarray(e.failed))
    scale = float(jnp.max(jnp.abs(e.ys)))
    # expm: ~1e-15 relative, the closed form ~1e-11 (module docstrings); RK45 at rtol 1e-11
    # over ~10 segments: ~1e-9 of the largest amount
    np.testing.assert_allclose(np.asarray(a.ys), np.asarray(e.ys), rtol=1e-10, atol=1e-12 * scale)
    np.testing.assert_allclose(np.asarray(a.ys), np.asarray(r.ys), rtol=0, atol=1e-8 * scale)


def test_gradients_match_the_matrix_exponential_including_equal_rates():
    batch = _history_batch()

    def total(log_ka, solver):
        p = {"ka": jnp.exp(log_ka), "cl": jnp.array([2.7, 2.7]), "v": jnp.array([31.0, 31.0])}
        return jnp.sum(solve_population_with_status(_rhs, p, batch, solver=solver).ys[..., 1])

    # ka == CL / V exactly (the textbook formula's 0 / 0), and ordinary values
    for log_ka in (jnp.full(2, jnp.log(2.7 / 31.0)), jnp.log(jnp.array([1.5, 0.2]))):
        ga, ge = jax.grad(total)(log_ka, "analytic"), jax.grad(total)(log_ka, "expm")
        # both differentiate an exact solution; the infusion into the depot is within the
        # 1e-5 confluence band only at equal rates (gradient error ~1e-5 relative, stated)
        np.testing.assert_allclose(np.asarray(ga), np.asarray(ge), rtol=1e-4)
    ga, ge = jax.grad(total)(jnp.log(jnp.array([1.5, 0.2])), "analytic"), jax.grad(total)(
        jnp.log(jnp.array([1.5, 0.2])), "expm")
    np.testing.assert_allclose(np.asarray(ga), np.asarray(ge), rtol=1e-9)  # away from the band


def test_one_state_model_and_bioavailability():
    batch = make_batch([patient([bolus(0.0, 100.0, 0), infusion(5.0, 30.0, 0, duration=3.0)],
                                [1.0, 5.0, 6.0, 8.0, 20.0])], n_states=1)
    rhs = lambda t, y, p: -p["k"] * y  # noqa: E731
    p = {"k": jnp.array([0.3])}
    kw = dict(bioavailability=jnp.array([0.7]))
    a = solve_population_with_status(rhs, p, batch, solver="analytic", **kw)
    e = solve_population_with_status(rhs, p, batch, solver="expm", **kw)
    np.testing.assert_allclose(np.asarray(a.ys), np.asarray(e.ys), rtol=1e-12)  # both exact
    assert float(a.ys[0, 0, 0]) == pytest.approx(70.0 * np.exp(-0.3), rel=1e-14, abs=0)


def _two_compartment(t, y, p):  # central <-> peripheral exchange: dy0/dt depends on y1
    return jnp.stack([-p["k"] * y[0] + 0.2 * y[1], 0.3 * y[0] - 0.2 * y[1]])


def test_a_model_that_is_not_a_chain_is_refused_by_name_on_concrete_parameters():
    batch = make_batch([patient([bolus(0.0, 100.0, 0)], [1.0, 2.0])] * 2, n_states=2)
    with pytest.raises(ModelError, match=r"solver='analytic'.*not a chain.*y\[1\].*solver='expm'"):
        solve_population_with_status(_two_compartment, {"k": jnp.ones(2)}, batch, solver="analytic")


def test_a_model_that_is_not_a_chain_fails_every_patient_when_traced_instead_of_a_wrong_answer():
    batch = make_batch([patient([bolus(0.0, 100.0, 0)], [1.0, 2.0])] * 2, n_states=2)
    failed = jax.jit(lambda k: solve_population_with_status(_two_compartment, {"k": k}, batch,
                                                            solver="analytic").failed)(jnp.ones(2))
    assert np.all(np.asarray(failed))


def test_a_nonlinear_rhs_fails_instead_of_being_linearised():
    batch = make_batch([patient([bolus(0.0, 100.0, 0)], [1.0, 2.0])], n_states=1)
    sol = solve_population_with_status(lambda t, y, p: -p["k"] * y**2, {"k": jnp.ones(1)}, batch,
                                       solver="analytic")
    assert bool(sol.failed[0])


def test_more_than_two_states_is_refused_with_a_model_error():
    batch = make_batch([patient([bolus(0.0, 100.0, 0)], [1.0])], n_states=3)
    with pytest.raises(ModelError, match="solver='analytic'.*3 states"):
        solve_population_with_status(lambda t, y, p: -y, {"k": jnp.ones(1)}, batch, solver="analytic")
