"""Assemble an ``arviz.InferenceData`` from posterior draws, with the model's dims and coords."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.infer import Predictive
from numpyro.infer.util import log_likelihood

from bayesbio.infer._common import Prepared, strip_failure_sites

if TYPE_CHECKING:
    import arviz as az


class _Unobserve(numpyro.primitives.Messenger):
    """Turn the named observed sites into latent ones so they are simulated.

    A distribution broadcast against a larger observation (e.g. ``Normal(mu, s)`` with a vector
    ``obs``) is expanded to the observation's shape, so each replicate has one value per
    observation, as the log-likelihood has."""

    def __init__(self, fn, names):
        self.names = set(names)
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] in self.names and msg["is_observed"]:
            fn, obs = msg["fn"], msg["value"]
            shape = jnp.broadcast_shapes(fn.shape(), jnp.shape(obs))
            if shape != fn.shape():
                msg["fn"] = fn.expand(shape[: len(shape) - len(fn.event_shape)])
            msg["is_observed"] = False
            msg["value"] = None


def _flatten(samples: Mapping[str, np.ndarray], chains: int, draws: int) -> dict[str, jnp.ndarray]:
    return {k: jnp.reshape(jnp.asarray(v), (chains * draws,) + np.shape(v)[2:]) for k, v in samples.items()}


def _unflatten(d: Mapping[str, Any], chains: int, draws: int) -> dict[str, np.ndarray]:
    return {k: np.asarray(v).reshape((chains, draws) + np.shape(v)[1:]) for k, v in d.items()}


def predictive_groups(prepared: Prepared, samples: Mapping[str, np.ndarray], rng_key, *, batch: int = 4096):
    """Pointwise log-likelihood and posterior-predictive draws for every observed site."""
    chains, draws = next(iter(samples.values())).shape[:2]
    flat = _flatten(samples, chains, draws)
    model = prepared.spec.model
    data = prepared.data
    names = list(prepared.observed)

    @jax.jit
    def loglik(s):
        return strip_failure_sites(log_likelihood(model, s, data))

    @jax.jit
    def simulate(s, key):
        pred = Predictive(_Unobserve(model, names), posterior_samples=s, return_sites=names, batch_ndims=1)
        return pred(key, data)

    n = chains * draws
    ll_parts, pp_parts = [], []
    keys = jax.random.split(rng_key, max(1, -(-n // batch)))
    for i, start in enumerate(range(0, n, batch)):
        part = {k: v[start : start + batch] for k, v in flat.items()}
        ll_parts.append(jax.device_get(loglik(part)))
        pp_parts.append(jax.device_get(simulate(part, keys[i])))
    ll = {k: np.concatenate([p[k] for p in ll_parts]) for k in names}
    pp = {k: np.concatenate([p[k] for p in pp_parts]) for k in names}
    # masked (missing) observations have log-likelihood 0 here; observed_data keeps their NaN,
    # so consumers (LOO in the report) can drop exactly those points
    return _unflatten(ll, chains, draws), _unflatten(pp, chains, draws)


def build_inference_data(
    prepared: Prepared,
    posterior: Mapping[str, np.ndarray],
    *,
    sample_stats: Mapping[str, np.ndarray] | None,
    attrs: Mapping[str, Any],
    rng_key,
    per_chain_stats: Mapping[str, np.ndarray] | None = None,
    extra_groups: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> "az.InferenceData":
    """posterior (+ deterministic), sample_stats, log_likelihood, posterior_predictive, observed_data."""
    import arviz as az  # imported here: it costs ~2.5 s and is needed only once draws exist

    posterior = {k: np.asarray(v) for k, v in strip_failure_sites(posterior).items()}
    ll, pp = predictive_groups(prepared, posterior, rng_key)
    dims = {k: v for k, v in prepared.dims.items()}
    coords = dict(prepared.coords)
    for name, obs in prepared.observed.items():
        if name not in dims:
            dims[name] = [f"{name}_dim_{i}" for i in range(np.ndim(obs))]
    idata = az.from_dict(
        posterior=posterior,
        sample_stats=dict(sample_stats or {}),
        log_likelihood=ll,
        posterior_predictive=pp,
        observed_data={k: np.asarray(v) for k, v in prepared.observed.items()},
        coords=coords,
        dims=dims,
    )
    if per_chain_stats:
        for k, v in per_chain_stats.items():
            idata.sample_stats[k] = (("chain",), np.asarray(v))
    if extra_groups:
        import xarray as xr

        for group, variables in extra_groups.items():
            ds = xr.Dataset({k: ((f"{k}_step",), np.asarray(v)) for k, v in variables.items()})
            idata.add_groups({group: ds}, warn_on_custom_groups=False)
    idata.posterior.attrs.update(dict(attrs))
    for group in ("sample_stats", "log_likelihood", "posterior_predictive", "observed_data"):
        if hasattr(idata, group):
            getattr(idata, group).attrs.update({"model": attrs.get("model", ""), "method": attrs.get("method", "")})
    return idata
