"""Differentiable, failure-safe ODE solutions at observation times.

A model author writes the mechanism as a plain function ``rhs(t, y, params) -> dy/dt`` in
``jax.numpy`` (``params`` may be any pytree) and calls :func:`solve`. The solution at the
observation times is differentiable under NumPyro's reverse-mode gradients and never raises
inside inference: a failed solve (step budget exhausted, step size collapse, NaN/inf) sets the
log density to ``-inf`` (a rejected proposal) and is counted per chain and draw.

Two sensitivity methods are available:

``"forward"``
    The state is integrated together with its forward sensitivities
    ``S = dy/d(y0, params)`` (``dS/dt = J_y S + J_p``; Hindmarsh & Serban 2005) in one adaptive
    solve whose error control covers the sensitivities, as Stan and CVODES do. The products
    ``J S`` are formed with Jacobian-vector products, never a dense Jacobian. The result is
    wrapped in a ``jax.custom_vjp`` so reverse-mode callers (NumPyro's NUTS) get
    ``g^T S`` for the cost of one forward solve. Cost grows with ``n_states * (n_states +
    n_params)``, so it is the method for small systems.
``"adjoint"``
    Discretise-then-differentiate through the solver with diffrax's recursive checkpointing
    (exact gradients of the numerical solution; memory ``O(max_steps)``). The method for large
    systems, e.g. method-of-lines PDEs.

``"auto"`` picks forward sensitivities while ``n_states * (1 + n_states + n_params)`` is at
most :data:`FORWARD_SENSITIVITY_LIMIT`, else the adjoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero
from jax.flatten_util import ravel_pytree

from bayesbio._failure_report import _report_failure
from bayesbio._rk45 import dopri5
from bayesbio._rosenbrock import RODAS3, RODAS4, rosenbrock, rosenbrock_sensitivities
from bayesbio.errors import OptionError, SolverError, describe

__all__ = [
    "FORWARD_SENSITIVITY_LIMIT",
    "ODESolution",
    "SOLVERS",
    "solve",
    "solve_with_status",
]


class _LazyDiffrax:
    """``diffrax``, imported on first attribute access: diffrax with equinox, lineax and
    optimistix is ~0.4 s of start-up that the fused solvers (``rk45``, ``rodas3/4``, the
    default path) never need."""

    def __getattr__(self, name):
        import diffrax as module

        return getattr(module, name)


diffrax = _LazyDiffrax()

#: Largest size ``n_states * (1 + n_states + n_params)`` of the coupled sensitivity system for
#: which ``sensitivity="auto"`` chooses forward sensitivities.
FORWARD_SENSITIVITY_LIMIT = 400

#: Solvers by name. ``"rk45"`` (default) is bayesbio's fused Dormand–Prince 5(4) loop
#: (:mod:`bayesbio._rk45`) and ``"rodas3"``/``"rodas4"`` its fused Rosenbrock loops for small stiff systems
#: (:mod:`bayesbio._rosenbrock`), both used with forward sensitivities; with the adjoint method
#: they map to diffrax's Dopri5, Kvaerno3 and Kvaerno5. The others are diffrax's: explicit Runge–Kutta for
#: non-stiff problems, ESDIRK (L-stable) for stiff ones.
def _diffrax_solver(name: str) -> Callable[[], diffrax.AbstractSolver]:
    return lambda: getattr(diffrax, name)()  # diffrax is imported on first use


SOLVERS: dict[str, Callable[[], diffrax.AbstractSolver]] = {
    "rk45": _diffrax_solver("Dopri5"),
    "tsit5": _diffrax_solver("Tsit5"),
    "dopri5": _diffrax_solver("Dopri5"),
    "dopri8": _diffrax_solver("Dopri8"),
    "kvaerno3": _diffrax_solver("Kvaerno3"),
    "kvaerno5": _diffrax_solver("Kvaerno5"),
    "rodas3": _diffrax_solver("Kvaerno3"),
    "rodas4": _diffrax_solver("Kvaerno5"),
}

# bayesbio's own fused loops, used with forward sensitivities (with the adjoint method a
# fused name maps to the diffrax solver of the same kind in SOLVERS)
_ROSENBROCK = {"rodas3": RODAS3, "rodas4": RODAS4}
#: With 2 to this many differentiated parameter leaves, the fused RK45 forms the sensitivity
#: columns leaf by leaf: one JVP per leaf whose tangent enters through y and that leaf only. One
#: vmapped JVP over one-hot tangents of all parameters carries every other leaf's zero tangent
#: through the right-hand side (XLA does not fold x * 0.0 for floats); N = 64 theophylline
#: patients (scalar leaves ka, cl, v; 8 coupled states): value + gradient 0.59 -> 0.42-0.45 ms.
#: With one leaf (e.g. a parameter vector) there is nothing to split off but the y0 columns, which
#: costs a single solve more operations than it saves (Lotka-Volterra value + gradient 0.41-0.44
#: -> 0.45-0.50 ms); beyond this many leaves the single JVP keeps the traced program small.
_MAX_COLUMN_GROUPS = 16
_FUSED = {
    "rk45": dopri5,
    **{name: partial(rosenbrock, tableau=tab) for name, tab in _ROSENBROCK.items()},
}

_SENSITIVITIES = ("auto", "forward", "adjoint")

# Suffix of the NumPyro factor site that makes the log density -inf on a failed solve.
FAILURE_SITE_SUFFIX = "__solver_failed"


@dataclass(frozen=True)
class ODESolution:
    """Solution at the requested times plus a failure flag.

    Attributes
    ----------
    ys : array, shape (n_times, n_states)
        The state at each requested time. Where the solve failed, every entry is replaced by
        a finite placeholder (1.0) so that downstream log densities stay finite; the failure
        itself is carried by ``failed``.
    failed : bool array, shape ()
        True when the solver did not reach the last time successfully or produced NaN/inf.
    """

    ys: jax.Array
    failed: jax.Array


# --------------------------------------------------------------------------------------------
# validation (eager, in Python, before anything is traced)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _validate(rhs, y0, ts, params, t0, solver, rtol, atol, max_steps, sensitivity):
    if not callable(rhs):
        raise SolverError(f"solve: 'rhs' must be a function rhs(t, y, params); got {describe(rhs)}")
    if isinstance(solver, str):
        if solver not in SOLVERS:
            raise OptionError(
                f"solve: 'solver' must be one of {sorted(SOLVERS)} or a diffrax solver; "
                f"got {solver!r}"
            )
    elif not isinstance(solver, diffrax.AbstractSolver):
        raise OptionError(
            f"solve: 'solver' must be a name or a diffrax.AbstractSolver; got {describe(solver)}"
        )
    for field, value in (("rtol", rtol), ("atol", atol)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (value > 0)
            or not math.isfinite(value)
        ):
            raise OptionError(f"solve: '{field}' must be a positive finite number; got {value!r}")
    if not isinstance(max_steps, (int, np.integer)) or isinstance(max_steps, bool) or max_steps < 1:
        raise OptionError(f"solve: 'max_steps' must be a positive integer; got {max_steps!r}")
    if sensitivity not in _SENSITIVITIES:
        raise OptionError(
            f"solve: 'sensitivity' must be one of {list(_SENSITIVITIES)}; got {sensitivity!r}"
        )

    for field, value in (("y0", y0), ("ts", ts), ("t0", t0)):
        if _is_concrete(value):
            try:
                kind = np.asarray(value).dtype.kind
            except Exception:  # ragged nested lists and other non-arrays
                kind = "O"
            if kind not in "biuf":
                raise SolverError(f"solve: '{field}' must be numeric; got {describe(value)}")
    if _is_concrete(t0) and (np.ndim(t0) != 0 or not np.isfinite(float(np.asarray(t0)))):
        raise SolverError(f"solve: initial time 't0' must be a finite number; got {describe(t0)}")
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if _is_concrete(leaf):
            try:
                kind = np.asarray(leaf).dtype.kind
            except Exception:
                kind = "O"
            if kind not in "biuf":
                raise SolverError(
                    f"solve: 'params{jax.tree_util.keystr(path)}' must be numeric; got {describe(leaf)}"
                )

    y0_shape = jnp.shape(y0)
    if len(y0_shape) != 1 or y0_shape[0] == 0:
        raise SolverError(
            f"solve: initial state 'y0' must be a non-empty 1-D array of states; got shape {y0_shape}"
        )
    if _is_concrete(y0) and not np.all(np.isfinite(np.asarray(y0))):
        raise SolverError(f"solve: initial state 'y0' contains NaN or inf: {np.asarray(y0)}")

    ts_shape = jnp.shape(ts)
    if len(ts_shape) != 1 or ts_shape[0] == 0:
        raise SolverError(f"solve: 'ts' must be a non-empty 1-D array of times; got shape {ts_shape}")
    if _is_concrete(ts):
        ts_np = np.asarray(ts, dtype=float)
        if not np.all(np.isfinite(ts_np)):
            raise SolverError("solve: 'ts' contains NaN or inf")
        if np.any(np.diff(ts_np) < 0):
            bad = int(np.argmax(np.diff(ts_np) < 0))
            raise SolverError(
                "solve: 'ts' must be sorted in increasing order; "
                f"ts[{bad}] = {ts_np[bad]} is followed by ts[{bad + 1}] = {ts_np[bad + 1]}"
            )
        if _is_concrete(t0) and ts_np[0] < float(t0):
            raise SolverError(
                f"solve: the first time ts[0] = {ts_np[0]} is before the initial time t0 = {float(t0)}"
            )

    try:
        out = jax.eval_shape(lambda y, p: rhs(jnp.asarray(t0, dtype=jnp.result_type(float)), y, p), y0, params)
    except SolverError:
        raise
    except Exception as exc:  # the user's function failed to trace
        raise SolverError(
            f"solve: calling rhs(t, y, params) with y of shape {y0_shape} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not hasattr(out, "shape") or tuple(out.shape) != tuple(y0_shape):
        got = getattr(out, "shape", type(out).__name__)
        raise SolverError(
            f"solve: rhs(t, y, params) must return an array of the state's shape {y0_shape}; "
            f"got {got}"
        )


# --------------------------------------------------------------------------------------------
# the solves


def _make_solver(solver):
    return SOLVERS[solver]() if isinstance(solver, str) else solver


def _diffeqsolve(term, solver, t0, t1, y0, args, ts, rtol, atol, max_steps, adjoint):
    return diffrax.diffeqsolve(
        term,
        solver,
        t0=t0,
        t1=t1,
        dt0=None,
        y0=y0,
        args=args,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        adjoint=adjoint,
        throw=False,
    )


def _failed(sol, *arrays) -> jax.Array:
    ok = sol.result == diffrax.RESULTS.successful
    for a in arrays:
        ok = ok & jnp.all(jnp.isfinite(a))
    return ~ok


def _solve_adjoint(rhs, y0, ts, params, t0, solver, rtol, atol, max_steps):
    term = diffrax.ODETerm(lambda t, y, p: rhs(t, y, p))
    sol = _diffeqsolve(
        term, _make_solver(solver), t0, ts[-1], y0, params, ts, rtol, atol, max_steps,
        diffrax.RecursiveCheckpointAdjoint(),
    )
    return sol.ys, _failed(sol, sol.ys)


def _solve_forward(rhs, y0, ts, params, t0, solver, rtol, atol, max_steps):
    """Forward sensitivities behind a custom VJP; differentiable in y0, params, ts and t0.

    Only the sensitivity columns of inputs that are actually differentiated are integrated
    (the custom VJP uses symbolic zeros, leaf by leaf): a constant initial state, or a leaf of
    ``params`` that is data (e.g. an infusion rate read from the dosing table), costs no
    sensitivities.
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    n = y0.shape[0]
    dtype = jnp.result_type(y0, *leaves, float)
    y0 = y0.astype(dtype)
    leaves = tuple(jnp.asarray(leaf).astype(dtype) for leaf in leaves)

    def full_rhs(values):
        params = jax.tree_util.tree_unflatten(treedef, values)
        return lambda t, y: rhs(t, y, params)

    def plain(ts, t0, y0, values):
        g = full_rhs(values)
        if solver in _FUSED:
            ys, failed, _ = _FUSED[solver](g, t0, y0, ts, rtol=rtol, atol=atol, max_steps=max_steps)
            return ys, failed
        term = diffrax.ODETerm(lambda t, y, args: full_rhs(args)(t, y))
        sol = _diffeqsolve(
            term, _make_solver(solver), t0, ts[-1], y0, values, ts, rtol, atol, max_steps,
            diffrax.ForwardMode(),
        )
        return sol.ys, _failed(sol, sol.ys)

    def with_sensitivities(f, n_p, ts, t0, y0, p_flat, wrt_y0, wrt_p, leaf_columns=None, param_groups=()):
        """States and sensitivities in the columns [y0 (if wrt_y0) | p (if wrt_p)] of
        ``dy/dt = f(t, y, p_flat)``, ``p_flat`` holding the ``n_p`` differentiated parameters."""
        # NumPy constants: jnp arrays here would be tracers of an enclosing jit captured by
        # the custom-VJP function (breaks jax.grad(jax.jit(f)))
        s0_blocks, e_blocks = [], []
        if wrt_y0:
            s0_blocks.append(np.eye(n))
            e_blocks.append(np.zeros((n_p, n)))
        if wrt_p:
            s0_blocks.append(np.zeros((n, n_p)))
            e_blocks.append(np.eye(n_p))
        s0 = np.concatenate(s0_blocks, axis=1).astype(dtype)
        e_p = np.concatenate(e_blocks, axis=1).astype(dtype)
        k = s0.shape[1]
        if solver in _ROSENBROCK:
            return rosenbrock_sensitivities(
                f, t0, y0, s0, ts, p_flat, e_p, rtol=rtol, atol=atol, max_steps=max_steps,
                tableau=_ROSENBROCK[solver],
            )

        def coupled(t, state, p_flat):
            y, s = state

            def column(s_k, e_k):
                return jax.jvp(lambda yy, pp: f(t, yy, pp), (y, p_flat), (s_k, e_k))

            dy, ds = jax.vmap(column, in_axes=(1, 1), out_axes=(None, 1))(s, e_p)
            return dy, ds

        if solver == "rk45":
            n_y0 = n if wrt_y0 else 0
            if not 2 <= len(param_groups) <= _MAX_COLUMN_GROUPS:
                # one vmapped JVP over all columns, flat state [y | S row by row]
                def flat_coupled(t, x):
                    dy, ds = coupled(t, (x[:n], x[n:].reshape(n, k)), p_flat)
                    return jnp.concatenate([dy, ds.reshape(-1)])

                x0 = jnp.concatenate([y0, s0.reshape(-1)])
                xs, failed, _ = dopri5(flat_coupled, t0, x0, ts, rtol=rtol, atol=atol, max_steps=max_steps)
                return xs[:, :n], xs[:, n:].reshape(-1, n, k), failed

            # by leaf: flat state [y | S[:, 0] | S[:, 1] | ...] (column-major: each sensitivity
            # column is one contiguous slice), one JVP (vmapped over the group's columns) per
            # group: the y0 columns with a tangent through y only, then each differentiated
            # parameter leaf's columns with a tangent through y and that leaf only
            def flat_by_leaf(t, x):
                y = x[:n]
                cols = x[n:].reshape(k, n)
                parts = []
                if n_y0:
                    dy, ds = jax.vmap(lambda s_c: jax.jvp(lambda yy: f(t, yy, p_flat), (y,), (s_c,)),
                                      out_axes=(None, 0))(cols[:n_y0])
                    parts.append(ds.reshape(-1))
                for leaf_index, (start, size) in enumerate(param_groups):
                    if size == 0:  # an empty leaf has no columns
                        continue
                    dy, ds = leaf_columns(t, y, p_flat, cols[n_y0 + start:n_y0 + start + size], leaf_index)
                    parts.append(ds.reshape(-1))
                return jnp.concatenate([dy] + parts)

            x0 = jnp.concatenate([y0, s0.T.reshape(-1)])
            xs, failed, _ = dopri5(flat_by_leaf, t0, x0, ts, rtol=rtol, atol=atol, max_steps=max_steps)
            return xs[:, :n], jnp.swapaxes(xs[:, n:].reshape(-1, k, n), 1, 2), failed
        term = diffrax.ODETerm(coupled)
        sol = _diffeqsolve(
            term, _make_solver(solver), t0, ts[-1], (y0, s0), p_flat, ts, rtol, atol, max_steps,
            diffrax.ForwardMode(),
        )
        ys, ss = sol.ys
        return ys, ss, _failed(sol, ys, ss)

    @jax.custom_vjp
    def run(ts, t0, y0, values):
        ys, failed = plain(ts, t0, y0, values)
        return ys, failed.astype(dtype)

    def run_fwd(ts, t0, y0, values):
        # arguments arrive as CustomVJPPrimal(value, perturbed), leaf by leaf (symbolic_zeros=True)
        wrt_ts, wrt_t0, wrt_y0 = ts.perturbed, t0.perturbed, y0.perturbed
        mask = tuple(v.perturbed for v in values)
        ts, t0, y0 = ts.value, t0.value, y0.value
        values = tuple(v.value for v in values)
        wrt_p = any(mask)
        need_y0 = wrt_y0 or wrt_t0  # d y / d t0 = -S_y0 f(t0, y0)
        if need_y0 or wrt_p:
            # only the differentiated leaves get sensitivity columns; the others stay constants
            p_flat, unravel = ravel_pytree([v for v, m in zip(values, mask) if m])
            p_flat = p_flat.astype(dtype)  # an empty list ravels to float32
            n_p = p_flat.shape[0]

            def f(t, y, p_flat):
                varied = iter(unravel(p_flat))
                merged = [next(varied) if m else v for v, m in zip(values, mask)]
                return full_rhs(merged)(t, y)

            def leaf_columns(t, y, p_flat, cols, leaf_index):
                """(dy/dt, rows J s_c + df/dp_c) for the sensitivity columns ``cols`` (size, n)
                of one differentiated parameter leaf: the parameter tangent enters through that
                leaf only (the other leaves stay constants)."""
                leaves = unravel(p_flat)
                leaf = leaves[leaf_index]

                def g(yy, lv):
                    varied = iter(leaves[:leaf_index] + [lv] + leaves[leaf_index + 1:])
                    merged = [next(varied) if m else v for v, m in zip(values, mask)]
                    return full_rhs(merged)(t, yy)

                size = int(np.size(leaf))
                if size == 1:
                    dy, ds = jax.jvp(g, (y, leaf), (cols[0], np.ones(np.shape(leaf), dtype)))
                    return dy, ds[None]
                tangents = np.eye(size, dtype=dtype).reshape((size,) + np.shape(leaf))
                return jax.vmap(lambda s_c, e_c: jax.jvp(g, (y, leaf), (s_c, e_c)), out_axes=(None, 0))(
                    cols, tangents
                )

            # (first flat parameter, size) of each differentiated leaf, in the order of p_flat
            sizes = [int(np.size(v)) for v, m in zip(values, mask) if m]
            param_groups = [(int(sum(sizes[:i])), size) for i, size in enumerate(sizes)]
            if sum(size > 0 for size in sizes) < 2:
                param_groups = []  # nothing to split: the single vmapped JVP

            ys, ss, failed = with_sensitivities(f, n_p, ts, t0, y0, p_flat, need_y0, wrt_p, leaf_columns,
                                                param_groups)
        else:
            ys, failed = plain(ts, t0, y0, values)
            ss = None
        flags = (wrt_ts, wrt_t0, wrt_y0, mask, need_y0)
        return (ys, failed.astype(dtype)), (ts, t0, y0, values, ys, ss, failed, flags)

    def run_bwd(res, cotangents):
        ts, t0, y0, values, ys, ss, failed, flags = res
        wrt_ts, wrt_t0, wrt_y0, mask, need_y0 = flags
        g_ys, _ = cotangents
        if isinstance(g_ys, SymbolicZero):
            g_ys = jnp.zeros(ys.shape, ys.dtype)
        g_ys = jnp.where(failed, 0.0, g_ys)
        g_theta = jnp.einsum("tn,tnk->k", g_ys, ss) if ss is not None else None
        n_y0 = n if need_y0 else 0
        g_y0 = g_theta[:n] if wrt_y0 else None
        g_values = tuple(jnp.zeros_like(v) for v in values)
        if any(mask):
            unravel = ravel_pytree([v for v, m in zip(values, mask) if m])[1]
            varied = iter(unravel(g_theta[n_y0:]))
            g_values = tuple(next(varied) if m else g for g, m in zip(g_values, mask))
        g_ts = g_t0 = None
        g = full_rhs(values)
        if wrt_ts:  # d y(t_i) / d t_i = f(t_i, y_i)
            f_ts = jax.vmap(g)(ts, ys)
            g_ts = jnp.where(failed, 0.0, jnp.einsum("tn,tn->t", g_ys, f_ts)).astype(jnp.result_type(ts))
        if wrt_t0:  # d y(t) / d t0 = -S_y0(t) f(t0, y0)
            f_t0 = g(t0, y0)
            g_t0 = -jnp.einsum("tn,tnm,m->", g_ys, ss[:, :, :n], f_t0)
            g_t0 = jnp.where(failed, 0.0, g_t0).astype(jnp.result_type(t0))
        return g_ts, g_t0, g_y0, g_values

    run.defvjp(run_fwd, run_bwd, symbolic_zeros=True)
    ys, failed = run(ts, t0, y0, leaves)
    return ys, failed > 0.5


