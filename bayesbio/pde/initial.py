"""Initial conditions: from measured profiles (interpolated onto the grid) or from functions.

Measured densities at scattered positions become cell values by linear interpolation at the
cell centres (constant extrapolation beyond the first and last measurement), or, when the
measurement bins are coarser than the grid, by assigning each cell the value of the bin that
contains its centre (``method="nearest"``, what a column-count histogram means).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from bayesbio.errors import DataError, OptionError, describe
from bayesbio.pde.grids import Grid1D, Grid2D

__all__ = ["from_function", "interpolate_profile"]


def interpolate_profile(grid: Grid1D, positions, values, *, method: str = "linear"):
    """Cell values of a 1-D profile measured at ``positions``.

    Parameters
    ----------
    grid : Grid1D
    positions : array, shape (m,)
        Measurement positions (strictly increasing, same unit as the grid).
    values : array, shape (m,)
        Measured densities; may be a JAX array (e.g. depend on parameters).
    method : {"linear", "nearest"}
        Linear interpolation at cell centres, or the value at the nearest position.

    Returns
    -------
    jnp array, shape (n,)
    """
    if not isinstance(grid, Grid1D):
        raise OptionError(f"interpolate_profile: 'grid' must be a Grid1D; got {describe(grid)}")
    if method not in ("linear", "nearest"):
        raise OptionError(f"interpolate_profile: 'method' must be 'linear' or 'nearest'; got {method!r}")
    pos = np.asarray(positions, dtype=float)
    if pos.ndim != 1 or pos.size < 1:
        raise DataError(f"interpolate_profile: 'positions' must be a non-empty 1-D array; got {describe(positions)}")
    if not np.all(np.isfinite(pos)) or np.any(np.diff(pos) <= 0):
        raise DataError("interpolate_profile: 'positions' must be finite and strictly increasing")
    if tuple(np.shape(values) if isinstance(values, (list, tuple)) else jnp.shape(values)) != pos.shape:
        raise DataError(
            f"interpolate_profile: 'values' must have the shape of 'positions' {pos.shape}; "
            f"got {np.shape(values) if isinstance(values, (list, tuple)) else jnp.shape(values)}"
        )
    values = jnp.asarray(values)
    if method == "linear":
        return jnp.interp(jnp.asarray(grid.x), jnp.asarray(pos), values)
    idx = np.abs(grid.x[:, None] - pos[None, :]).argmin(axis=1)
    return values[idx]


def from_function(grid, fn):
    """Cell-centre values ``fn(x)`` (1-D) or ``fn(X, Y)`` (2-D) of a function of position."""
    if isinstance(grid, Grid1D):
        out = fn(jnp.asarray(grid.x))
    elif isinstance(grid, Grid2D):
        out = fn(jnp.asarray(grid.X), jnp.asarray(grid.Y))
    else:
        raise OptionError(f"from_function: 'grid' must be a Grid1D or Grid2D; got {describe(grid)}")
    out = jnp.asarray(out)
    if out.shape != grid.shape:
        raise DataError(f"from_function: fn must return the grid's shape {grid.shape}; got {out.shape}")
    return out
