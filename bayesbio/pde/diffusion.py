"""Conservative finite-volume diffusion ``∇·(D ∇u)`` on cell-centred grids.

The cell average ``u_i`` changes by the net flux through its faces,

    du_i/dt = (G_{i+1/2} - G_{i-1/2}) / dx_i,      G_{i+1/2} = D_{i+1/2} (u_{i+1} - u_i) / h_{i+1/2},

with ``h`` the centre-to-centre distance; boundary faces follow the boundary conditions
(:mod:`bayesbio.pde.boundary`). Because every interior flux leaves one cell and enters its
neighbour, the scheme conserves mass to rounding error with no-flux boundaries. On a uniform
grid it is the standard second-order three-point (1-D) / five-point (2-D) stencil.

The diffusivity ``D`` may be

* a number or a JAX scalar (constant);
* an array of cell values of the grid's shape (spatially varying); face values are harmonic
  means of the two neighbouring cells (the exact series conductance of a piecewise-constant
  medium);
* in 1-D, an array of ``n + 1`` face values;
* a function ``D(u)`` of the local density (nonlinear, e.g. porous-Fisher ``D (u/K)^m``,
  see :func:`bayesbio.pde.porous_diffusivity`); face values are arithmetic means of the two
  cells, which keeps fronts moving into empty regions where ``D(0) = 0``.

:func:`diffusion` applies the operator matrix-free (any grid size);
:func:`diffusion_matrix` returns it as a dense matrix for small linear problems, and
:func:`diffusion_source` the constant part that non-zero boundary values contribute, so that
``diffusion(u) == diffusion_matrix @ u + diffusion_source``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bayesbio.errors import OptionError, SolverError, describe
from bayesbio.pde.boundary import resolve_bcs
from bayesbio.pde.grids import Grid1D, Grid2D

__all__ = ["diffusion", "diffusion_matrix", "diffusion_source"]


def _check_grid(grid, owner):
    if not isinstance(grid, (Grid1D, Grid2D)):
        raise OptionError(f"{owner}: 'grid' must be a Grid1D or Grid2D; got {describe(grid)}")


def _check_field(u, grid, owner, field="u"):
    shape = tuple(jnp.shape(u))
    if shape != grid.shape and not (grid.ndim == 2 and shape == (grid.size,)):
        expected = f"{grid.shape}" + (f" or ({grid.size},)" if grid.ndim == 2 else "")
        raise SolverError(f"{owner}: '{field}' must have the grid's shape {expected}; got shape {shape}")


def _classify_D(D, grid, owner):
    """'scalar', 'cells', 'faces' (1-D) or 'function'; validates shapes eagerly."""
    if callable(D):
        return "function"
    shape = tuple(jnp.shape(D))
    if shape == ():
        return "scalar"
    if shape == grid.shape:
        return "cells"
    if grid.ndim == 1 and shape == (grid.n + 1,):
        return "faces"
    expected = "a number, a function D(u), cell values of shape " + str(grid.shape)
    if grid.ndim == 1:
        expected += f" or face values of shape ({grid.n + 1},)"
    raise OptionError(f"{owner}: diffusivity 'D' must be {expected}; got {describe(D)}")


@dataclass(frozen=True)
class AxisTerms:
    """The diffusion operator along one axis, axis first (shape ``(n, ...)``).

    ``du/dt += (div of interior fluxes + boundary terms) / dx`` with interior conductances
    ``c`` (``D_face / h``, shape ``(n - 1, ...)``) and, at each boundary cell,
    ``-c_lo * u[0] + s_lo`` and ``-c_hi * u[-1] + s_hi``.
    """

    c: Any
    c_lo: Any
    c_hi: Any
    s_lo: Any
    s_hi: Any
    dx: Any  # shape (n, 1, ...) broadcastable


def _boundary(bc, D_b, dx_b, u_b_shape):
    """(c_b, s_b) of one boundary: ``-c_b u_b + s_b`` enters ``dx_b * du_b/dt``."""
    if bc.kind == "dirichlet":
        c_b = D_b / (0.5 * dx_b)
        return c_b, c_b * jnp.broadcast_to(jnp.asarray(bc.value), u_b_shape)
    g = jnp.broadcast_to(jnp.asarray(bc.gradient), u_b_shape)
    return jnp.zeros_like(D_b * g), D_b * g


def axis_terms(u, g1d: Grid1D, D, kind: str, bc_lo, bc_hi) -> AxisTerms:
    """Conductances and boundary terms along axis 0 of ``u`` (``D`` already moved to match)."""
    extra = (1,) * (jnp.ndim(u) - 1)
    h = jnp.asarray(g1d.h).reshape((-1,) + extra)
    dx = jnp.asarray(g1d.dx).reshape((-1,) + extra)
    side = u.shape[1:]
    if kind == "scalar":
        D = jnp.asarray(D)
        D_face = jnp.broadcast_to(D, (g1d.n - 1,) + side)
        D_lo = D_hi = jnp.broadcast_to(D, side)
    elif kind == "faces":
        D_face, D_lo, D_hi = D[1:-1], D[0], D[-1]
    elif kind == "cells":
        D_face = 2.0 * D[1:] * D[:-1] / (D[1:] + D[:-1])
        D_lo, D_hi = D[0], D[-1]
    else:  # function of the density
        Dc = D(u)
        D_face = 0.5 * (Dc[1:] + Dc[:-1])

        def at_boundary(bc, D_cell):
            if bc.kind == "dirichlet":
                return 0.5 * (D_cell + D(jnp.broadcast_to(jnp.asarray(bc.value, dtype=u.dtype), side)))
            return D_cell

        D_lo, D_hi = at_boundary(bc_lo, Dc[0]), at_boundary(bc_hi, Dc[-1])
    c_lo, s_lo = _boundary(bc_lo, D_lo, dx[0], side)
    c_hi, s_hi = _boundary(bc_hi, D_hi, dx[-1], side)
    return AxisTerms(c=D_face / h, c_lo=c_lo, c_hi=c_hi, s_lo=s_lo, s_hi=s_hi, dx=dx)


def _end_masks(n, ndim, dtype=float):
    """NumPy indicator vectors of the first and last cell along axis 0 (broadcastable).

    Boundary terms are added with these masks rather than with ``.at[0].add``: elementwise
    products fuse into one XLA loop, scatters do not (measured: about half the operations of an
    implicit 1-D step).
    """
    first = np.zeros((n,) + (1,) * (ndim - 1), dtype=dtype)
    last = np.zeros_like(first)
    first[0] = 1.0
    last[-1] = 1.0
    return first, last


def apply_axis(u, t: AxisTerms, *, with_source: bool = True):
    """``∂/∂x (D ∂u/∂x)`` along axis 0 from precomputed :class:`AxisTerms`."""
    flux = t.c * (u[1:] - u[:-1])  # D u_x at interior faces
    zero = jnp.zeros_like(u[:1])
    net = jnp.concatenate([flux, zero]) - jnp.concatenate([zero, flux])
    first, last = _end_masks(u.shape[0], jnp.ndim(u))
    lo = -t.c_lo * u[:1] + (t.s_lo if with_source else 0.0)
    hi = -t.c_hi * u[-1:] + (t.s_hi if with_source else 0.0)
    net = net + first * lo + last * hi
    return net / t.dx


def _move(D, kind, axis):
    return jnp.moveaxis(D, axis, 0) if kind == "cells" else D


def all_axis_terms(u, grid, D, bc, owner="diffusion"):
    """The :class:`AxisTerms` of every axis of a field of the grid's shape."""
    kind = _classify_D(D, grid, owner)
    bcs = resolve_bcs(grid.ndim, bc)
    if grid.ndim == 1:
        return [axis_terms(u, grid, D, kind, *bcs[0])]
    out = []
    for axis, g1d in enumerate((grid.gx, grid.gy)):
        ua = jnp.moveaxis(u, axis, 0)
        # a density-dependent D(u) acts cell by cell, so it needs no reordering
        Da = D if kind == "function" else _move(jnp.asarray(D), kind, axis)
        out.append(axis_terms(ua, g1d, Da, kind, *bcs[axis]))
    return out


