"""Gaussian field priors written in a Laplacian eigenbasis (shared by Matérn and GMRF priors).

A prior here is ``u = mean + B (c * xi)``, ``xi ~ N(0, I)``, with ``B`` a
:class:`~bayesbio.fields._spectral.SpectralBasis` and ``c`` spectral weights that depend on the
hyperparameters (``sigma``, ``length_scale``, ...). Hence, for every such prior:

* the whitened parameterisation is exact and costs two small matrix products per evaluation
  (the map ``xi -> u`` is linear with weights differentiable in the hyperparameters, so
  hyperpriors cost nothing extra);
* the covariance ``B diag(c^2) B^T`` and the whitening matrix ``B diag(c)`` are available in
  closed form for oracles (:func:`bayesbio.fields.linear_gaussian_posterior`).

Optional domain extension (``margin``): the basis is built on a grid padded by ``margin``
(physical units, rounded to whole cells) on every side and the field is cropped to the
original grid. Boundary conditions distort a Matérn field within about one correlation length
of the wall (Neumann doubles the variance at the wall in 1-D, Dirichlet pins it to zero);
a margin of one correlation length removes most of that (Lindgren, Rue & Lindström 2011, §2.3).
"""

from __future__ import annotations

import abc

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayesbio.errors import OptionError, describe
from bayesbio.fields._base import FieldPrior
from bayesbio.fields._grid import FieldGrid
from bayesbio.fields._spectral import SpectralBasis, check_boundary

__all__ = ["SpectralGaussianPrior", "extend_grid"]


