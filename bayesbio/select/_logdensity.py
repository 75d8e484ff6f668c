"""A model's log density on the unconstrained space, split into prior and likelihood.

Evidence estimators need ``log p(theta)`` (normalised prior, with the Jacobian of the map to
the unconstrained space) and ``log p(y | theta)`` separately, for any NumPyro model. One trace
of the model gives both: latent sites and the ``_<site>_log_det`` Jacobian factors NumPyro adds
when it maps unconstrained values are prior terms; every other observed site (data, factors,
solver-failure flags) is likelihood. NaN log densities count as ``-inf`` (an inadmissible or
failed point has zero density).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.handlers import substitute
from numpyro.infer import Predictive
from numpyro.infer.util import _unconstrain_reparam, compute_log_probs, constrain_fn, unconstrain_fn

from bayesbio.errors import DataError
from bayesbio.infer._common import Prepared, prepare

__all__ = ["LogDensity", "log_density"]


def _nan_to_neginf(x):
    return jnp.where(jnp.isnan(x), -jnp.inf, x)


@dataclass
class LogDensity:
    """Prior and likelihood of one model and data as functions of a flat unconstrained vector."""

    prepared: Prepared
    dim: int
    unravel: Callable[[Any], dict]

    @property
    def model(self):
        return self.prepared.spec.model

    @property
    def data(self):
        return self.prepared.data

    def split(self, u):
        """``(log prior incl. Jacobian, log likelihood)`` at one unconstrained point ``u`` (d,)."""
        params = self.unravel(u)
        reparam = substitute(self.model, substitute_fn=partial(_unconstrain_reparam, params))
        log_probs, tr = compute_log_probs(reparam, (self.data,), {}, {})
        prior = jnp.zeros((), dtype=u.dtype)
        lik = jnp.zeros((), dtype=u.dtype)
        for name, lp in log_probs.items():
            site = tr[name]
            jacobian = name.startswith("_") and name.endswith("_log_det")
            if not site["is_observed"] or jacobian:
                prior = prior + lp
            else:
                lik = lik + lp
        return _nan_to_neginf(prior), _nan_to_neginf(lik)

    def log_joint(self, u):
        prior, lik = self.split(u)
        return prior + lik

    def __post_init__(self):
        self._cache = {}

    def _compiled(self, name, make):
        if name not in self._cache:
            self._cache[name] = make()
        return self._cache[name]

    def prior_draws(self, rng_key, n: int) -> jnp.ndarray:
        """``n`` prior draws on the unconstrained space, shape (n, d)."""
        latent = list(self.prepared.latent)

        def make():
            def draw(key):
                samples = Predictive(self.model, num_samples=n, return_sites=latent)(key, self.data)
                return jax.vmap(self._ravel_unconstrained)({k: samples[k] for k in latent})

            return jax.jit(draw)

        return self._compiled(("prior", n), make)(rng_key)

    def _ravel_unconstrained(self, p):
        return ravel_pytree(unconstrain_fn(self.model, (self.data,), {}, p))[0]

    def to_unconstrained(self, samples: dict) -> jnp.ndarray:
        """Constrained draws ``{site: (n, ...)}`` -> flat unconstrained array (n, d)."""
        missing = [k for k in self.prepared.latent if k not in samples]
        if missing:
            raise DataError(f"posterior draws lack the latent variable(s) {missing} of model '{self.prepared.spec.name}'")
        latent = {k: jnp.asarray(samples[k]) for k in self.prepared.latent}
        fn = self._compiled("unconstrain", lambda: jax.jit(jax.vmap(self._ravel_unconstrained)))
        return fn(latent)

    def to_constrained(self, u) -> dict:
        """Flat unconstrained draws (n, d) -> constrained latent values ``{site: (n, ...)}``."""

        def one(x):
            return constrain_fn(self.model, (self.data,), {}, self.unravel(x))

        out = self._compiled("constrain", lambda: jax.jit(jax.vmap(one)))(jnp.asarray(u))
        return {k: np.asarray(v) for k, v in out.items() if k in self.prepared.latent}


def log_density(model, data=None) -> LogDensity:
    """Prepare ``model`` (bundled name, script path, ModelSpec or function) and its data."""
    prepared = prepare(model, data)
    example = Predictive(prepared.spec.model, num_samples=1, return_sites=list(prepared.latent))(
        jax.random.PRNGKey(0), prepared.data
    )
    example = {k: v[0] for k, v in example.items()}
    flat, unravel = ravel_pytree(unconstrain_fn(prepared.spec.model, (prepared.data,), {}, example))
    return LogDensity(prepared=prepared, dim=int(np.size(flat)), unravel=unravel)


def posterior_draws(idata, latent) -> dict:
    """Latent posterior draws of an InferenceData, chains stacked: ``{site: (chains*draws, ...)}``."""
    post = idata.posterior
    missing = [k for k in latent if k not in post]
    if missing:
        raise DataError(f"the InferenceData's posterior lacks the latent variable(s) {missing}")
    out = {}
    for k in latent:
        v = np.asarray(post[k].values)
        out[k] = v.reshape((-1,) + v.shape[2:])
    return out
