"""Eigenbases of the Laplacian on a rectangular grid: the engine of the Gaussian field priors.

Every Gaussian prior in :mod:`bayesbio.fields` is a function of the Laplacian,
``u = B (c(lambda) * xi)`` with ``xi ~ N(0, I)`` (the whitened coordinates), where
``(lambda_j, B[:, j])`` are eigenpairs of ``-Laplacian`` and ``c`` the spectral weights.

Two kinds of basis:

* **discrete** — the exact eigenpairs of the 5-point (2-D) / 3-point (1-D) finite-difference
  ``-Laplacian_h`` of the cell-centred grid with the chosen boundary condition. A weight
  ``c(lambda) = (tau^2 h^d (kappa^2 + lambda)^alpha)^(-1/2)`` then gives *exactly* the GMRF with
  the sparse precision ``Q = tau^2 h^d (kappa^2 - Laplacian_h)^alpha`` (the SPDE discretisation
  of Lindgren, Rue & Lindström 2011, lumped mass). Columns are scaled by ``h^(-d/2)`` so they
  approximate L2-normalised eigenfunctions.
* **continuous** — the analytic L2-normalised eigenfunctions of ``-Laplacian`` on the domain
  (cosines for Neumann, sines for Dirichlet, Fourier for periodic), evaluated at the cell
  centres and truncated to the ``m`` smoothest modes: a truncated Karhunen–Loève expansion
  whose coefficients do not depend on the grid at all.

2-D bases are tensor products: ``lambda_jk = lambda_j^x + lambda_k^y`` and the field is
``Bx @ C @ By.T``, which costs two small matrix products instead of an ``N x N`` one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from bayesbio.errors import OptionError, describe
from bayesbio.fields._grid import FieldGrid

__all__ = ["BOUNDARIES", "SpectralBasis", "continuous_basis", "discrete_basis", "laplacian_1d", "neg_laplacian_apply"]

BOUNDARIES = ("neumann", "dirichlet", "periodic")


def check_boundary(boundary: str) -> str:
    if boundary not in BOUNDARIES:
        raise OptionError(f"'boundary' must be one of {list(BOUNDARIES)}; got {describe(boundary)}")
    return boundary


def laplacian_1d(n: int, h: float, boundary: str) -> np.ndarray:
    """Dense ``-d^2/dx^2`` (3-point, cell-centred) with the wall condition built into the ghost cell.

    Neumann: zero gradient at the wall (ghost = first cell); Dirichlet: zero value at the wall
    (ghost = minus the first cell); periodic: wrap-around.
    """
    check_boundary(boundary)
    a = 2.0 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    if boundary == "neumann":
        a[0, 0] = a[-1, -1] = 1.0
    elif boundary == "dirichlet":
        a[0, 0] = a[-1, -1] = 3.0
    else:
        a[0, -1] = a[-1, 0] = -1.0
    return a / h**2


@functools.lru_cache(maxsize=64)
def _eigh_1d(n: int, h: float, boundary: str):
    lam, vec = np.linalg.eigh(laplacian_1d(n, h, boundary))
    lam = np.clip(lam, 0.0, None)  # the Neumann/periodic null mode is 0 up to rounding
    if boundary != "dirichlet":
        lam[0] = 0.0
        vec[:, 0] = 1.0 / np.sqrt(n)  # the constant, exactly
    vec.setflags(write=False)
    lam.setflags(write=False)
    return lam, vec


def _continuous_1d(x: np.ndarray, lower: float, length: float, boundary: str, m: int):
    """First ``m`` L2-normalised eigenfunctions of -d^2/dx^2 on [lower, lower + length], at x."""
    s = (x - lower) / length
    if boundary == "neumann":
        k = np.arange(m)
        lam = (np.pi * k / length) ** 2
        phi = np.cos(np.pi * np.outer(s, k)) * np.sqrt(2.0 / length)
        phi[:, 0] = 1.0 / np.sqrt(length)
    elif boundary == "dirichlet":
        k = np.arange(1, m + 1)
        lam = (np.pi * k / length) ** 2
        phi = np.sin(np.pi * np.outer(s, k)) * np.sqrt(2.0 / length)
    else:
        # 1, cos(2 pi s), sin(2 pi s), cos(4 pi s), ...
        k = (np.arange(m) + 1) // 2
        lam = (2.0 * np.pi * k / length) ** 2
        phi = np.empty((x.size, m))
        phi[:, 0] = 1.0 / np.sqrt(length)
        for j in range(1, m):
            f = np.cos if j % 2 == 1 else np.sin
            phi[:, j] = f(2.0 * np.pi * k[j] * s) * np.sqrt(2.0 / length)
    return lam, phi


@dataclass(frozen=True, eq=False)
class SpectralBasis:
    """Eigenpairs of -Laplacian on a grid; see the module docstring.

    ``factors[k]`` has shape ``(shape[k], K_k)`` and ``axis_eigenvalues[k]`` shape ``(K_k,)``.
    ``active`` (2-D truncated bases only) lists the flat indices of the kept modes.
    """

    grid: FieldGrid
    factors: tuple[np.ndarray, ...]
    axis_eigenvalues: tuple[np.ndarray, ...]
    active: np.ndarray | None = None
    kind: str = "discrete"

    @functools.cached_property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalue of every mode, flat, in the order of the whitened coordinates."""
        if len(self.factors) == 1:
            return np.asarray(self.axis_eigenvalues[0])
        lam = np.add.outer(self.axis_eigenvalues[0], self.axis_eigenvalues[1]).ravel()
        return lam if self.active is None else lam[self.active]

    @property
    def n_modes(self) -> int:
        return int(self.eigenvalues.size)

    def apply(self, coeffs):
        """Field on the grid (``grid.shape``) from mode coefficients (``(..., n_modes)``)."""
        if len(self.factors) == 1:
            return coeffs @ jnp.asarray(self.factors[0]).T
        bx, by = (jnp.asarray(f) for f in self.factors)
        kx, ky = bx.shape[1], by.shape[1]
        if self.active is not None:
            full = jnp.zeros(coeffs.shape[:-1] + (kx * ky,), coeffs.dtype)
            coeffs = full.at[..., self.active].set(coeffs)
        c = coeffs.reshape(coeffs.shape[:-1] + (kx, ky))
        return jnp.einsum("ij,...jk,lk->...il", bx, c, by)

    def matrix(self) -> np.ndarray:
        """Dense ``(grid.size, n_modes)`` matrix of :meth:`apply` (small grids, oracles)."""
        if len(self.factors) == 1:
            return np.asarray(self.factors[0])
        full = np.kron(self.factors[0], self.factors[1])
        return full if self.active is None else full[:, self.active]


