"""Closed-form solutions of the smallest linear compartment models (``solver="analytic"``).

A linear, autonomous model of one state, or of two states in a *chain* (the first state's rate
does not depend on the second)::

    dy0/dt = -a y0 + u0                      e.g. depot: a = ka (first-order absorption)
    dy1/dt =  b y0 - k y1 + u1               e.g. central: b = ka, k = CL / V

covers the one-compartment model with IV bolus / infusion or with first-order absorption, and
a parent → metabolite pair. Between two events its solution is a short closed form: the
matrix exponential of the *lower-triangular* augmented matrix ``[[0, 0, 0], [u0, -a, 0],
[u1, b, -k]]`` (state ``[1, y0, y1]``) is, entry by entry, a divided difference of ``exp``
at its diagonal (the segment lasting ``τ``)::

    y0(τ) = e^{-aτ} y0 + u0 τ f[0, -aτ]
    y1(τ) = e^{-kτ} y1 + b τ f[-aτ, -kτ] y0 + u1 τ f[0, -kτ] + b u0 τ² f[0, -aτ, -kτ]

with ``f[x, y] = (e^x - e^y) / (x - y)`` and ``f[0, x, y] = (f[0, x] - f[0, y]) / (x - y)``.
(For a single dose into the depot this is the familiar
``C(t) = F D ka / (V (ka - k)) (e^{-k t} - e^{-ka t})``.) The divided differences are
evaluated without cancellation at equal or nearly equal rates (``ka ≈ k``, where the textbook
formula divides 0 by 0) and without overflow for decaying states, so the solution is accurate
to ~1e-11 relative in double precision at any rates, and so is its gradient (except where
``a τ`` and ``k τ`` differ by ~1e-5 to 1e-3 relative for an infusion *into the first state*:
there the quotient of ``f[0, x, y]``'s derivative loses ~eps / (x - y)^2, up to ~1e-4 just
outside the confluent band); tests: against :mod:`bayesbio.population.linear`'s matrix
exponential, a tight ODE solve, finite differences and 60-digit arithmetic.

``K`` and ``c`` come from the user's ``rhs`` as for ``solver="expm"`` (``rhs`` must be linear
in ``y`` and must not depend on ``t``). A two-state ``rhs`` whose first rate depends on the
second state (e.g. a two-compartment model with exchange) is not a chain: every segment of
it is reported as a failed solve (use ``solver="expm"``), and refused with a
:class:`~bayesbio.errors.ModelError` wherever the parameters are concrete (as on the first,
untraced run of a model, before sampling starts: :func:`check_chain`); models of more than two
states are refused with a :class:`~bayesbio.errors.ModelError` when the model is traced.

Cost: three ``exp`` and two ``expm1`` per record of a two-state chain (shared between the
terms above), with no step-size control, no step budget and no tolerance. On the bundled
theophylline model (12 patients) one log-density gradient took 0.07-0.10 ms, against
0.35-0.37 ms for the explicit RK45 solver at ordinary absorption rates, 6.2 ms for RK45 where
some ``ka_i`` reach ~200 /h (stiff), and ~0.45 ms for ``"expm"`` at any rate
(``benchmarks/results/linear_pk_solvers.md``; measured before the exponentials were shared and
the derivatives written out, which took ~38 % off a gradient at 1,000 patients:
``benchmarks/README.md``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from bayesbio.errors import ModelError
from bayesbio.ode import ODESolution
from bayesbio.population.batch import scan_segments, segment_defaults
from bayesbio.population.linear import _linearity_violated, linear_system

__all__ = ["check_chain", "divided_difference_1", "divided_difference_2", "propagate_chain", "solve_patient_analytic"]

# Below these |z| the power series replace the closed forms (whose rounding error grows as
# eps / |z| and eps / |z|^2): the series' truncation errors there are < 1e-16 relative.
_PHI1_SERIES_BELOW = 1e-3  # next term z^5 / 720 < 1.4e-18
_DPHI1_SERIES_BELOW = 5e-2  # next term z^9 / 3991680 < 5e-19; the closed form's error there is ~eps / z^2 < 2e-13
_D2PHI1_SERIES_BELOW = 5e-2  # phi1'': next term z^8 / 443520 < 1e-16; closed form ~12 eps / z^2 < 1.2e-12 there
# Nodes of f[x, y] closer than this (absolute) use e^m sinh(h) / h (m, h: midpoint, half-distance)
# by its series (next term h^8 / 9! < 3e-22); farther apart, (e^x - e^y) / (x - y) loses at
# most ~eps / |x - y| < 2e-14 relative to cancellation. Near, rounding m itself costs up to
# ~|m| eps / 2 relative in e^m (< 1e-13 for |m| < 745).
_NEAR_BELOW = 2e-2
# Nodes closer than this (relative to max(1, |node|)) are treated as confluent: the midpoint
# derivative's truncation error (δ² / 24 relative) and the difference quotient's rounding
# error (eps / δ) are both ~1e-11 there.
_CONFLUENT_BELOW = 1e-5


def _phi1(z):
    """``(e^z - 1) / z`` (1 at 0), for any real z, with its derivative accurate near 0."""
    small = jnp.abs(z) < _PHI1_SERIES_BELOW
    zs = jnp.where(small, 1.0, z)
    series = 1.0 + z * (1 / 2 + z * (1 / 6 + z * (1 / 24 + z / 120)))
    return jnp.where(small, series, jnp.expm1(zs) / zs)


def _dphi1_series(z):
    """phi1'(z) for |z| < 5e-2: the sum over m >= 0 of (m + 1) z^m / (m + 2)! (next term < 5e-19)."""
    return 1 / 2 + z * (1 / 3 + z * (1 / 8 + z * (1 / 30 + z * (1 / 144 + z * (1 / 840 + z * (
        1 / 5760 + z * (1 / 45360 + z / 403200)))))))