def diffusion(u, grid, D=1.0, bc="no-flux", *, with_source: bool = True):
    """Matrix-free conservative diffusion ``∇·(D ∇u)`` of a field on a grid.

    Parameters
    ----------
    u : array
        Cell averages, of the grid's shape (in 2-D also the flattened ``(nx * ny,)`` vector).
    grid : Grid1D or Grid2D
    D : number, array or callable
        Diffusivity (see the module docstring); units length²/time.
    bc : boundary conditions
        See :mod:`bayesbio.pde.boundary` (default no-flux on every side).
    with_source : bool
        Include the constant contribution of non-zero boundary values (default True).

    Returns
    -------
    array of ``u``'s shape
        ``du/dt`` from diffusion.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from bayesbio.pde import Grid1D, diffusion
    >>> g = Grid1D(4)
    >>> diffusion(jnp.array([0.0, 0.0, 1.0, 0.0]), g, D=1.0).tolist()
    [0.0, 16.0, -32.0, 16.0]
    """
    _check_grid(grid, "diffusion")
    _check_field(u, grid, "diffusion")
    flat = jnp.shape(u) != grid.shape
    u = jnp.asarray(u)
    u = u.reshape(grid.shape) if flat else u
    terms = all_axis_terms(u, grid, D, bc)
    if grid.ndim == 1:
        out = apply_axis(u, terms[0], with_source=with_source)
    else:
        out = sum(
            jnp.moveaxis(apply_axis(jnp.moveaxis(u, a, 0), t, with_source=with_source), 0, a)
            for a, t in enumerate(terms)
        )
    return out.reshape(-1) if flat else out


