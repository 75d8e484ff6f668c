"""Observation (noise) models as NumPyro distributions, and :func:`observe`.

Each noise model is a NumPyro distribution over the measured value given the model
prediction. They also provide ``log_cdf`` so that measurements below a limit of
quantification can be treated as left-censored (Beal's M3 method).

Residual-error models (``pred`` = model prediction, ``eps ~ N(0, 1)``):

=========================  ===========================================================
``NormalNoise``            ``y = pred + sigma * eps``
``LogNormalNoise``         ``log y = log pred + sigma * eps``  (``pred`` is the median)
``ProportionalNoise``      ``y = pred + b * |pred| * eps``
``CombinedNoise``          ``y = pred + sqrt(a^2 + b^2 pred^2) * eps``
``StudentTNoise``          ``y = pred + sigma * t_nu``
=========================  ===========================================================
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr
from numpyro.distributions import constraints
from numpyro.distributions.util import promote_shapes

from bayesbio.errors import DataError, ModelError, describe

__all__ = [
    "CombinedNoise",
    "LeftCensored",
    "LogNormalNoise",
    "NormalNoise",
    "ProportionalNoise",
    "StudentTNoise",
    "observe",
]

_OBS_KEY = "bayesbio_observed"


def _check_positive(noise: str, field: str, value) -> None:
    """Eager check of a noise parameter given as a constant (a sampled one is a tracer)."""
    if isinstance(value, jax.core.Tracer):
        return
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ModelError(f"{noise}: '{field}' must be a positive number; got {describe(value)}") from None
    if not np.all(np.isfinite(arr) & (arr > 0)):
        bad = arr[~(np.isfinite(arr) & (arr > 0))].ravel()[:3].tolist() if arr.ndim else arr.item()
        raise ModelError(f"{noise}: '{field}' must be positive and finite; got {bad}")


class _LocationScaleNoise(dist.Distribution):
    """y = loc + scale * eps with a standard base ``eps``; subclasses define ``scale``."""

    support = constraints.real
    reparametrized_params = ["prediction"]

    def _init(self, prediction, scale, validate_args):
        self.prediction, self.scale = promote_shapes(prediction, scale)
        batch_shape = jax.lax.broadcast_shapes(jnp.shape(prediction), jnp.shape(scale))
        self.prediction = jnp.broadcast_to(self.prediction, batch_shape)
        self.scale = jnp.broadcast_to(self.scale, batch_shape)
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    def _standard(self):
        return dist.Normal(0.0, 1.0)

    def sample(self, key, sample_shape=()):
        eps = self._standard().sample(key, sample_shape + self.batch_shape)
        return self.prediction + self.scale * eps

    def log_prob(self, value):
        z = (value - self.prediction) / self.scale
        return self._standard().log_prob(z) - jnp.log(self.scale)

    def log_cdf(self, value):
        return log_ndtr((value - self.prediction) / self.scale)

    @property
    def mean(self):
        return self.prediction

    @property
    def variance(self):
        return self.scale**2


class NormalNoise(_LocationScaleNoise):
    """Additive Gaussian error: ``y ~ Normal(prediction, sigma)``."""

    arg_constraints = {"prediction": constraints.real, "sigma": constraints.positive}

    def __init__(self, prediction, sigma, *, validate_args=None):
        _check_positive("NormalNoise", "sigma", sigma)
        self.sigma = sigma
        self._init(prediction, sigma, validate_args)


class ProportionalNoise(_LocationScaleNoise):
    """Proportional (constant CV) error: ``y ~ Normal(pred, b |pred|)``."""

    arg_constraints = {"prediction": constraints.real, "b": constraints.positive}

    def __init__(self, prediction, b, *, validate_args=None):
        _check_positive("ProportionalNoise", "b", b)
        self.b = b
        # a tiny floor keeps the density proper where the prediction is exactly zero
        scale = b * jnp.maximum(jnp.abs(prediction), 1e-12)
        self._init(prediction, scale, validate_args)


class CombinedNoise(_LocationScaleNoise):
    """Combined additive + proportional error: ``sd = sqrt(a^2 + b^2 pred^2)``."""

    arg_constraints = {
        "prediction": constraints.real,
        "a": constraints.positive,
        "b": constraints.positive,
    }

    def __init__(self, prediction, a, b, *, validate_args=None):
        _check_positive("CombinedNoise", "a", a)
        _check_positive("CombinedNoise", "b", b)
        self.a, self.b = a, b
        scale = jnp.sqrt(jnp.square(a) + jnp.square(b) * jnp.square(prediction))
        self._init(prediction, scale, validate_args)


class StudentTNoise(_LocationScaleNoise):
    """Heavy-tailed error: ``y = pred + sigma * t_df`` (robust to outliers)."""

    arg_constraints = {
        "prediction": constraints.real,
        "sigma": constraints.positive,
        "df": constraints.positive,
    }

    def __init__(self, prediction, sigma, df=4.0, *, validate_args=None):
        _check_positive("StudentTNoise", "sigma", sigma)
        _check_positive("StudentTNoise", "df", df)
        self.sigma = sigma
        self.df = jnp.asarray(df)
        self._init(prediction, sigma, validate_args)

    def _standard(self):
        return dist.StudentT(self.df)

    def log_cdf(self, value):
        z = (value - self.prediction) / self.scale
        # Student-t CDF through the regularised incomplete beta function
        x = self.df / (self.df + z**2)
        tail = 0.5 * jax.scipy.special.betainc(0.5 * self.df, 0.5, x)
        return jnp.log(jnp.where(z < 0, tail, 1.0 - tail))


class LogNormalNoise(dist.Distribution):
    """Multiplicative error: ``log y ~ Normal(log prediction, sigma)``.

    ``prediction`` is the median of ``y``; observations must be positive. A non-positive
    prediction (e.g. an ODE state that undershoots zero within solver tolerance) is floored at
    a tiny positive value instead of producing NaN, so it costs likelihood rather than a chain.
    """

    arg_constraints = {"prediction": constraints.real, "sigma": constraints.positive}
    support = constraints.positive
    reparametrized_params = ["prediction", "sigma"]

    def __init__(self, prediction, sigma, *, validate_args=None):
        _check_positive("LogNormalNoise", "sigma", sigma)
        prediction = jnp.maximum(prediction, jnp.finfo(jnp.result_type(prediction, float)).tiny)
        self.prediction, self.sigma = promote_shapes(prediction, sigma)
        batch_shape = jax.lax.broadcast_shapes(jnp.shape(prediction), jnp.shape(sigma))
        self.prediction = jnp.broadcast_to(self.prediction, batch_shape)
        self.sigma = jnp.broadcast_to(self.sigma, batch_shape)
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        eps = jax.random.normal(key, sample_shape + self.batch_shape)
        return self.prediction * jnp.exp(self.sigma * eps)

    def log_prob(self, value):
        log_y = jnp.log(value)
        z = (log_y - jnp.log(self.prediction)) / self.sigma
        return -0.5 * z**2 - jnp.log(self.sigma) - 0.5 * jnp.log(2 * jnp.pi) - log_y

    def log_cdf(self, value):
        return log_ndtr((jnp.log(value) - jnp.log(self.prediction)) / self.sigma)

    @property
    def mean(self):
        return self.prediction * jnp.exp(0.5 * self.sigma**2)


class LeftCensored(dist.Distribution):
    """Left-censoring below a limit of quantification (M3): ``P(y < lloq)`` for BLQ records.

    ``censored`` marks the records below the limit; their likelihood is the noise model's
    CDF at ``lloq``. Sampling returns uncensored draws from the noise model.
    """

    support = constraints.real

    def __init__(self, base, lloq, censored, *, validate_args=None):
        if not hasattr(base, "log_cdf"):
            raise DataError(
                f"LeftCensored: 'base' must be a bayesbio noise model with log_cdf; got {type(base).__name__}"
            )
        self.base = base
        self.lloq = jnp.broadcast_to(lloq, base.batch_shape)
        self.censored = jnp.broadcast_to(censored, base.batch_shape)
        super().__init__(batch_shape=base.batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        return self.base.sample(key, sample_shape)

    def log_prob(self, value):
        safe = jnp.where(self.censored, self.base.prediction, value)
        return jnp.where(
            self.censored, self.base.log_cdf(self.lloq), self.base.log_prob(safe)
        )


def _check_obs(name, noise, obs):
    """Eager checks of concrete observations; returns the numpy array (NaN = missing)."""
    try:
        arr = np.asarray(obs, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"observed data '{name}' must be numeric; got {describe(obs)} ({exc})"
        ) from None
    expected = tuple(noise.batch_shape)
    if arr.shape != expected:
        raise DataError(
            f"observed data '{name}' has shape {arr.shape} but the model predicts shape "
            f"{expected} (e.g. times x states); reshape the data or the prediction to match"
        )
    if np.any(np.isinf(arr)):
        raise DataError(f"observed data '{name}' contains inf; use NaN to mark a missing record")
    if np.all(np.isnan(arr)):
        raise DataError(f"observed data '{name}' has no observed values (all NaN)")
    present = arr[~np.isnan(arr)]
    if isinstance(noise, LogNormalNoise) and np.any(present <= 0):
        bad = present[present <= 0][:3]
        raise DataError(
            f"observed data '{name}' contains non-positive values {bad.tolist()}, but "
            "LogNormalNoise needs positive observations; mark them as missing (NaN), treat them "
            "as censored (lloq=...), or use an additive noise model"
        )
    return arr


def observe(name: str, noise: dist.Distribution, obs=None, *, lloq=None):
    """Declare observed data with a noise model; NaN entries are treated as missing.

    Parameters
    ----------
    name : str
        Name of the observed site (becomes a variable of ``observed_data``,
        ``log_likelihood`` and ``posterior_predictive``).
    noise : Distribution
        A bayesbio noise model (or any NumPyro distribution) whose batch shape equals the
        data's shape.
    obs : array or None
        The measurements. NaN marks a missing record (masked out of the likelihood). ``None``
        draws a simulated observation (prior/posterior predictive).
    lloq : float or array, optional
        Lower limit of quantification. Observations at or below it are left-censored (M3).

    Returns
    -------
    array
        The observed (or simulated) values.
    """
    if not isinstance(name, str) or not name:
        raise ModelError(f"observe: 'name' must be a non-empty string; got {describe(name)}")
    if not isinstance(noise, dist.Distribution):
        raise ModelError(
            f"observe('{name}'): 'noise' must be a noise model such as bb.NormalNoise(prediction, sigma); "
            f"got {describe(noise)}"
        )
    if lloq is not None and not isinstance(lloq, jax.core.Tracer):
        try:
            lloq_arr = np.asarray(lloq, dtype=float)
        except (TypeError, ValueError):
            raise DataError(f"observe('{name}'): 'lloq' must be numeric; got {describe(lloq)}") from None
        if not np.all(np.isfinite(lloq_arr)):
            raise DataError(f"observe('{name}'): 'lloq' must be finite; got {describe(lloq)}")
    if obs is None:
        return numpyro.sample(name, noise)
    if isinstance(obs, jax.core.Tracer):
        mask = ~jnp.isnan(obs)
        original = obs
    else:
        arr = _check_obs(name, noise, obs)
        mask = ~np.isnan(arr)
        original = arr
    obs_filled = jnp.where(mask, jnp.asarray(obs), jnp.asarray(_fill_value(noise)))
    fn = noise
    if lloq is not None:
        censored = mask & (obs_filled <= lloq)
        fn = LeftCensored(noise, lloq, censored)
    if not (isinstance(mask, np.ndarray) and mask.all()):
        fn = fn.mask(mask)
    return numpyro.sample(name, fn, obs=obs_filled, infer={_OBS_KEY: original})


def _fill_value(noise) -> float:
    # a value inside every noise model's support, used where data are missing (masked out)
    return 1.0