def discrete_basis(grid: FieldGrid, boundary: str) -> SpectralBasis:
    """Exact eigenpairs of the finite-difference -Laplacian, columns scaled by ``h^(-d/2)``."""
    check_boundary(boundary)
    factors, lams = [], []
    for k in range(grid.ndim):
        h = grid.spacing[k]
        lam, vec = _eigh_1d(grid.shape[k], float(h), boundary)
        factors.append(vec / np.sqrt(h))
        lams.append(lam)
    return SpectralBasis(grid, tuple(factors), tuple(lams), None, "discrete")


def continuous_basis(grid: FieldGrid, boundary: str, n_modes, *, margin: float = 0.0) -> SpectralBasis:
    """The ``n_modes`` smoothest analytic eigenfunctions of -Laplacian, evaluated at the cell centres.

    In 2-D the modes with the smallest ``lambda_j^x + lambda_k^y`` are kept (ties broken by
    index); the candidate set per axis is ``n_modes`` long so no kept mode is missed.
    ``margin``: the eigenfunctions are those of the domain extended by exactly ``margin`` per
    side (no rounding to cells), evaluated at the grid's own centres.
    """
    check_boundary(boundary)
    if isinstance(n_modes, bool) or not isinstance(n_modes, (int, np.integer)) or n_modes < 1:
        raise OptionError(f"'n_modes' must be a positive integer; got {describe(n_modes)}")
    m = int(n_modes)
    factors, lams = [], []
    for k in range(grid.ndim):
        lam, phi = _continuous_1d(grid.axis(k), grid.lower[k] - margin, grid.lengths[k] + 2 * margin, boundary, m)
        factors.append(phi)
        lams.append(lam)
    active = None
    if grid.ndim == 2:
        total = np.add.outer(lams[0], lams[1]).ravel()
        active = np.sort(np.argsort(total, kind="stable")[:m])
    return SpectralBasis(grid, tuple(factors), tuple(lams), active, "continuous")


def neg_laplacian_apply(u, grid: FieldGrid, boundary: str):
    """``-Laplacian_h u`` by the sparse stencil (the same operator :func:`laplacian_1d` builds)."""
    out = jnp.zeros_like(u)
    for axis in range(grid.ndim):
        h = grid.spacing[axis]
        first = jnp.take(u, jnp.array([0]), axis=axis)
        last = jnp.take(u, jnp.array([u.shape[axis] - 1]), axis=axis)
        if boundary == "neumann":
            lo, hi = first, last
        elif boundary == "dirichlet":
            lo, hi = -first, -last
        else:
            lo, hi = last, first
        padded = jnp.concatenate([lo, u, hi], axis=axis)
        n = u.shape[axis]
        left = jax_slice(padded, 0, n, axis)
        right = jax_slice(padded, 2, n + 2, axis)
        out = out + (2.0 * u - left - right) / h**2
    return out


def jax_slice(x, start, stop, axis):
    idx = [slice(None)] * x.ndim
    idx[axis] = slice(start, stop)
    return x[tuple(idx)]