def _dphi1(z, ez):
    """``d/dz (e^z - 1) / z = (z e^z - e^z + 1) / z^2`` (1/2 at 0), given ``ez = e^z``."""
    small = jnp.abs(z) < _DPHI1_SERIES_BELOW
    # each branch gets inputs it is finite at, so the unselected one adds no 0 * inf to the gradient
    zs, ezs, zz = jnp.where(small, 1.0, z), jnp.where(small, 1.0, ez), jnp.where(small, z, 0.0)
    return jnp.where(small, _dphi1_series(zz), (zs * ezs - (ezs - 1.0)) / zs**2)


def _dphi1_from(z, ez, pz):
    """``phi1'(z) = (e^z - phi1(z)) / z`` from ``e^z`` and ``phi1(z)`` (cancellation ~2 eps / |z|;
    the series below 5e-2)."""
    small = jnp.abs(z) < _DPHI1_SERIES_BELOW
    zs, zz = jnp.where(small, 1.0, z), jnp.where(small, z, 0.0)
    return jnp.where(small, _dphi1_series(zz), (ez - pz) / zs)


def _d2phi1_from(z, ez, qz):
    """``phi1''(z) = (e^z - 2 phi1'(z)) / z`` (from ``(z phi1)' = e^z`` differentiated twice), given
    ``e^z`` and ``qz = phi1'(z)``; below 5e-2 its series, the sum over j >= 0 of
    ``(j + 1)(j + 2) z^j / (j + 3)!``."""
    small = jnp.abs(z) < _D2PHI1_SERIES_BELOW
    zs, zz = jnp.where(small, 1.0, z), jnp.where(small, z, 0.0)
    series = 1 / 3 + zz * (1 / 4 + zz * (1 / 10 + zz * (1 / 36 + zz * (1 / 168 + zz * (1 / 960 + zz * (
        1 / 6480 + zz / 50400))))))
    return jnp.where(small, series, (ez - 2 * qz) / zs)


def _d3phi1_from(z, ez, rz):
    """``phi1'''(z) = (e^z - 3 phi1''(z)) / z``, given ``e^z`` and ``rz = phi1''(z)``; below 5e-2 its
    series, the sum over j >= 0 of ``(j + 1)(j + 2)(j + 3) z^j / (j + 4)!`` (next term < 1e-11
    relative; only the confluent band's second-order terms rest on it)."""
    small = jnp.abs(z) < _D2PHI1_SERIES_BELOW
    zs, zz = jnp.where(small, 1.0, z), jnp.where(small, z, 0.0)
    series = 1 / 4 + zz * (1 / 5 + zz * (1 / 12 + zz * (1 / 42 + zz * (1 / 192 + zz / 1080))))
    return jnp.where(small, series, (ez - 3 * rz) / zs)


def _sinhc(h2):
    """``sinh(h) / h`` from ``h2 = h^2``, for |h| < 1e-2 (next term h^8 / 9! < 3e-22)."""
    return 1 + h2 * (1 / 6 + h2 * (1 / 120 + h2 / 5040))


def _confluent(x, y):
    """Nodes treated as one (``_CONFLUENT_BELOW``)."""
    return jnp.abs(x - y) < _CONFLUENT_BELOW * jnp.maximum(1.0, jnp.maximum(jnp.abs(x), jnp.abs(y)))