def extend_grid(grid: FieldGrid, margin: float) -> tuple[FieldGrid, tuple[int, ...]]:
    """The grid padded by ``margin`` (rounded up to whole cells) per side, and the pad per axis."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)) or margin < 0:
        raise OptionError(f"'margin' must be a length >= 0; got {describe(margin)}")
    pads = tuple(int(np.ceil(margin / h - 1e-9)) for h in grid.spacing)
    shape = tuple(n + 2 * p for n, p in zip(grid.shape, pads))
    lower = tuple(lo - p * h for lo, p, h in zip(grid.lower, pads, grid.spacing))
    upper = tuple(hi + p * h for hi, p, h in zip(grid.upper, pads, grid.spacing))
    return FieldGrid(shape, lower, upper), pads


def crop_basis(basis: SpectralBasis, grid: FieldGrid, pads) -> SpectralBasis:
    """Restrict the rows of a basis built on an extended grid to the original cells."""
    if not any(pads):
        return basis
    factors = tuple(f[p : p + n] for f, p, n in zip(basis.factors, pads, grid.shape))
    return SpectralBasis(grid, factors, basis.axis_eigenvalues, basis.active, basis.kind)


class SpectralGaussianPrior(FieldPrior):
    """Base of the Gaussian priors: subclasses provide ``self.basis`` and :meth:`weights`."""

    basis: SpectralBasis
    boundary: str
    mean: float | np.ndarray = 0.0

    def _set_mean(self, mean):
        m = np.asarray(mean, dtype=float)
        if m.ndim and m.shape != self.grid.shape:
            raise OptionError(f"'mean' must be a number or an array of shape {self.grid.shape}; got {describe(mean)}")
        if not np.all(np.isfinite(m)):
            raise OptionError("'mean' must be finite")
        self.mean = m if m.ndim else float(m)

    @staticmethod
    def _check_boundary(boundary):
        return check_boundary(boundary)

    @abc.abstractmethod
    def weights(self, **hyper):
        """Spectral weights ``c`` (shape ``(n_modes,)``) for the given hyperparameter values."""

    @property
    def n_latent(self) -> int:
        """Number of whitened coordinates."""
        return self.basis.n_modes

    def field_from_white(self, white, **hyper):
        """The field for whitened coordinates ``white`` (``(..., n_latent)``) and hyperparameters."""
        c = self.weights(**self.fixed_hyper(**hyper))
        return self.mean + self.basis.apply(c * white)

    def _sample_sites(self, name, whitened):
        h = self._hyper_values(name)
        c = self.weights(**h)
        if whitened:
            white = numpyro.sample(f"{name}_white", dist.Normal(0.0, 1.0).expand([self.n_latent]).to_event(1))
            return numpyro.deterministic(name, self.mean + self.basis.apply(c * white))
        coeffs = numpyro.sample(f"{name}_coeffs", dist.Normal(0.0, c).to_event(1))
        return numpyro.deterministic(name, self.mean + self.basis.apply(coeffs))

    def _sample_preconditioned(self, name, preconditioner):
        try:
            shift, scale = (np.asarray(a, dtype=float) for a in preconditioner)
        except (TypeError, ValueError):
            raise OptionError("'preconditioner' must be a pair (shift, scale)") from None
        m = self.n_latent
        if shift.shape != (m,) or scale.shape != (m, m) or not np.allclose(scale, np.tril(scale)):
            raise OptionError(
                f"'preconditioner': shift must have shape ({m},) and scale be a lower-triangular ({m}, {m}) "
                f"matrix; got {shift.shape} and {scale.shape}"
            )
        # white = shift + scale @ eta ~ N(0, I)  <=>  eta ~ N(-scale^-1 shift, scale^-1 scale^-T)
        inv = np.linalg.solve(scale, np.eye(m))
        eta_dist = dist.MultivariateNormal(-inv @ shift, scale_tril=np.tril(inv))
        h = self._hyper_values(name)
        eta = numpyro.sample(f"{name}_eta", eta_dist)
        white = numpyro.deterministic(f"{name}_white", jnp.asarray(shift) + jnp.asarray(scale) @ eta)
        return numpyro.deterministic(name, self.mean + self.basis.apply(self.weights(**h) * white))

    # -- dense oracles (fixed hyperparameters) ----------------------------------------------
    def whitening_matrix(self, **hyper) -> np.ndarray:
        """``L`` with ``u = mean + L xi`` (shape ``(grid.size, n_latent)``, fields flattened C-order)."""
        c = np.asarray(self.weights(**self.fixed_hyper(**hyper)))
        return self.basis.matrix() * c[None, :]

    def covariance(self, **hyper) -> np.ndarray:
        """Dense prior covariance of the flattened field, ``L L^T``."""
        big_l = self.whitening_matrix(**hyper)
        return big_l @ big_l.T

    def mean_vector(self) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.mean, float), self.grid.shape).ravel().copy()

    def pointwise_sd(self, **hyper) -> np.ndarray:
        """Prior standard deviation at every cell (``grid.shape``), without forming the covariance."""
        c2 = np.asarray(self.weights(**self.fixed_hyper(**hyper))) ** 2
        if len(self.basis.factors) == 1:
            var = (self.basis.factors[0] ** 2) @ c2
            return np.sqrt(var)
        bx, by = self.basis.factors
        kx, ky = bx.shape[1], by.shape[1]
        full = np.zeros(kx * ky)
        idx = np.arange(kx * ky) if self.basis.active is None else self.basis.active
        full[idx] = c2
        return np.sqrt((bx**2) @ full.reshape(kx, ky) @ (by**2).T)


class GaussianFieldDistribution(dist.Distribution):
    """Centred density of a full-rank discrete-basis Gaussian field (event shape ``grid.shape``).

    ``log p(u) = -1/2 (u - m)^T Q (u - m) + 1/2 log det Q - N/2 log(2 pi)`` with
    ``Q = h^d B^-T diag(c^-2) B^-1``. The quadratic form uses ``precision_apply`` (a sparse
    stencil, O(N)) when given, else the spectral coefficients; ``log det Q`` comes from the
    weights, ``sum_j log(h^d / c_j^2)``, at no cost.
    """

    reparametrized_params = []

    def __init__(self, basis: SpectralBasis, weights, mean=0.0, precision_apply=None, *, validate_args=None):
        if basis.kind != "discrete" or basis.active is not None:
            raise OptionError("a centred field density needs a full discrete basis (no truncation, no margin)")
        self.basis = basis
        self.weights = jnp.asarray(weights)
        self.loc = mean
        self.precision_apply = precision_apply
        event_shape = basis.grid.shape
        super().__init__(batch_shape=(), event_shape=event_shape, validate_args=validate_args)

    @property
    def support(self):
        return dist.constraints.independent(dist.constraints.real, len(self.event_shape))

    def sample(self, key, sample_shape=()):
        import jax

        xi = jax.random.normal(key, sample_shape + (self.basis.n_modes,))
        return self.loc + self.basis.apply(self.weights * xi)

    def _coefficients(self, u):
        grid = self.basis.grid
        vol = grid.cell_volume
        if len(self.basis.factors) == 1:
            return (u @ jnp.asarray(self.basis.factors[0])) * vol
        bx, by = (jnp.asarray(f) for f in self.basis.factors)
        a = jnp.einsum("ij,...il,lk->...jk", bx, u, by) * vol
        return a.reshape(a.shape[:-2] + (-1,))

    def log_prob(self, value):
        grid = self.basis.grid
        u = value - self.loc
        axes = tuple(range(-grid.ndim, 0))
        if self.precision_apply is not None:
            quad = jnp.sum(u * self.precision_apply(u), axis=axes)
        else:
            a = self._coefficients(u)
            quad = jnp.sum((a / self.weights) ** 2, axis=-1)
        n = grid.size
        half_logdet = 0.5 * n * np.log(grid.cell_volume) - jnp.sum(jnp.log(self.weights))
        return -0.5 * quad + half_logdet - 0.5 * n * np.log(2.0 * np.pi)
