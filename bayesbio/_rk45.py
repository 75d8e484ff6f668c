"""A fused Dormand–Prince 5(4) integrator for small non-stiff systems.

Why not diffrax here: on a CPU a small ODE is bound by per-operation overhead inside the
step loop, not by arithmetic. diffrax's general machinery (pytrees of terms, solver state,
controllers, event handling, saving) costs several hundred small XLA operations per step;
this loop does one Runge–Kutta step, error control and dense-output saving on a flat state
vector with a few dozen. It is the default solver ("rk45") of :func:`bayesbio.solve` for
small systems; every other solver (and every large or stiff problem) goes through diffrax.

Method (Hairer, Nørsett & Wanner, *Solving ODEs I*, 2nd ed., §II.4–II.6):

* Dormand–Prince 5(4) tableau with FSAL, local extrapolation (the 5th-order solution is kept);
* error norm ``sqrt(mean((err / (atol + rtol * max(|y_n|, |y_{n+1}|)))^2))`` (eq. II.4.11);
* step-size factor ``0.9 * err^(-1/5)`` clipped to [0.2, 10] (after a rejection at most 1);
* dense output of order 4 (the continuous extension of Dormand & Prince, as in Hairer's
  DOPRI5 code) to return the solution at the requested times without shortening steps;
* initial step from Hairer's heuristic (§II.4, "starting step size").

Verified in ``tests/test_ode.py`` against the matrix exponential and closed forms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Butcher tableau of Dormand–Prince 5(4)
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
# 5th-order weights (= last row of A, FSAL) minus the embedded 4th-order weights
_E = (
    71 / 57600,
    0.0,
    -71 / 16695,
    71 / 1920,
    -17253 / 339200,
    22 / 525,
    -1 / 40,
)
# dense-output coefficients (Dormand & Prince continuous extension, as in DOPRI5)
_D = (
    -12715105075 / 11282082432,
    0.0,
    87487479700 / 32700410799,
    -10690763975 / 1880347072,
    701980252875 / 199316789632,
    -1453857185 / 822651844,
    69997945 / 29380423,
)


def _combine(weights, ks):
    out = None
    for w, k in zip(weights, ks):
        if w == 0.0:
            continue
        term = w * k
        out = term if out is None else out + term
    return out


def _initial_step(f, t0, y0, f0, t_end, rtol, atol):
    scale = atol + rtol * jnp.abs(y0)
    d0 = jnp.sqrt(jnp.mean((y0 / scale) ** 2))
    d1 = jnp.sqrt(jnp.mean((f0 / scale) ** 2))
    h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
    span = t_end - t0
    h0 = jnp.minimum(h0, span)
    y1 = y0 + h0 * f0
    f1 = f(t0 + h0, y1)
    d2 = jnp.sqrt(jnp.mean(((f1 - f0) / scale) ** 2)) / h0
    dmax = jnp.maximum(d1, d2)
    h1 = jnp.where(dmax <= 1e-15, jnp.maximum(1e-6, h0 * 1e-3), (0.01 / dmax) ** (1 / 5))
    return jnp.minimum(jnp.minimum(100 * h0, h1), span)


def dopri5(f, t0, y0, ts, *, rtol, atol, max_steps):
    """Integrate ``dy/dt = f(t, y)`` (flat ``y``) and return ``(ys at ts, failed, n_steps)``.

    ``ts`` must be sorted with ``ts[0] >= t0``. Never raises: exhausting ``max_steps``, a step
    size collapsing below the floating-point resolution of ``t`` or a non-finite state sets
    ``failed``.
    """
    dtype = y0.dtype
    n_out = ts.shape[0]
    t_end = ts[-1]
    f0 = f(t0, y0)
    h = _initial_step(f, t0, y0, f0, t_end, rtol, atol)
    eps = jnp.finfo(dtype).eps
    # outputs at times equal to t0 are the initial state
    ys0 = jnp.where((ts <= t0)[:, None], y0[None, :], jnp.zeros((n_out, y0.shape[0]), dtype))

    def cond(carry):
        t, _, _, _, _, n, failed, _ = carry
        return (t < t_end) & (~failed)

    def body(carry):
        t, y, k1, h, ys, n, failed, rejected = carry
        h = jnp.minimum(h, t_end - t)
        ks = [k1]
        for i in range(1, 6):
            yi = y + h * _combine(_A[i], ks)
            ks.append(f(t + _C[i] * h, yi))
        y_new = y + h * _combine(_A[6], ks)
        k7 = f(t + h, y_new)
        ks.append(k7)
        err = h * _combine(_E, ks)
        scale = atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y_new))
        err_norm = jnp.sqrt(jnp.mean((err / scale) ** 2))
        finite = jnp.isfinite(err_norm) & jnp.all(jnp.isfinite(y_new))
        accept = (err_norm <= 1.0) & finite
        factor = jnp.where(finite, 0.9 * jnp.maximum(err_norm, 1e-10) ** (-1 / 5), 0.2)
        factor = jnp.clip(factor, 0.2, 10.0)
        factor = jnp.where(accept & rejected, jnp.minimum(factor, 1.0), factor)

        # dense output on the accepted step for every requested time in (t, t + h]
        t_new = t + h
        theta = (ts - t) / h
        in_step = (ts > t) & (ts <= t_new)
        r2 = y_new - y
        r3 = h * k1 - r2
        r4 = r2 - h * k7 - r3
        r5 = h * _combine(_D, ks)
        th = theta[:, None]
        dense = y + th * (r2 + (1 - th) * (r3 + th * (r4 + (1 - th) * r5)))
        ys = jnp.where((accept & in_step)[:, None], dense, ys)

        t = jnp.where(accept, t_new, t)
        y = jnp.where(accept, y_new, y)
        k1 = jnp.where(accept, k7, k1)
        h_next = h * factor
        n = n + 1
        too_small = h_next < 10 * eps * jnp.maximum(jnp.abs(t), 1.0)
        failed = (n >= max_steps) & (t < t_end) | too_small & (t < t_end)
        return t, y, k1, h_next, ys, n, failed, ~accept

    init = (t0, y0, f0, h, ys0, jnp.array(0, jnp.int32), jnp.array(False), jnp.array(False))
    t, y, _, _, ys, n, failed, _ = jax.lax.while_loop(cond, body, init)
    failed = failed | ~jnp.all(jnp.isfinite(ys))
    return ys, failed, n