def _linear_only(D, grid, owner):
    if _classify_D(D, grid, owner) == "function":
        raise OptionError(
            f"{owner}: a density-dependent diffusivity D(u) makes the operator nonlinear, so it has "
            "no matrix; pass a number or an array of cell values, or use diffusion(u, grid, D) "
            "matrix-free"
        )


def diffusion_matrix(grid, D=1.0, bc="no-flux"):
    """The linear diffusion operator as a dense ``jnp`` matrix (for small linear problems).

    Returns ``A`` of shape ``(n, n)`` in 1-D or ``(nx*ny, nx*ny)`` in 2-D (fields flattened in
    C order, cell ``(i, j)`` at ``i * ny + j``) such that
    ``diffusion(u, grid, D, bc) == A @ u + diffusion_source(grid, D, bc)``. Boundary *values*
    (Dirichlet values, Neumann gradients) only enter the source; the matrix depends on the
    kinds of the conditions. ``A`` is differentiable in ``D``.

    Examples
    --------
    >>> from bayesbio.pde import Grid1D, diffusion_matrix
    >>> diffusion_matrix(Grid1D(3, length=3.0), 1.0, "dirichlet").tolist()
    [[-3.0, 1.0, 0.0], [1.0, -2.0, 1.0], [0.0, 1.0, -3.0]]
    """
    _check_grid(grid, "diffusion_matrix")
    _linear_only(D, grid, "diffusion_matrix")
    resolve_bcs(grid.ndim, bc)  # validate eagerly
    dtype = jnp.result_type(jnp.asarray(D).dtype, float)
    eye = jnp.eye(grid.size, dtype=dtype)

    def column(e):
        return diffusion(e.reshape(grid.shape), grid, D, bc, with_source=False).reshape(-1)

    return jax.vmap(column, out_axes=1)(eye)


def diffusion_source(grid, D=1.0, bc="no-flux"):
    """The constant part of the operator: ``diffusion(0)``, from non-zero boundary values.

    Shape: the grid's shape.
    """
    _check_grid(grid, "diffusion_source")
    _linear_only(D, grid, "diffusion_source")
    dtype = jnp.result_type(jnp.asarray(D).dtype, float)
    return diffusion(jnp.zeros(grid.shape, dtype=dtype), grid, D, bc)


def tridiagonal(terms: AxisTerms):
    """``(lower, diag, upper, source)`` of the 1-D operator from its :class:`AxisTerms`.

    ``lower[0]`` and ``upper[-1]`` are zero, as :func:`jax.lax.linalg.tridiagonal_solve` expects.
    Built from the ``n + 1`` face conductances (boundary faces included) with NumPy masks, no
    scatters, so that XLA fuses it into a few loops.
    """
    c, dx = terms.c, terms.dx
    n = c.shape[0] + 1
    side = c.shape[1:]
    c_lo = jnp.broadcast_to(terms.c_lo, side)[None]
    c_hi = jnp.broadcast_to(terms.c_hi, side)[None]
    faces = jnp.concatenate([c_lo, c, c_hi])  # (n + 1, ...)
    first, last = _end_masks(n, c.ndim)
    lower = (1.0 - first) * faces[:-1] / dx
    upper = (1.0 - last) * faces[1:] / dx
    diag = -(faces[:-1] + faces[1:]) / dx
    source = (first * terms.s_lo + last * terms.s_hi) / dx
    return lower, diag, upper, source


def unit_matrix_np(g1d: Grid1D, bcs) -> np.ndarray:
    """The 1-D operator with ``D = 1`` as a NumPy array (constant, for precomputation)."""
    with jax.ensure_compile_time_eval():
        A = diffusion_matrix(g1d, 1.0, bcs)
    return np.asarray(A, dtype=float)
