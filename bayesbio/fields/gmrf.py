"""GMRF smoothness priors: random-walk (order 1) and curvature (order 2) penalties on a grid.

The prior density is ``p(u) ∝ exp(-1/(2 sigma^2) h^d ||(-Laplacian_h)^(order/2) (u - m)||^2)``,
the finite-difference version of ``int |D^order u|^2 dx / (2 sigma^2)``. In 1-D with order 1 the
increments ``u_{i+1} - u_i`` are ``N(0, sigma^2 h)`` (Brownian motion with ``sigma`` per square
root of length), with order 2 the second differences are ``N(0, sigma^2 h^3)`` (integrated
Brownian motion). ``sigma`` is a physical quantity, so refining the grid keeps the prior's
meaning; the pointwise variance stays finite as ``h -> 0`` when ``order > d/2`` (in 2-D use
order 2; order 1 diverges logarithmically, as the Gaussian free field does).

Boundary handling (what the prior assumes at the walls):

``"neumann"``  free ends (zero gradient): the prior is intrinsic — the constant is not
               penalised — and gets a proper ``N(0, mean_sd^2)`` prior on the field's average.
``"dirichlet"`` the field is pinned to ``mean`` at the walls (proper without ``mean_sd``).
``"periodic"``  wrap-around; intrinsic as Neumann, with the same ``mean_sd``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
from scipy import sparse

from bayesbio.errors import OptionError, describe
from bayesbio.fields._base import check_hyper
from bayesbio.fields._spectral import discrete_basis, laplacian_1d, neg_laplacian_apply
from bayesbio.fields.gaussian import GaussianFieldDistribution, SpectralGaussianPrior

__all__ = ["GMRFSmoothness"]


class GMRFSmoothness(SpectralGaussianPrior):
    """Intrinsic-GMRF smoothness prior of ``order`` 1 or 2 with boundary handling.

    Parameters
    ----------
    grid : FieldGrid, int or bayesbio.pde grid
    sigma : float or numpyro distribution
        Scale of the ``order``-th derivative (see the module docstring); a distribution makes
        it a hyperprior (site ``{name}_sigma``).
    order : {1, 2}
    boundary : {"neumann", "dirichlet", "periodic"}
    mean_sd : float
        Prior sd of the field's average (the unpenalised constant) for Neumann/periodic.
    mean : float or array
        Prior mean (the level the field is pinned to with Dirichlet).
    """

    def __init__(self, grid, *, sigma=1.0, order=2, boundary="neumann", mean_sd=1.0, mean=0.0):
        super().__init__(grid)
        if order not in (1, 2) or isinstance(order, bool):
            raise OptionError(f"'order' must be 1 or 2; got {describe(order)}")
        self.order = int(order)
        self.boundary = self._check_boundary(boundary)
        self.hyper = {"sigma": check_hyper("sigma", sigma)}
        self.mean_sd = check_hyper("mean_sd", mean_sd)
        if not isinstance(self.mean_sd, float):
            raise OptionError("'mean_sd' must be a number")
        self._set_mean(mean)
        self.basis = discrete_basis(self.grid, self.boundary)
        lam = np.asarray(self.basis.eigenvalues)
        self._null = lam <= 1e-9 * max(lam.max(), 1.0)
        self._domain = float(np.prod(self.grid.lengths))

    def weights(self, *, sigma):
        lam = jnp.asarray(np.where(self._null, 1.0, self.basis.eigenvalues))
        c = sigma * lam ** (-self.order / 2.0)
        return jnp.where(jnp.asarray(self._null), self.mean_sd * np.sqrt(self._domain), c)

    def distribution(self, **hyper):
        """Centred density: sparse stencil ``h^d (-Laplacian_h)^order / sigma^2`` plus the prior of the average."""
        h = self.fixed_hyper(**hyper)
        c = self.weights(**h)
        grid, bc, order, vol, sigma = self.grid, self.boundary, self.order, self.grid.cell_volume, h["sigma"]
        has_null = bool(self._null.any())
        mean_sd = self.mean_sd

        def apply(u):
            v = u
            for _ in range(order):
                v = neg_laplacian_apply(v, grid, bc)
            out = vol * v / sigma**2
            if has_null:  # h^d/(mean_sd^2 |D|) * 1 1^T u  ==  mean(u)/mean_sd^2 / N per cell
                out = out + jnp.mean(u, axis=tuple(range(-grid.ndim, 0)), keepdims=True) / (mean_sd**2 * grid.size)
            return out

        return GaussianFieldDistribution(self.basis, c, self.mean, apply)

    def _sample_sites(self, name, whitened):
        if whitened:
            return super()._sample_sites(name, True)
        return numpyro.sample(name, self.distribution(**self._hyper_values(name)))

    def precision_matrix(self, **hyper):
        """Sparse intrinsic precision ``h^d (-Laplacian_h)^order / sigma^2`` (``scipy.sparse`` CSR).

        For Neumann/periodic boundaries the proper prior adds the dense rank-one term
        ``1 1^T / (mean_sd^2 N^2)`` (the prior of the average), which is not included here.
        """
        h = self.fixed_hyper(**hyper)
        g = self.grid
        axes = [sparse.csr_matrix(laplacian_1d(n, dx, self.boundary)) for n, dx in zip(g.shape, g.spacing)]
        lap = axes[0] if g.ndim == 1 else (
            sparse.kron(axes[0], sparse.identity(g.shape[1])) + sparse.kron(sparse.identity(g.shape[0]), axes[1])
        )
        q = lap if self.order == 1 else lap @ lap
        return (g.cell_volume / float(h["sigma"]) ** 2 * q).tocsr()

    def __repr__(self):
        return (f"GMRFSmoothness(grid={self.grid.shape}, sigma={self.hyper['sigma']}, order={self.order}, "
                f"boundary={self.boundary!r}, mean_sd={self.mean_sd})")