def _divided_difference_1_from_exp(ex, ey, em, x, y):
    """``f[x, y] = (e^x - e^y) / (x - y)`` from ``e^x``, ``e^y`` and ``e^m`` (``m = (x + y) / 2``)
    already computed (a chain step shares them): the quotient where the nodes are far apart,
    ``e^m sinh(h) / h`` (``h = (x - y) / 2``) by its series where they are near, so the value and
    gradient are smooth and symmetric through ``x == y``."""
    d = x - y
    near = jnp.abs(d) < _NEAR_BELOW
    h2 = jnp.where(near, (d / 2) ** 2, 0.0)  # finite in the unselected branch too (see _dphi1)
    return jnp.where(near, em * _sinhc(h2), (ex - ey) / jnp.where(near, 1.0, d))


def divided_difference_1(x, y):
    """``(e^x - e^y) / (x - y)`` (``e^x`` at ``x == y``), stable at any real ``x, y``.

    ``e^{max} (e^{min - max} - 1) / (min - max)``: one ``exp`` and one ``expm1``, no overflow
    before the value itself overflows. Its gradient is right at ``x == y`` too, because JAX's
    ``maximum`` and ``minimum`` split their derivative equally between tied arguments (each
    node then gets ``e^x / 2``, the derivative of the smooth function; tested).
    """
    hi, lo = jnp.maximum(x, y), jnp.minimum(x, y)
    return jnp.exp(hi) * _phi1(lo - hi)


def divided_difference_2(x, y):
    """``f[0, x, y]``: the second divided difference of ``exp`` at ``0, x, y``
    (``(e^x - 1 - x) / x^2`` at ``x == y``, 1/2 at ``x == y == 0``), stable at any real
    ``x, y`` below the overflow of ``e^x``, equal or not. Where ``x`` and ``y`` are within
    1e-5 of each other (relative), the derivative at their midpoint (value error ~1e-11
    relative; gradient error ~1e-5 relative, in and near that band; :func:`propagate_chain`
    has its own, better derivatives there).
    """
    return _quotient_or_confluent(_phi1(x), _phi1(y), jnp.exp((x + y) / 2), x, y)


def _propagate_one(y, tau, K, u):
    lam = K[0, 0] * tau
    return (jnp.exp(lam) * y[0] + u[0] * tau * _phi1(lam))[:, None]  # f[0, lam] = phi1(lam)


def _quotient_or_confluent(pa, pk, em, la, lk):
    """``f[0, la, lk]`` from ``phi1(la)``, ``phi1(lk)`` and ``e^m`` (``m`` the midpoint) already
    computed (see :func:`divided_difference_2`)."""
    confluent = _confluent(la, lk)
    ds = jnp.where(confluent, 1.0, la - lk)
    return jnp.where(confluent, _dphi1((la + lk) / 2, em), (pa - pk) / ds)


def _chain_primal(la, lk):
    # three exponentials and two expm1 per record, shared by the terms: f[0, la] = phi1(la),
    # f[0, lk] = phi1(lk), f[la, lk] from e^la, e^lk, e^m; f[0, la, lk] from phi1(la), phi1(lk), e^m
    ea, ek, em = jnp.exp(la), jnp.exp(lk), jnp.exp((la + lk) / 2)
    pa, pk = _phi1(la), _phi1(lk)
    dd1 = _divided_difference_1_from_exp(ea, ek, em, la, lk)
    return ea, ek, em, pa, pk, dd1, _quotient_or_confluent(pa, pk, em, la, lk)


@jax.custom_jvp
def _chain_coefficients(la, lk):
    """``(e^la, e^lk, f[0, la], f[0, lk], f[la, lk], f[0, la, lk])``: every function of the rates a
    chain step needs. Its derivatives are given in closed form (below) rather than traced
    through the guarded forms: differentiating a ``jnp.where`` differentiates both branches, and
    that cost ~25 % of a gradient at 1,000 patients (``benchmarks/README.md``)."""
    ea, ek, _, pa, pk, dd1, dd2 = _chain_primal(la, lk)
    return ea, ek, pa, pk, dd1, dd2


