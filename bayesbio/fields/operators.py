"""Linear forward operators for inverse problems on :mod:`bayesbio.pde` grids.

* :func:`heat_semigroup` — ``exp(T D Laplacian_h)``, the solution operator of the heat equation
  ``du/dt = D Laplacian u`` after time ``T``, built from the finite-volume diffusion operator of
  :func:`bayesbio.pde.diffusion_matrix`. On a uniform grid that operator is symmetric, so its
  eigendecomposition (computed once, in NumPy, for ``D = 1``) gives the semigroup in closed
  form: ``V diag(exp(T D lambda)) V^T``, differentiable in ``T`` and ``D``;
  :func:`heat_semigroup_apply` applies it to a field without forming the matrix.
* :func:`convolution_matrix` — discrete convolution with a kernel of physical width (the blur of
  a measuring device), quadrature by the midpoint rule on the cells; ``bayesbio.pde`` has no
  convolution block, so it lives here.
* :func:`interpolation_matrix` — point observations: linear interpolation from cell centres to
  arbitrary locations (constant beyond the outermost centres).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from bayesbio.errors import OptionError, describe
from bayesbio.fields._grid import as_field_grid

__all__ = ["convolution_matrix", "heat_eigensystem", "heat_semigroup", "heat_semigroup_apply", "interpolation_matrix"]


@functools.lru_cache(maxsize=32)
def _eig_cached(kind, shape, lower, upper, bc):
    from bayesbio.pde import Grid1D, Grid2D, diffusion_matrix

    if kind == "Grid1D":
        grid = Grid1D(shape[0], upper[0] - lower[0], lower[0])
    else:
        grid = Grid2D(shape[0], shape[1], upper[0] - lower[0], upper[1] - lower[1], lower[0], lower[1])

    with jax.ensure_compile_time_eval():
        a = np.asarray(diffusion_matrix(grid, 1.0, bc), dtype=float)
    if not np.allclose(a, a.T, atol=1e-9 * np.abs(a).max()):
        raise OptionError("heat_semigroup needs a symmetric diffusion operator (a uniform grid)")
    lam, vec = np.linalg.eigh(0.5 * (a + a.T))
    lam = np.minimum(lam, 0.0)
    lam.setflags(write=False)
    vec.setflags(write=False)
    return lam, vec


def heat_eigensystem(grid, bc="no-flux"):
    """Eigenvalues (<= 0) and orthonormal eigenvectors of ``diffusion_matrix(grid, 1.0, bc)``."""
    from bayesbio.pde import Grid1D, Grid2D

    if not isinstance(grid, (Grid1D, Grid2D)):
        raise OptionError(f"'grid' must be a bayesbio.pde Grid1D or Grid2D; got {describe(grid)}")
    if not isinstance(bc, str):
        raise OptionError(f"'bc' must be a string shortcut ('no-flux', 'dirichlet'); got {describe(bc)}")
    g = as_field_grid(grid)  # also rejects non-uniform grids
    return _eig_cached(type(grid).__name__, g.shape, g.lower, g.upper, bc)


def heat_semigroup(grid, T, D=1.0, bc="no-flux"):
    """Dense ``exp(T * diffusion_matrix(grid, D, bc))`` (maps ``u(., 0)`` to ``u(., T)``, flattened).

    ``T`` (time) and ``D`` (a constant diffusivity, length^2/time) may be traced JAX scalars.
    """
    lam, vec = heat_eigensystem(grid, bc)
    decay = jnp.exp(jnp.asarray(T) * jnp.asarray(D) * jnp.asarray(lam))
    v = jnp.asarray(vec)
    return (v * decay[None, :]) @ v.T


def heat_semigroup_apply(grid, u, T, D=1.0, bc="no-flux"):
    """``heat_semigroup(grid, T, D, bc) @ u`` without forming the matrix: ``V (exp(T D lambda) * (V^T u))``.

    Two matrix-vector products (``O(n^2)``) instead of the ``O(n^3)`` product that builds the
    dense semigroup when ``T`` or ``D`` are traced values (as inside a model, where the data
    are arguments of the compiled potential). ``u`` is flattened as in :func:`heat_semigroup`.
    """
    lam, vec = heat_eigensystem(grid, bc)
    decay = jnp.exp(jnp.asarray(T) * jnp.asarray(D) * jnp.asarray(lam))
    v = jnp.asarray(vec)
    return v @ (decay * (v.T @ jnp.ravel(u)))


def convolution_matrix(grid, width, *, kernel="gaussian", boundary="zero"):
    """Dense blur operator ``(K u)_i = sum_j k(x_i - x_j) u_j h`` on a 1-D grid (a ``jnp`` array).

    Parameters
    ----------
    grid : int, FieldGrid or bayesbio.pde.Grid1D
    width : float or JAX scalar
        Kernel width in physical units (may be a sampled parameter): the sd of a
        ``"gaussian"`` kernel, the half-width of a ``"box"`` kernel.
    kernel : {"gaussian", "box"}
    boundary : {"zero", "periodic"}
        ``"zero"``: the signal is zero outside the domain (rows near the ends lose mass, as
        a real device does); ``"periodic"``: distances wrap around the domain.
    """
    g = as_field_grid(grid)
    if g.ndim != 1:
        raise OptionError("convolution_matrix: a 1-D grid is required")
    if isinstance(width, bool) or (isinstance(width, (int, float)) and not width > 0):
        raise OptionError(f"'width' must be a positive length; got {describe(width)}")
    x = g.axis(0)
    h = g.spacing[0]
    r = x[:, None] - x[None, :]
    if boundary == "periodic":
        r = (r + 0.5 * g.lengths[0]) % g.lengths[0] - 0.5 * g.lengths[0]
    elif boundary != "zero":
        raise OptionError(f"'boundary' must be 'zero' or 'periodic'; got {describe(boundary)}")
    r = jnp.asarray(r)
    if kernel == "gaussian":
        k = jnp.exp(-0.5 * (r / width) ** 2) / (jnp.sqrt(2 * jnp.pi) * width)
    elif kernel == "box":
        k = (jnp.abs(r) <= width).astype(r.dtype) / (2 * width)
    else:
        raise OptionError(f"'kernel' must be 'gaussian' or 'box'; got {describe(kernel)}")
    return k * h


def interpolation_matrix(grid, points) -> np.ndarray:
    """``(len(points), n)`` matrix of linear interpolation from the cell centres of a 1-D grid."""
    g = as_field_grid(grid)
    if g.ndim != 1:
        raise OptionError("interpolation_matrix: a 1-D grid is required")
    p = np.asarray(points, dtype=float).ravel()
    if p.size == 0 or not np.all(np.isfinite(p)):
        raise OptionError(f"'points' must be finite locations; got {describe(points)}")
    if p.min() < g.lower[0] or p.max() > g.upper[0]:
        raise OptionError(f"'points' must lie in the grid's domain [{g.lower[0]}, {g.upper[0]}]")
    x = g.axis(0)
    n = x.size
    pos = np.clip((p - x[0]) / g.spacing[0], 0.0, n - 1.0)
    i = np.minimum(np.floor(pos).astype(int), n - 2)
    w = pos - i
    out = np.zeros((p.size, n))
    out[np.arange(p.size), i] = 1.0 - w
    out[np.arange(p.size), i + 1] += w
    return out
