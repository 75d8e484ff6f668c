"""Prior draws and simulated data for SBC: the model run generatively on its own design.

The model's data supply the design (times, doses, covariates, which records are missing);
every observed site is turned into a latent one (the "unobserve" handler that also builds the
posterior predictive, :class:`bayesbio.infer._idata._Unobserve`) and simulated together with
the parameters, in one vectorised, compiled trace of the model per batch of draws.

A model's joint density is ``prior x 1{the solve succeeds} x likelihood``: a parameter draw
whose ODE/PDE solve fails has density zero (bayesbio's ``-inf`` failure factor). The prior that
the posterior is calibrated against is therefore the prior *restricted to successful solves*,
and draws from it are obtained by rejection: draws with a failed solve, or with non-finite
parameters or data, are discarded and counted (``rejected``).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers

from bayesbio.errors import ModelError
from bayesbio.infer._common import Prepared
from bayesbio.infer._idata import _Unobserve
from bayesbio.ode import FAILURE_SITE_SUFFIX

__all__ = ["Simulation", "observed_sites", "simulate"]


@dataclass(frozen=True)
class Simulation:
    """``params[name]``: (reps, ...) prior draws; ``observations[name]``: (reps, ...) data
    simulated from them; ``attempts`` prior draws were made, ``rejected`` of them discarded."""

    params: dict[str, np.ndarray]
    observations: dict[str, np.ndarray]
    attempts: int
    rejected: int


def _is_factor(site) -> bool:
    return isinstance(site["fn"], dist.distribution.Unit)


def observed_sites(prepared: Prepared) -> list[str]:
    """Observed sites to simulate; a model with other ``numpyro.factor`` terms is refused,
    because its prior cannot be simulated by running the model forwards."""
    tr = handlers.trace(handlers.seed(prepared.spec.model, 0)).get_trace(prepared.data)
    factors = [
        name for name, site in tr.items()
        if site["type"] == "sample" and _is_factor(site) and not name.endswith(FAILURE_SITE_SUFFIX)
    ]
    if factors:
        raise ModelError(
            f"SBC: model '{prepared.spec.name}' adds factor terms {factors} (numpyro.factor) to its "
            "density, so its prior cannot be simulated by running it forwards; SBC needs a "
            "generative model (priors and observations only)"
        )
    return [name for name in prepared.observed if not _is_factor(tr[name])]


def simulate(prepared: Prepared, rng_key, reps: int, *, params: list[str], max_attempts: int = 20,
             round_size: int | None = None) -> Simulation:
    """Draw ``reps`` (parameters, data) pairs from the prior predictive distribution."""
    names = observed_sites(prepared)
    generative = _Unobserve(prepared.spec.model, names)
    data = prepared.data

    def one(key):
        tr = handlers.trace(handlers.seed(generative, key)).get_trace(data)
        ok = jnp.array(True)
        for name, site in tr.items():
            if site["type"] == "sample" and name.endswith(FAILURE_SITE_SUFFIX):
                ok = ok & jnp.all(site["fn"].log_prob(site["value"]) > -jnp.inf)
        values = {n: tr[n]["value"] for n in params}
        sims = {n: tr[n]["value"] for n in names}
        for v in (*values.values(), *sims.values()):
            ok = ok & jnp.all(jnp.isfinite(v))
        return values, sims, ok

    size = round_size or max(16, reps)
    draw = jax.jit(jax.vmap(one))
    kept_params: list[dict] = []
    kept_obs: list[dict] = []
    attempts = accepted = 0
    limit = reps * max_attempts
    round_index = 0
    while accepted < reps and attempts < limit:
        key = jax.random.fold_in(rng_key, round_index)
        values, sims, ok = jax.device_get(draw(jax.random.split(key, size)))
        round_index += 1
        for i in np.flatnonzero(ok):
            if accepted == reps or attempts + i + 1 > limit:
                break
            kept_params.append({k: v[i] for k, v in values.items()})
            kept_obs.append({k: v[i] for k, v in sims.items()})
            accepted += 1
            last = i
        attempts += size if accepted < reps else int(last) + 1
    if accepted < reps:
        raise ModelError(
            f"SBC: model '{prepared.spec.name}': only {accepted} of {attempts} prior draws could be "
            f"simulated (the others made the solver fail or gave non-finite data), {reps} were "
            "needed; the prior puts much of its mass where the model fails: tighten the priors, "
            "or raise the SBC setting 'max_prior_attempts'"
        )
    return Simulation(
        params={k: np.stack([r[k] for r in kept_params]) for k in params},
        observations={k: np.stack([r[k] for r in kept_obs]) for k in names},
        attempts=attempts,
        rejected=attempts - reps,
    )