def _choose_sensitivity(sensitivity, n_states, n_params):
    if sensitivity != "auto":
        return sensitivity
    size = n_states * (1 + n_states + n_params)
    return "forward" if size <= FORWARD_SENSITIVITY_LIMIT else "adjoint"


def solve_with_status(
    rhs: Callable,
    y0,
    ts,
    params: Any = None,
    *,
    t0: float = 0.0,
    solver: str | diffrax.AbstractSolver = "rk45",
    rtol: float = 1e-6,
    atol: float = 1e-8,
    max_steps: int = 4096,
    sensitivity: str = "auto",
) -> ODESolution:
    """Solve ``dy/dt = rhs(t, y, params)`` and return the solution with its failure flag.

    The low-level layer under :func:`solve`: it registers nothing with NumPyro, so it is the
    function to call outside a model (simulation, plotting, tests).

    Parameters
    ----------
    rhs : callable
        ``rhs(t, y, params) -> dy/dt`` in ``jax.numpy``; ``y`` has shape ``(n_states,)``.
    y0 : array, shape (n_states,)
        State at ``t0``.
    ts : array, shape (n_times,)
        Times at which the solution is returned, sorted in increasing order, ``ts[0] >= t0``.
    params : pytree, optional
        Parameters passed to ``rhs`` (arrays, dicts, tuples of arrays).
    t0 : float
        Initial time.
    solver : {"rk45", "rodas4", "rodas3", "tsit5", "dopri5", "dopri8", "kvaerno3", "kvaerno5"} or diffrax solver
        ``"rk45"`` (default; fused Dormand–Prince, fastest for small non-stiff systems),
        ``"rodas4"``/``"rodas3"`` (fused Rosenbrock, L-stable, orders 4 and 3, for small stiff
        systems),
        ``"tsit5"``/``"dopri5"``/``"dopri8"`` (diffrax, non-stiff), ``"kvaerno3"``/``"kvaerno5"``
        (diffrax ESDIRK, for stiff systems of any size).
    rtol, atol : float
        Relative and absolute tolerances of the adaptive step-size controller.
    max_steps : int
        Step budget; exhausting it is a failed solve, not an exception.
    sensitivity : {"auto", "forward", "adjoint"}
        Gradient method (see the module docstring).

    Returns
    -------
    ODESolution
        ``ys`` of shape ``(n_times, n_states)`` and the boolean ``failed``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from bayesbio.ode import solve_with_status
    >>> sol = solve_with_status(lambda t, y, k: -k * y, jnp.array([1.0]), jnp.array([1.0]), 0.5)
    >>> bool(sol.failed), round(float(sol.ys[0, 0]), 5)
    (False, 0.60653)
    """
    _validate(rhs, y0, ts, params, t0, solver, rtol, atol, max_steps, sensitivity)
    dtype = jnp.result_type(float)
    y0 = jnp.asarray(y0)
    y0 = y0.astype(jnp.result_type(y0, dtype))
    ts = jnp.asarray(ts, dtype=jnp.result_type(dtype))
    t0 = jnp.asarray(t0, dtype=ts.dtype)
    params = jax.tree_util.tree_map(
        lambda p: jnp.asarray(p, dtype=jnp.result_type(p, dtype)), params
    )
    n_params = ravel_pytree(params)[0].shape[0]
    method = _choose_sensitivity(sensitivity, y0.shape[0], n_params)
    impl = _solve_forward if method == "forward" else _solve_adjoint
    ys, failed = impl(rhs, y0, ts, params, t0, solver, float(rtol), float(atol), int(max_steps))
    ys = jnp.where(failed, jnp.ones_like(ys), ys)
    return ODESolution(ys=ys, failed=failed)


