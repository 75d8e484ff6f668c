"""Linear solves with ``a0 I - h L`` for implicit diffusion steps, exploiting structure.

``L`` is the finite-volume diffusion operator frozen at a coefficient state. No dense
``N × N`` matrix is ever formed:

1-D, any diffusivity
    ``L`` is tridiagonal: :func:`jax.lax.linalg.tridiagonal_solve` (LAPACK ``gtsv`` on CPU,
    ``O(n)``; the same primitive that ``lineax.Tridiagonal`` wraps, called directly to keep
    the per-step operation count low). Differentiable in both modes.
2-D, constant diffusivity
    ``L = D (L_x ⊗ I + I ⊗ L_y)`` is a Kronecker sum of two small symmetric 1-D operators
    (uniform grid), diagonalised once in NumPy: the solve is two ``n × n`` matrix products
    each way and a division (fast diagonalisation, Lynch, Rice & Thomas 1964), exact.
2-D, spatially varying or density-dependent diffusivity
    ``a0 I - h L`` is symmetric positive definite on a uniform grid: matrix-free conjugate
    gradients (:func:`jax.scipy.sparse.linalg.cg`, implicit differentiation) with a Jacobi
    preconditioner; a residual above the tolerance marks the solve as failed.
"""

from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from bayesbio.pde.boundary import resolve_bcs
from bayesbio.pde.diffusion import AxisTerms, apply_axis, tridiagonal, unit_matrix_np

__all__ = ["FastDiagonalisation", "cg_solve", "tridiagonal_solve", "tridiagonal_solve_parts"]

#: Relative residual above which a conjugate-gradient solve counts as failed.
CG_TOL = 1e-10
CG_MAXITER = 500


def tridiagonal_solve(terms: AxisTerms, a0, h, rhs):
    """Solve ``(a0 I - h L) x = rhs + h b`` for the 1-D operator ``L`` and source ``b`` of ``terms``."""
    return tridiagonal_solve_parts(tridiagonal(terms), a0, h, rhs)


def tridiagonal_solve_parts(parts, a0, h, rhs):
    """As :func:`tridiagonal_solve`, from ``(lower, diag, upper, source)`` already assembled.

    With a diffusivity that does not depend on the density, the parts are assembled once per
    solve (outside the time loop) and each step costs a few fused elementwise operations and one
    ``O(n)`` LAPACK ``gtsv`` call.
    """
    lower, diag, upper, source = parts
    b = rhs + h * source
    x = jax.lax.linalg.tridiagonal_solve(-h * lower, a0 - h * diag, -h * upper, b[:, None])
    return x[:, 0]


@lru_cache(maxsize=32)
def _eigh_unit(g1d, bcs):
    lam, V = np.linalg.eigh(unit_matrix_np(g1d, bcs))
    return lam, V


class FastDiagonalisation:
    """Exact solver of ``(a0 I - h D (L_x ⊕ L_y)) x = rhs`` on a uniform 2-D grid."""

    def __init__(self, grid, bc):
        bcs = resolve_bcs(2, bc)
        kinds = tuple(tuple(b.kind for b in pair) for pair in bcs)
        # the eigen-decomposition depends only on the grid and the kinds of the conditions
        self.lx, self.Vx = _eigh_unit(grid.gx, tuple(_kind_bc(k) for k in kinds[0]))
        self.ly, self.Vy = _eigh_unit(grid.gy, tuple(_kind_bc(k) for k in kinds[1]))

    def solve(self, D, a0, h, rhs):
        Vx, Vy = jnp.asarray(self.Vx), jnp.asarray(self.Vy)
        r = Vx.T @ rhs @ Vy
        r = r / (a0 - h * D * (jnp.asarray(self.lx)[:, None] + jnp.asarray(self.ly)[None, :]))
        return Vx @ r @ Vy.T


def _kind_bc(kind):
    return "dirichlet" if kind == "dirichlet" else "no-flux"


def _diagonal(terms_2d):
    """Diagonal of ``L`` (2-D, shape (nx, ny)) from the per-axis terms."""
    out = 0.0
    for axis, t in enumerate(terms_2d):
        _, diag, _, _ = tridiagonal(t)
        out = out + jnp.moveaxis(diag, 0, axis)
    return out


def cg_solve(terms_2d, a0, h, rhs, x0):
    """Matrix-free preconditioned CG for ``(a0 I - h L) x = rhs``; returns ``(x, failed)``."""

    def L(v):
        return sum(
            jnp.moveaxis(apply_axis(jnp.moveaxis(v, a, 0), t, with_source=False), 0, a)
            for a, t in enumerate(terms_2d)
        )

    def A(v):
        return a0 * v - h * L(v)

    diag = a0 - h * _diagonal(terms_2d)
    x, _ = jax.scipy.sparse.linalg.cg(A, rhs, x0=x0, tol=CG_TOL * 1e-2, maxiter=CG_MAXITER, M=lambda v: v / diag)
    residual = jnp.linalg.norm(A(x) - rhs)
    failed = ~(residual <= CG_TOL * jnp.maximum(jnp.linalg.norm(rhs), 1e-300) * 1e2)
    return x, jax.lax.stop_gradient(failed)
