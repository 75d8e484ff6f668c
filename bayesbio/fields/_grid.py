"""Regular cell-centred grids as the field priors see them.

A field lives on the cell centres of a rectangular grid: in 1-D ``n`` cells of width
``h = L / n`` on ``[lower, upper]`` with centres ``lower + (i + 1/2) h``; in 2-D the tensor
product of two such axes, values stored with shape ``(nx, ny)`` (``x`` first).

The priors accept a :class:`FieldGrid`, an integer ``n`` (``n`` cells on ``[0, 1]``), or a grid
of :mod:`bayesbio.pde` (:class:`~bayesbio.pde.Grid1D` with uniform cells, or
:class:`~bayesbio.pde.Grid2D`); the cell centres are the same as the PDE grid's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayesbio.errors import OptionError, describe

__all__ = ["FieldGrid", "as_field_grid"]


@dataclass(frozen=True)
class FieldGrid:
    """Cell-centred rectangular grid: ``shape`` cells between ``lower`` and ``upper`` per axis."""

    shape: tuple[int, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def __post_init__(self):
        if len(self.shape) not in (1, 2) or len(self.lower) != len(self.shape) or len(self.upper) != len(self.shape):
            raise OptionError(
                f"'grid' must be 1-D or 2-D with one (lower, upper) per axis; got shape {self.shape}, "
                f"lower {self.lower}, upper {self.upper}"
            )
        for n in self.shape:
            if not isinstance(n, (int, np.integer)) or n < 2:
                raise OptionError(f"'grid' needs at least 2 cells per axis; got shape {self.shape}")
        for lo, hi in zip(self.lower, self.upper):
            if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                raise OptionError(f"'grid' bounds must be finite with upper > lower; got [{lo}, {hi}]")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def lengths(self) -> tuple[float, ...]:
        return tuple(hi - lo for lo, hi in zip(self.lower, self.upper))

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(length / n for length, n in zip(self.lengths, self.shape))

    @property
    def cell_volume(self) -> float:
        return float(np.prod(self.spacing))

    def axis(self, k: int) -> np.ndarray:
        """Cell centres along axis ``k``."""
        h = self.spacing[k]
        return self.lower[k] + (np.arange(self.shape[k]) + 0.5) * h

    @property
    def centres(self) -> tuple[np.ndarray, ...]:
        """Coordinates of the cell centres, one array of ``shape`` per axis."""
        return tuple(np.meshgrid(*[self.axis(k) for k in range(self.ndim)], indexing="ij"))


def _from_pde(grid) -> FieldGrid | None:
    """A :class:`bayesbio.pde.Grid1D` / ``Grid2D`` (duck-typed: the priors do not import the PDE package)."""
    gx, gy = getattr(grid, "gx", None), getattr(grid, "gy", None)
    axes = [gx, gy] if gx is not None and gy is not None else [grid]
    shape, lower, upper = [], [], []
    for g in axes:
        n, start, length = getattr(g, "n", None), getattr(g, "start", None), getattr(g, "length", None)
        if n is None or start is None or length is None:
            return None
        if not getattr(g, "uniform", True):
            raise OptionError("'grid': field priors need a uniform grid; got a non-uniform Grid1D")
        shape.append(int(n))
        lower.append(float(start))
        upper.append(float(start) + float(length))
    return FieldGrid(tuple(shape), tuple(lower), tuple(upper))


def as_field_grid(grid) -> FieldGrid:
    """Normalise the accepted grid descriptions to a :class:`FieldGrid`."""
    if isinstance(grid, FieldGrid):
        return grid
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        return FieldGrid((int(grid),), (0.0,), (1.0,))
    out = _from_pde(grid)
    if out is None:
        raise OptionError(
            "'grid' must be a FieldGrid, a number of cells on [0, 1], or a bayesbio.pde grid; "
            f"got {describe(grid)}"
        )
    return out
