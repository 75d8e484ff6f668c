"""Observing stresses: a noise model whose likelihood is zero where the law is inadmissible."""

from __future__ import annotations

import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints

from bayesbio.observe import NormalNoise, observe

__all__ = ["observe_stress"]


class _Admissible(dist.Distribution):
    """``base`` where the prediction is finite; log density ``-inf`` where it is not."""

    support = constraints.real

    def __init__(self, base, valid):
        self.base, self.valid = base, valid
        super().__init__(batch_shape=base.batch_shape, event_shape=base.event_shape)

    def sample(self, key, sample_shape=()):
        return jnp.where(self.valid, self.base.sample(key, sample_shape), jnp.nan)

    def log_prob(self, value):
        return jnp.where(self.valid, self.base.log_prob(value), -jnp.inf)


def observe_stress(name: str, prediction, obs, *, noise=NormalNoise, **noise_params):
    """Declare measured stresses ``obs`` of predicted stresses ``prediction``.

    ``noise(prediction, **noise_params)`` is a bayesbio noise model (default
    :class:`~bayesbio.NormalNoise`, e.g. ``noise=bb.CombinedNoise, a=..., b=...``). A NaN
    prediction (an inadmissible state of the law, see :mod:`bayesbio.constitutive.stress`)
    gives that observation zero likelihood instead of a NaN log density. NaN in ``obs`` marks
    a missing record, as in :func:`bayesbio.observe`.
    """
    prediction = jnp.asarray(prediction)
    valid = jnp.isfinite(prediction)
    safe = jnp.where(valid, prediction, 0.0)
    return observe(name, _Admissible(noise(safe, **noise_params), valid), obs=obs)
