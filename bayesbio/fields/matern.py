"""Matérn Gaussian random fields: SPDE/GMRF discretisation and truncated Karhunen–Loève expansion.

A Matérn field with marginal sd ``sigma``, smoothness ``nu`` and range ``length_scale`` (rho) on a
``d``-dimensional domain is the solution of the SPDE (Whittle 1954; Lindgren, Rue & Lindström
2011, eq. 2)

    tau (kappa^2 - Laplacian)^(alpha/2) u = W,   alpha = nu + d/2,   kappa = sqrt(8 nu) / rho,
    tau^2 = Gamma(nu) / (Gamma(alpha) (4 pi)^(d/2) kappa^(2 nu) sigma^2),

so that on all of R^d the variance is ``sigma^2`` and the correlation at distance ``rho`` is
about 0.1 (0.14 for nu = 3/2). In the eigenbasis of ``-Laplacian`` (eigenvalues ``lambda_j``)
the field is ``u = sum_j c_j xi_j phi_j`` with ``c_j = 1 / (tau (kappa^2 + lambda_j)^(alpha/2))``.

* :class:`MaternSPDE` uses the eigenpairs of the finite-difference Laplacian of the grid: the
  field is exactly the GMRF with the sparse precision
  ``Q = tau^2 h^d (kappa^2 - Laplacian_h)^alpha`` (:meth:`MaternSPDE.precision_matrix`).
* :class:`MaternKL` uses the analytic eigenfunctions of the domain truncated to ``n_modes``
  terms: the coefficients (the whitened coordinates) mean the same on every grid.

Both converge to the continuum field as the grid is refined (``h -> 0``); the prior meaning is
fixed by ``(sigma, length_scale, nu)`` in physical units, not per cell.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
from scipy import sparse
from scipy.special import gammaln

from bayesbio.errors import OptionError, describe
from bayesbio.fields._spectral import continuous_basis, discrete_basis, laplacian_1d, neg_laplacian_apply
from bayesbio.fields.gaussian import GaussianFieldDistribution, SpectralGaussianPrior, crop_basis, extend_grid

__all__ = ["MaternKL", "MaternSPDE", "matern_correlation", "matern_kappa_tau"]


def matern_kappa_tau(sigma, length_scale, nu: float, d: int):
    """SPDE parameters ``(kappa, tau)`` of a Matérn field with marginal sd ``sigma`` and range ``length_scale``."""
    alpha = nu + d / 2.0
    kappa = jnp.sqrt(8.0 * nu) / length_scale
    log_tau2 = gammaln(nu) - gammaln(alpha) - 0.5 * d * np.log(4 * np.pi) - 2 * nu * jnp.log(kappa) - 2 * jnp.log(sigma)
    return kappa, jnp.exp(0.5 * log_tau2)


def matern_correlation(r, length_scale, nu: float):
    """Matérn correlation at distance ``r`` with range ``length_scale`` (kappa = sqrt(8 nu)/rho)."""
    from scipy.special import gamma, kv

    r = np.asarray(r, dtype=float)
    x = np.sqrt(8.0 * nu) * np.abs(r) / length_scale
    with np.errstate(invalid="ignore"):
        out = 2.0 ** (1 - nu) / gamma(nu) * x**nu * kv(nu, x)
    return np.where(x == 0, 1.0, out)


def _check_nu(nu, d):
    if nu is None:
        return 1.5 if d == 1 else 1.0  # alpha = 2: the sparsest precision (5-point stencil squared)
    if isinstance(nu, bool) or not isinstance(nu, (int, float)) or not (0 < nu <= 10):
        raise OptionError(f"'nu' (smoothness) must be a number in (0, 10]; got {describe(nu)}")
    return float(nu)


class _Matern(SpectralGaussianPrior):
    def __init__(self, grid, *, sigma=1.0, length_scale=0.2, nu=None, boundary="neumann", margin=None, mean=0.0):
        super().__init__(grid)
        from bayesbio.fields._base import check_hyper

        self.hyper = {"sigma": check_hyper("sigma", sigma), "length_scale": check_hyper("length_scale", length_scale)}
        self.nu = _check_nu(nu, self.grid.ndim)
        self.alpha = self.nu + self.grid.ndim / 2.0
        self.boundary = self._check_boundary(boundary)
        if margin is None:
            ls = self.hyper["length_scale"]
            margin = ls if isinstance(ls, float) else 0.0
        if boundary == "periodic":
            margin = 0.0
        self.extended, self.pads = extend_grid(self.grid, margin)
        self.margin = float(margin)
        self._set_mean(mean)

    def weights(self, *, sigma, length_scale):
        kappa, tau = matern_kappa_tau(sigma, length_scale, self.nu, self.grid.ndim)
        lam = jnp.asarray(self.basis.eigenvalues)
        return 1.0 / (tau * (kappa**2 + lam) ** (self.alpha / 2.0))

    def __repr__(self):
        return (f"{type(self).__name__}(grid={self.grid.shape}, sigma={self.hyper['sigma']}, "
                f"length_scale={self.hyper['length_scale']}, nu={self.nu}, boundary={self.boundary!r}, "
                f"margin={self.margin})")


class MaternSPDE(_Matern):
    """Matérn field as a GMRF: the SPDE on the (optionally extended) grid, finite differences.

    Parameters
    ----------
    grid : FieldGrid, int or bayesbio.pde grid
        Where the field lives (cell centres).
    sigma : float or numpyro distribution
        Marginal standard deviation (a distribution makes it a hyperprior, site ``{name}_sigma``).
    length_scale : float or numpyro distribution
        Range rho in the units of the grid (correlation ~0.1 at distance rho); a distribution
        makes it a hyperprior (site ``{name}_length_scale``).
    nu : float, optional
        Smoothness (default 3/2 in 1-D, 1 in 2-D, i.e. alpha = 2: precision ``tau^2 h^d (kappa^2 -
        Laplacian_h)^2``, a 5-point band in 1-D and a 13-point stencil in 2-D).
    boundary : {"neumann", "dirichlet", "periodic"}
        Boundary condition of the SPDE at the edge of the (extended) domain.
    margin : float, optional
        Domain extension per side in physical units; default one ``length_scale`` when that is
        a number, else 0 (then pass one explicitly, e.g. the upper end of the hyperprior).
    mean : float or array
        Prior mean field.

    Examples
    --------
    >>> import numpyro.distributions as dist
    >>> prior = MaternSPDE(128, sigma=1.0, length_scale=dist.LogNormal(-1.6, 0.3))
    >>> def model(data):
    ...     u = prior.sample("u")          # sites u_length_scale, u_white; deterministic u
    """

    def __init__(self, grid, *, sigma=1.0, length_scale=0.2, nu=None, boundary="neumann", margin=None, mean=0.0):
        super().__init__(grid, sigma=sigma, length_scale=length_scale, nu=nu, boundary=boundary, margin=margin,
                         mean=mean)
        self.extended_basis = discrete_basis(self.extended, self.boundary)
        self.basis = crop_basis(self.extended_basis, self.grid, self.pads)

    def distribution(self, **hyper):
        """Centred GMRF density of the field (needs ``margin=0``); sparse stencil for integer alpha."""
        if any(self.pads):
            raise OptionError("the centred density needs margin=0 (with a margin the field is a crop of a GMRF)")
        h = self.fixed_hyper(**hyper)
        c = self.weights(**h)
        kappa, tau = matern_kappa_tau(h["sigma"], h["length_scale"], self.nu, self.grid.ndim)
        apply = None
        if float(self.alpha).is_integer():
            grid, bc, a, vol = self.grid, self.boundary, int(self.alpha), self.grid.cell_volume

            def apply(u):
                for _ in range(a):
                    u = kappa**2 * u + neg_laplacian_apply(u, grid, bc)
                return tau**2 * vol * u

        return GaussianFieldDistribution(self.basis, c, self.mean, apply)

    def _sample_sites(self, name, whitened):
        if whitened:
            return super()._sample_sites(name, True)
        return numpyro.sample(name, self.distribution(**self._hyper_values(name)))

    def precision_matrix(self, **hyper):
        """Sparse precision ``tau^2 h^d (kappa^2 I - Laplacian_h)^alpha`` on the extended grid
        (``scipy.sparse`` CSR; integer ``alpha`` only). Equal to the inverse covariance when
        ``margin == 0``."""
        if not float(self.alpha).is_integer():
            raise OptionError(f"the precision is sparse only for integer alpha = nu + d/2; got {self.alpha}")
        h = self.fixed_hyper(**hyper)
        kappa, tau = (float(v) for v in matern_kappa_tau(h["sigma"], h["length_scale"], self.nu, self.grid.ndim))
        g = self.extended
        axes = [sparse.csr_matrix(laplacian_1d(n, dx, self.boundary)) for n, dx in zip(g.shape, g.spacing)]
        if g.ndim == 1:
            lap = axes[0]
        else:
            lap = sparse.kron(axes[0], sparse.identity(g.shape[1])) + sparse.kron(sparse.identity(g.shape[0]), axes[1])
        k = kappa**2 * sparse.identity(g.size) + lap
        q = sparse.identity(g.size)
        for _ in range(int(self.alpha)):
            q = q @ k
        return (tau**2 * g.cell_volume * q).tocsr()


class MaternKL(_Matern):
    """Matérn field as a truncated Karhunen–Loève expansion in the analytic Laplacian eigenfunctions.

    Same parameters as :class:`MaternSPDE` plus ``n_modes`` (the truncation; default 64, at
    most the number of cells per axis in 1-D). The ``n_modes`` whitened coefficients have the
    same meaning on every grid, which makes this the natural choice for refinement studies
    and for NUTS on fine grids (few latent dimensions). The truncation drops the roughest
    modes: the pointwise variance is lower than ``sigma^2`` by the tail
    ``sum_{j > n_modes} c_j^2 phi_j^2`` (see :meth:`pointwise_sd`).
    """

    def __init__(self, grid, *, n_modes=64, sigma=1.0, length_scale=0.2, nu=None, boundary="neumann", margin=None,
                 mean=0.0):
        super().__init__(grid, sigma=sigma, length_scale=length_scale, nu=nu, boundary=boundary, margin=margin,
                         mean=mean)
        # the exact margin (not rounded to cells): the expansion is the same on every grid
        self.basis = continuous_basis(self.grid, self.boundary, n_modes, margin=self.margin)
        self.n_modes = int(n_modes)