def solve(
    rhs: Callable,
    y0,
    ts,
    params: Any = None,
    *,
    name: str = "ode",
    t0: float = 0.0,
    solver: str | diffrax.AbstractSolver = "rk45",
    rtol: float = 1e-6,
    atol: float = 1e-8,
    max_steps: int = 4096,
    sensitivity: str = "auto",
) -> jax.Array:
    """Solve an ODE inside a NumPyro model; a failed solve rejects the proposal.

    Same arguments as :func:`solve_with_status`, plus ``name``, which names the NumPyro factor
    site ``f"{name}__solver_failed"`` that adds ``-inf`` to the log density when the solve
    fails (use distinct names when a model solves several ODEs). Failures are counted per
    chain and draw by the bayesbio runners (``sample_stats.solver_failures``).

    Returns
    -------
    array, shape (n_times, n_states)
        The solution at ``ts`` (finite placeholders where the solve failed).

    Examples
    --------
    Inside a model::

        y = bb.solve(rhs, y0, data["ts"], params)
        bb.observe("y", bb.LogNormalNoise(y, sigma), obs=data["y"])
    """
    import numpyro

    sol = solve_with_status(
        rhs, y0, ts, params, t0=t0, solver=solver, rtol=rtol, atol=atol,
        max_steps=max_steps, sensitivity=sensitivity,
    )
    _report_failure(sol.failed)
    numpyro.factor(name + FAILURE_SITE_SUFFIX, jnp.where(sol.failed, -jnp.inf, 0.0))
    return sol.ys