@_chain_coefficients.defjvp
def _chain_coefficients_jvp(primals, tangents):
    la, lk = primals
    ta, tk = tangents
    ea, ek, em, pa, pk, dd1, dd2 = _chain_primal(la, lk)
    qa, qk = _dphi1_from(la, ea, pa), _dphi1_from(lk, ek, pk)
    d = la - lk
    # f[la, lk]: d/dla = f[la, la, lk] = (e^la - f) / d, d/dlk = (f - e^lk) / d (cancellation ~2 eps / |d|);
    # near, of e^m S(h) (S(h) = sinh(h) / h, h = d / 2): e^m (S + S') / 2 and e^m (S - S') / 2
    near = jnp.abs(d) < _NEAR_BELOW
    h = jnp.where(near, d / 2, 0.0)
    h2 = h * h
    s0 = _sinhc(h2)
    s1 = h * (1 / 3 + h2 * (1 / 30 + h2 / 840))  # S'(h), next term h^7 / 45360 < 2.3e-19
    dn = jnp.where(near, 1.0, d)
    a1 = jnp.where(near, em * (s0 + s1) / 2, (ea - dd1) / dn)
    b1 = jnp.where(near, em * (s0 - s1) / 2, (dd1 - ek) / dn)
    # f[0, la, lk]: d/dla = f[0, la, la, lk] = (phi1'(la) - f) / d, d/dlk = (f - phi1'(lk)) / d; in the
    # confluent band, where the value is phi1'(m) (m the midpoint), the derivatives of the expansion
    # f[0, la, lk] = phi1'(m) + d^2 phi1'''(m) / 24 + O(d^4): phi1''(m) / 2 +- d phi1'''(m) / 12, so
    # that second derivatives (of this JVP) come out right too (phi1''' / 3 and / 6, to O(d))
    confluent = _confluent(la, lk)
    dc = jnp.where(confluent, 1.0, d)
    m = (la + lk) / 2
    r2 = _d2phi1_from(m, em, _dphi1(m, em))
    r3d = d * _d3phi1_from(m, em, r2) / 12
    a2 = jnp.where(confluent, r2 / 2 + r3d, (qa - dd2) / dc)
    b2 = jnp.where(confluent, r2 / 2 - r3d, (dd2 - qk) / dc)
    return (ea, ek, pa, pk, dd1, dd2), (ea * ta, ek * tk, qa * ta, qk * tk, a1 * ta + b1 * tk, a2 * ta + b2 * tk)


def _propagate_chain(y, tau, K, u):
    la, lk, b = K[0, 0] * tau, K[1, 1] * tau, K[1, 0]
    ea, ek, pa, pk, dd1, dd2 = _chain_coefficients(la, lk)
    y0 = ea * y[0] + u[0] * tau * pa
    y1 = ek * y[1] + b * tau * dd1 * y[0] + u[1] * tau * pk + b * u[0] * tau**2 * dd2
    return jnp.stack([y0, y1], axis=-1)


def propagate_chain(y, tau, K, u):
    """State of the two-state chain ``dy/dt = K y + u`` (``K`` lower triangular: ``K[0, 1] == 0``)
    a time ``tau`` after the state ``y`` (2,), with the constant input ``u`` (2,), in closed form
    (module docstring). ``tau`` scalar: shape (2,); ``tau`` (T,): shape (T, 2). The building block
    of ``solver="analytic"``, public for models that need the chain's state between records
    (e.g. a PK chain driving a PD ODE: ``models/warfarin_pkpd.py``)."""
    return _propagate_chain(y, tau, K, u)


def check_chain(rhs: Callable, params: Any, n_states: int) -> None:
    """Raise :class:`~bayesbio.errors.ModelError` unless ``rhs`` at ``params`` (one patient's,
    concrete values) is a model the closed form covers: one state, or two states whose first
    rate does not depend on the second."""
    if n_states not in (1, 2):
        raise ModelError(
            f"solver='analytic': the closed form covers models of 1 or 2 states (a chain), but this "
            f"model has {n_states} states; use solver='expm' for larger linear models"
        )
    if n_states == 2:
        K, _ = linear_system(rhs, params, n_states)
        coupling = float(K[0, 1])
        if coupling != 0.0:
            raise ModelError(
                "solver='analytic': the model is not a chain: d y[0]/dt depends on y[1] "
                f"(d rhs[0] / d y[1] = {coupling:.6g}, expected 0), as in a two-compartment model with "
                "exchange; use solver='expm' (any linear model) or an ODE solver"
            )


def solve_patient_analytic(rhs: Callable, params: Any, events, *, y0=None, bioavailability=None) -> ODESolution:
    """One patient's dosing history solved in closed form (see the module docstring); the
    signature and result are those of :func:`~bayesbio.population.solve_patient`."""
    n_states, dtype, y0, f_bio = segment_defaults(events, y0, bioavailability)
    if n_states not in (1, 2):
        check_chain(rhs, params, n_states)  # raises, naming the number of states
    K, c = linear_system(rhs, params, n_states, dtype)
    not_chain = (K[0, 1] != 0.0) if n_states == 2 else jnp.asarray(False)
    step = _propagate_one if n_states == 1 else _propagate_chain

    def propagate(y, ts, start, end, rate):
        ys = step(y, ts - start, K, c + rate)
        nonlinear = _linearity_violated(rhs, params, K, c, jax.lax.stop_gradient(end), jax.lax.stop_gradient(ys[-1]))
        return ys, not_chain | nonlinear | ~jnp.all(jnp.isfinite(ys))

    ys, failed = scan_segments(propagate, y0, f_bio, events, dtype)
    return ODESolution(ys=ys, failed=failed)
