"""Normalised reference densities for the reference path of tempered SMC.

The reference path tempers from a normalised density ``q`` fitted to the posterior to the
posterior itself, ``pi_b ∝ q(x)^(1-b) [p(x) p(y | x)]^b`` (on the unconstrained space). Its
normalising constant at ``b = 0`` is 1, so the SMC product of mean incremental weights
``exp((b_t - b_{t-1}) (log p(x, y) - log q(x)))`` estimates ``p(y)`` exactly as on the prior
path. When ``q`` is close to the posterior the path is short (few temperatures) and never
visits the prior's tails, where sloppy models form thin curved ridges that local moves cannot
cross (Treloar / 3-term Ogden).

``q`` is a multivariate Student t (``df`` degrees of freedom; ``df=inf`` a Gaussian) centred at
the mean of posterior draws (NUTS draws, or draws of a Laplace approximation) with scale matrix
``scale^2`` times their covariance: heavier tails and a wider scale make ``q`` cover the
posterior's tails, so the incremental weights stay bounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
from scipy.special import gammaln

from bayesbio.errors import DataError, OptionError, describe

__all__ = ["REFERENCES", "Reference", "reference_from_draws"]

REFERENCES = ("prior", "gaussian", "t")


@dataclass(frozen=True)
class Reference:
    """A multivariate t (``df`` finite) or Gaussian (``df = inf``) density on R^d."""

    mean: np.ndarray
    chol: np.ndarray  # lower Cholesky factor of the scale matrix
    df: float

    @property
    def gaussian(self) -> bool:
        return not math.isfinite(self.df)

    @property
    def params(self) -> dict:
        """Arrays passed to the compiled moves (traced, so a new reference does not recompile)."""
        d = self.mean.shape[0]
        log_det = float(np.sum(np.log(np.diag(self.chol))))
        if self.gaussian:
            const = -log_det - 0.5 * d * math.log(2 * math.pi)
            df = 1.0
        else:
            nu = self.df
            const = (gammaln(0.5 * (nu + d)) - gammaln(0.5 * nu) - 0.5 * d * math.log(nu * math.pi) - log_det)
            df = nu
        return dict(mean=jnp.asarray(self.mean), chol_inv=jnp.asarray(np.linalg.inv(self.chol)),
                    df=jnp.asarray(df), const=jnp.asarray(float(const)))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        d = self.mean.shape[0]
        z = rng.standard_normal((n, d))
        if not self.gaussian:
            z = z / np.sqrt(rng.chisquare(self.df, size=n) / self.df)[:, None]
        return self.mean + z @ self.chol.T


def reference_log_pdf(gaussian: bool, params: dict, x):
    """``log q(x)`` at one point ``x`` (d,) (JAX; ``gaussian`` is static)."""
    z = params["chol_inv"] @ (x - params["mean"])
    r2 = z @ z
    if gaussian:
        return params["const"] - 0.5 * r2
    nu = params["df"]
    return params["const"] - 0.5 * (nu + x.shape[0]) * jnp.log1p(r2 / nu)


def mean_and_cholesky(u):
    """Mean and Cholesky factor of the sample covariance of draws ``u`` (n, d), with a tiny jitter."""
    d = u.shape[1]
    mean = u.mean(axis=0)
    cov = np.cov(u, rowvar=False).reshape(d, d)
    cov = cov + 1e-10 * max(1.0, float(np.trace(cov)) / d) * np.eye(d)
    return mean, np.linalg.cholesky(cov)


def reference_from_draws(u, *, kind: str, scale: float, df: float) -> Reference:
    """Fit ``q`` to unconstrained draws ``u`` (n, d): their mean, ``scale^2`` x their covariance."""
    if kind not in ("gaussian", "t"):
        raise OptionError(f"'reference' must be one of {list(REFERENCES)}; got {describe(kind)}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise OptionError(f"'reference_scale' must be a positive number; got {describe(scale)}")
    if kind == "t" and not (isinstance(df, (int, float)) and math.isfinite(df) and df > 0):
        raise OptionError(f"'reference_df' must be a positive number for a t reference; got {describe(df)}")
    u = np.asarray(u, dtype=float)
    if u.ndim != 2 or not np.all(np.isfinite(u)):
        raise DataError(f"'reference_draws' must be finite unconstrained draws of shape (n, d); got shape {u.shape}")
    n, d = u.shape
    if n < 2 * d + 2:
        raise DataError(f"'reference_draws' needs at least {2 * d + 2} draws to fit a covariance in {d} dimensions; got {n}")
    mean, chol = mean_and_cholesky(u)
    chol = chol * scale
    return Reference(mean=mean, chol=chol, df=float(df) if kind == "t" else math.inf)
