"""Structured cell-centred finite-volume grids in one and two dimensions.

A grid is a static description (NumPy arrays, no JAX tracers): the unknowns of a
method-of-lines model are the *cell averages* ``u_i`` of the density over each cell. In one
dimension a grid is given by its cell edges ``x_{1/2} < x_{3/2} < ... < x_{n+1/2}``; the cell
centre ``x_i`` is the midpoint of its edges. Uniform grids are the common case; a non-uniform
1-D grid (e.g. refined near a wound edge) is built with :meth:`Grid1D.from_edges`.

Two-dimensional grids are tensor products of two uniform 1-D grids. A 2-D field has shape
``(nx, ny)`` (``x`` is axis 0, ``"ij"`` indexing); flattened it is in C order, cell
``(i, j)`` at position ``i * ny + j``.
"""

from __future__ import annotations

import math

import numpy as np

from bayesbio.errors import OptionError, describe

__all__ = ["Grid1D", "Grid2D"]


def _positive_int(value, field, owner):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise OptionError(f"{owner}: '{field}' must be a positive integer; got {describe(value)}")
    return int(value)


def _positive_float(value, field, owner):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{owner}: '{field}' must be a positive number; got {describe(value)}") from None
    if not (v > 0) or not math.isfinite(v):
        raise OptionError(f"{owner}: '{field}' must be a positive finite number; got {value!r}")
    return v


def _finite_float(value, field, owner):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{owner}: '{field}' must be a finite number; got {describe(value)}") from None
    if not math.isfinite(v):
        raise OptionError(f"{owner}: '{field}' must be a finite number; got {value!r}")
    return v


class Grid1D:
    """A cell-centred finite-volume grid on an interval.

    Parameters
    ----------
    n : int
        Number of cells (>= 2).
    length : float
        Length of the interval (same unit as positions, e.g. µm).
    start : float
        Left end of the interval.

    Attributes
    ----------
    n : int
        Number of cells.
    edges : ndarray, shape (n + 1,)
        Cell edges (faces), increasing.
    x : ndarray, shape (n,)
        Cell centres (midpoints of the edges).
    dx : ndarray, shape (n,)
        Cell widths.
    h : ndarray, shape (n - 1,)
        Distances between neighbouring centres (the spacing the face gradients use).
    uniform : bool
        Whether all cells have the same width.

    Examples
    --------
    >>> g = Grid1D(4, length=2.0)
    >>> g.x.tolist(), float(g.dx[0])
    ([0.25, 0.75, 1.25, 1.75], 0.5)
    """

    ndim = 1

    def __init__(self, n: int, length: float = 1.0, start: float = 0.0):
        n = _positive_int(n, "n", "Grid1D")
        if n < 2:
            raise OptionError(f"Grid1D: 'n' must be at least 2 cells; got {n}")
        length = _positive_float(length, "length", "Grid1D")
        start = _finite_float(start, "start", "Grid1D")
        self._set_edges(start + length * np.arange(n + 1) / n, uniform=True)

    @classmethod
    def from_edges(cls, edges) -> Grid1D:
        """A (possibly non-uniform) grid from its strictly increasing cell edges."""
        arr = np.asarray(edges, dtype=float)
        if arr.ndim != 1 or arr.size < 3:
            raise OptionError(
                f"Grid1D.from_edges: 'edges' must be a 1-D array of at least 3 edges (2 cells); "
                f"got {describe(edges)}"
            )
        if not np.all(np.isfinite(arr)):
            raise OptionError("Grid1D.from_edges: 'edges' contains NaN or inf")
        widths = np.diff(arr)
        if np.any(widths <= 0):
            bad = int(np.argmax(widths <= 0))
            raise OptionError(
                "Grid1D.from_edges: 'edges' must be strictly increasing; "
                f"edges[{bad}] = {arr[bad]} is followed by edges[{bad + 1}] = {arr[bad + 1]}"
            )
        grid = cls.__new__(cls)
        grid._set_edges(arr, uniform=bool(np.allclose(widths, widths[0], rtol=1e-12, atol=0.0)))
        return grid

    def _set_edges(self, edges, *, uniform):
        self.edges = np.asarray(edges, dtype=float)
        self.edges.setflags(write=False)
        self.n = self.edges.size - 1
        self.x = 0.5 * (self.edges[1:] + self.edges[:-1])
        self.dx = np.diff(self.edges)
        self.h = np.diff(self.x)
        for a in (self.x, self.dx, self.h):
            a.setflags(write=False)
        self.uniform = uniform

    @property
    def start(self) -> float:
        return float(self.edges[0])

    @property
    def stop(self) -> float:
        return float(self.edges[-1])

    @property
    def length(self) -> float:
        return float(self.edges[-1] - self.edges[0])

    @property
    def shape(self) -> tuple[int]:
        return (self.n,)

    @property
    def size(self) -> int:
        return self.n

    @property
    def volumes(self) -> np.ndarray:
        """Cell sizes (widths); ``sum(volumes * u)`` is the total mass."""
        return self.dx

    def __repr__(self) -> str:
        kind = "uniform" if self.uniform else "non-uniform"
        return f"Grid1D(n={self.n}, [{self.start:g}, {self.stop:g}], {kind})"


class Grid2D:
    """A uniform cell-centred finite-volume grid on a rectangle ``[x0, x0+lx] × [y0, y0+ly]``.

    Parameters
    ----------
    nx, ny : int
        Number of cells along x (axis 0) and y (axis 1), each >= 2.
    lx, ly : float
        Side lengths.
    x0, y0 : float
        Lower-left corner.

    Attributes
    ----------
    gx, gy : Grid1D
        The 1-D grids along each axis.
    x, y : ndarray
        Cell-centre coordinates along each axis, shapes ``(nx,)`` and ``(ny,)``.
    X, Y : ndarray, shape (nx, ny)
        Cell-centre coordinates of every cell (``"ij"`` indexing).
    shape : (nx, ny)
        Shape of a field on this grid; ``size = nx * ny`` unknowns, flattened in C order.
    """

    ndim = 2

    def __init__(self, nx: int, ny: int, lx: float = 1.0, ly: float = 1.0, x0: float = 0.0, y0: float = 0.0):
        self.gx = Grid1D(nx, lx, x0)
        self.gy = Grid1D(ny, ly, y0)
        self.X, self.Y = np.meshgrid(self.gx.x, self.gy.x, indexing="ij")
        self.X.setflags(write=False)
        self.Y.setflags(write=False)

    @property
    def nx(self) -> int:
        return self.gx.n

    @property
    def ny(self) -> int:
        return self.gy.n

    @property
    def x(self) -> np.ndarray:
        return self.gx.x

    @property
    def y(self) -> np.ndarray:
        return self.gy.x

    @property
    def dx(self) -> float:
        return float(self.gx.dx[0])

    @property
    def dy(self) -> float:
        return float(self.gy.dx[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nx, self.ny)

    @property
    def size(self) -> int:
        return self.nx * self.ny

    @property
    def volumes(self) -> np.ndarray:
        """Cell areas, shape ``(nx, ny)``; ``sum(volumes * u)`` is the total mass."""
        return np.full(self.shape, self.dx * self.dy)

    def __repr__(self) -> str:
        return (
            f"Grid2D(nx={self.nx}, ny={self.ny}, [{self.gx.start:g}, {self.gx.stop:g}] × "
            f"[{self.gy.start:g}, {self.gy.stop:g}])"
        )
