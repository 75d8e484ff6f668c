"""Exact solutions of *linear* compartment models by the matrix exponential.

Most PK models (one-, two- and three-compartment disposition with first-order absorption,
bolus and zero-order infusion input) are linear, time-invariant ODE systems between events::

    dy/dt = K(p) y + c(p) + u          (u: the segment's constant infusion input)

whose solution over a segment that starts at ``s`` from ``y(s)`` is exact::

    [y(t)]          ( [K  c+u]          ) [y(s)]
    [ 1  ]  =  expm ( [0   0 ] (t - s)  ) [ 1  ]

(the augmented matrix carries the constant input, so ``K`` need not be invertible). This is
what pharmacometric software uses for linear models (closed forms or matrix exponentials)
instead of a numerical ODE solver: no step-size control, no tolerance and no step budget,
and every observation is computed independently — a few small dense matrix products per
record, batched over records and patients.

``K`` and ``c`` are read off the user's ``rhs`` itself (``K = ∂rhs/∂y`` by forward-mode
autodiff at ``y = 0``, ``c = rhs(0, 0, p)``), so a model written for the ODE solvers is
solved exactly by passing ``solver="expm"`` to :func:`~bayesbio.population.solve_population`.
The ``rhs`` must then be linear in ``y`` and must not depend on ``t``; :func:`check_linear`
verifies this on concrete values with a clear error (call it once on a model's typical
parameters); inside a model the in-graph check below turns a violation into failed solves.

The exponential is JAX's Padé scaling-and-squaring ``expm`` (~1e-15 relative accuracy in
double precision), differentiated by reverse-mode autodiff. A record whose ``||M (t - s)||_1``
would need more than its 16 squarings (beyond about 7e5, e.g. an absorption rate of 500 /h
over a 700 h segment) comes back non-finite and is reported as a failed solve, i.e. a rejected
proposal, where an ODE solver would have no difficulty. Each segment also checks the ``rhs``
against its linear form at the segment's end state and time, and reports a failed solve when
they differ beyond rounding, so a non-linear or time-dependent ``rhs`` is never solved silently
as its linearisation. The input column of the augmented matrix is rescaled to the size of ``K``
first, so a large infusion rate does not cost extra squarings. Cost: roughly that of the
``rk45`` path with sensitivities for a one-compartment model (``benchmarks/population.py``);
the gain is exactness and no step budget, not speed.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import expm

from bayesbio.errors import ModelError
from bayesbio.ode import ODESolution
from bayesbio.population.batch import scan_segments, segment_defaults

__all__ = ["check_linear", "linear_system", "solve_patient_expm"]


def _mm(a, b):
    """Batched product of tiny matrices."""
    return jnp.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)


def linear_system(rhs: Callable, params: Any, n_states: int, dtype=None):
    """``(K, c)`` with ``rhs(t, y, params) == K @ y + c`` for a linear, autonomous ``rhs``."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    zero = jnp.zeros(n_states, dtype)
    f = lambda y: jnp.asarray(rhs(jnp.zeros((), dtype), y, params), dtype)  # noqa: E731
    c, K = f(zero), jax.jacfwd(f)(zero)
    return K, c


def _default_rtol(dtype) -> float:
    # rounding of a few floating-point operations per term, with room: 1000 ulps
    return 1e3 * float(jnp.finfo(dtype).eps)


def check_linear(rhs: Callable, params: Any, n_states: int, *, seed: int = 0, rtol: float | None = None) -> None:
    """Raise :class:`~bayesbio.errors.ModelError` unless ``rhs`` is linear in ``y`` and does not
    depend on ``t`` at ``params`` (checked at random states and times; concrete values only).

    ``rtol``: relative tolerance of the comparison ``rhs(t, y) == K y + c`` (default 1000 ulps
    of JAX's default float type: the rounding of a few operations per term).
    """
    dtype = jnp.result_type(float)
    rtol = _default_rtol(dtype) if rtol is None else rtol
    K, c = (np.asarray(a, np.float64) for a in linear_system(rhs, params, n_states, dtype))
    rng = np.random.default_rng(seed)

    def at(t, y):
        return np.asarray(rhs(jnp.asarray(t, dtype), jnp.asarray(y, dtype), params), np.float64)

    zero = np.zeros(n_states)
    for t in rng.uniform(1.0, 100.0, 3):
        got = at(t, zero)
        if not np.all(np.abs(got - c) <= rtol * (np.abs(c) + 1e-300)):
            raise ModelError(
                f"solver='expm': 'rhs' depends on t (at y = 0 it is {got} at t={t:.3g} but {c} at t=0); "
                "the matrix exponential needs dy/dt = K y + c with constant K and c. Use an ODE solver "
                "(e.g. solver='rk45') instead"
            )
    for _ in range(3):
        y = rng.normal(size=n_states) * 10.0
        got, want = at(0.0, y), K @ y + c
        scale = np.abs(K) @ np.abs(y) + np.abs(c) + 1e-300
        if not np.all(np.abs(got - want) <= rtol * scale):
            raise ModelError(
                "solver='expm': 'rhs' is not linear in y (dy/dt = K y + c): at a random state it differs "
                f"from its linearisation at y = 0 by up to {float(np.max(np.abs(got - want))):.3g}. Use an "
                "ODE solver (e.g. solver='rk45') instead"
            )


def _linearity_violated(rhs, params, K, c, t, y):
    """In-graph check at one (t, y): does ``rhs`` differ from ``K y + c`` beyond rounding?
    (A non-linear or time-dependent ``rhs`` would otherwise be solved silently as its
    linearisation at y = 0, t = 0.)"""
    got = jnp.asarray(rhs(t, y, params), y.dtype)
    want = K @ y + c
    scale = jnp.abs(K) @ jnp.abs(y) + jnp.abs(c) + jnp.finfo(y.dtype).tiny
    return jnp.any(jnp.abs(got - want) > _default_rtol(y.dtype) * scale)


def solve_patient_expm(rhs: Callable, params: Any, events, *, y0=None, bioavailability=None) -> ODESolution:
    """One patient's dosing history solved exactly (see the module docstring); the
    signature and result are those of :func:`~bayesbio.population.solve_patient`."""
    n_states, dtype, y0, f_bio = segment_defaults(events, y0, bioavailability)
    K, c = linear_system(rhs, params, n_states, dtype)
    bottom = jnp.zeros((1, n_states + 1), dtype)

    k_norm = jnp.max(jnp.sum(jnp.abs(K), axis=0))

    def propagate(y, ts, start, end, rate):
        u = c + rate
        # input column scaled to the size of K (exact: the augmented state is alpha, not 1)
        u_norm = jnp.sum(jnp.abs(u))
        alpha = jnp.where(u_norm > k_norm, u_norm / jnp.where(k_norm > 0, k_norm, 1.0), 1.0)
        top = jnp.concatenate([K, (u / alpha)[:, None]], axis=1)
        M = jnp.concatenate([top, bottom], axis=0)
        E = expm((ts - start)[:, None, None] * M[None])  # (T, S+1, S+1)
        ys = _mm(E[:, :n_states, :n_states], y[None, :, None])[..., 0] + alpha * E[:, :n_states, n_states]
        y_end = jax.lax.stop_gradient(ys[-1])
        nonlinear = _linearity_violated(rhs, params, K, c, jax.lax.stop_gradient(end), y_end)
        return ys, ~jnp.all(jnp.isfinite(E)) | nonlinear

    ys, failed = scan_segments(propagate, y0, f_bio, events, dtype)
    return ODESolution(ys=ys, failed=failed | ~jnp.all(jnp.isfinite(ys)))
