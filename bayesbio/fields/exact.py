"""The exact Gaussian posterior of a linear-Gaussian inverse problem (the verification oracle).

Problem: ``y = A u + e``, ``e ~ N(0, diag(noise_sd^2))``, prior ``u = m + L xi``, ``xi ~ N(0, I)``.
In whitened coordinates, with ``G = diag(1/noise_sd) A L`` and ``r = (y - A m) / noise_sd``,

    xi | y ~ N(P^-1 G^T r, P^-1),      P = I + G^T G,

so ``u | y`` has mean ``m + L P^-1 G^T r`` and covariance ``L P^-1 L^T``. Working in whitened
coordinates keeps the linear algebra well conditioned even when the prior covariance is
nearly singular (smooth priors) and the data are very informative (small noise): ``P`` has
eigenvalues >= 1. Cost: one Cholesky factorisation of an ``n_latent x n_latent`` matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import linalg as sla

from bayesbio.errors import DataError, OptionError, describe
from bayesbio.fields._grid import FieldGrid, as_field_grid

__all__ = ["FieldPosterior", "linear_gaussian_posterior"]


@dataclass
class FieldPosterior:
    """A Gaussian (exact or approximate) posterior over a field.

    ``mean`` and ``sd`` have the grid's shape; ``factor`` is ``F`` with covariance ``F F^T`` of
    the flattened field (``None`` when only the marginals are kept). ``method`` says where it
    came from ("exact", "laplace", "laplace-lowrank").
    """

    grid: FieldGrid
    mean: np.ndarray
    sd: np.ndarray
    factor: np.ndarray | None = None
    method: str = "exact"
    info: dict = field(default_factory=dict)

    @property
    def covariance(self) -> np.ndarray:
        if self.factor is None:
            raise OptionError(f"this {self.method} posterior keeps only pointwise sds, not the covariance")
        return self.factor @ self.factor.T

    def band(self, prob: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise central credible band (Gaussian quantiles)."""
        from scipy.special import ndtri

        z = ndtri(0.5 + 0.5 * _check_prob(prob))
        return self.mean - z * self.sd, self.mean + z * self.sd

    def sample(self, rng, num: int = 1) -> np.ndarray:
        """``num`` posterior sample fields, shape ``(num, *grid.shape)`` (``rng``: numpy Generator or seed)."""
        if self.factor is None:
            raise OptionError(f"this {self.method} posterior cannot be sampled jointly (no covariance factor)")
        rng = np.random.default_rng(rng)
        xi = rng.standard_normal((int(num), self.factor.shape[1]))
        return (self.mean.ravel() + xi @ self.factor.T).reshape((int(num),) + self.grid.shape)


def _check_prob(prob):
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 < prob < 1:
        raise OptionError(f"'prob' must be strictly between 0 and 1; got {describe(prob)}")
    return float(prob)


def _prior_parts(prior, hyper):
    """(grid, mean vector, whitening matrix L) from a Gaussian field prior or a (grid, mean, cov) tuple."""
    if isinstance(prior, tuple):
        if len(prior) != 3:
            raise OptionError("'prior' as a tuple must be (grid, mean, covariance)")
        grid, mean, cov = prior
        grid = as_field_grid(grid)
        cov = np.asarray(cov, float)
        if cov.shape != (grid.size, grid.size):
            raise OptionError(f"prior covariance must have shape {(grid.size, grid.size)}; got {cov.shape}")
        mean = np.broadcast_to(np.asarray(mean, float), grid.shape).ravel()
        w, v = np.linalg.eigh(0.5 * (cov + cov.T))
        return grid, mean, v * np.sqrt(np.clip(w, 0.0, None))[None, :]
    if not hasattr(prior, "whitening_matrix"):
        raise OptionError(
            f"'prior' must be a Gaussian field prior (MaternSPDE, MaternKL, GMRFSmoothness) or a "
            f"(grid, mean, covariance) tuple; got {type(prior).__name__}"
        )
    return prior.grid, prior.mean_vector(), np.asarray(prior.whitening_matrix(**hyper), float)


def linear_gaussian_posterior(prior, operator, y, noise_sd, **hyper) -> FieldPosterior:
    """Exact posterior of ``u`` given ``y = operator @ u.ravel() + N(0, noise_sd^2)``.

    Parameters
    ----------
    prior : Gaussian field prior or (grid, mean, covariance)
        Hyperparameters with hyperpriors need fixed values in ``**hyper`` (e.g. ``sigma=1.0``).
    operator : array, shape (m, grid.size)
        The linear forward map (e.g. :func:`~bayesbio.fields.heat_semigroup`).
    y : array, shape (m,)
        Data; NaN marks a missing value (its row is dropped).
    noise_sd : float or array of shape (m,)

    Returns
    -------
    FieldPosterior
        With the full covariance factor (``method="exact"``); ``info["white_mean"]`` and
        ``info["white_factor"]`` give the posterior of the whitened coordinates,
        ``N(white_mean, W W^T)`` — for a :class:`~bayesbio.fields.MaternKL` prior these mean the
        same on every grid, so the posterior can be evaluated anywhere with another grid's
        ``whitening_matrix``.
    """
    grid, m, big_l = _prior_parts(prior, hyper)
    a = np.asarray(operator, dtype=float)
    y = np.asarray(y, dtype=float).ravel()
    if a.ndim != 2 or a.shape[1] != grid.size:
        raise DataError(f"'operator' must have shape (m, {grid.size}); got {describe(a)}")
    if y.shape != (a.shape[0],):
        raise DataError(f"'y' must have shape ({a.shape[0]},) to match the operator; got {describe(y)}")
    s = np.broadcast_to(np.asarray(noise_sd, dtype=float), y.shape)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise DataError(f"'noise_sd' must be positive and finite; got {describe(noise_sd)}")
    keep = np.isfinite(y)
    if not keep.any():
        raise DataError("'y' has no finite value")
    a, y, s = a[keep], y[keep], s[keep]
    g = (a @ big_l) / s[:, None]
    r = (y - a @ m) / s
    p = np.eye(big_l.shape[1]) + g.T @ g
    chol = sla.cho_factor(p, lower=True)
    mu_xi = sla.cho_solve(chol, g.T @ r)
    # covariance factor: L chol^-T, so that F F^T = L P^-1 L^T
    factor = sla.solve_triangular(chol[0], big_l.T, lower=True).T
    mean = (m + big_l @ mu_xi).reshape(grid.shape)
    sd = np.sqrt(np.sum(factor**2, axis=1)).reshape(grid.shape)
    white_factor = sla.solve_triangular(chol[0], np.eye(p.shape[0]), lower=True).T  # C^-T: P^-1 = W W^T
    info = {"n_obs": int(keep.sum()), "white_mean": mu_xi, "white_factor": white_factor}
    return FieldPosterior(grid, mean, sd, factor, "exact", info)
