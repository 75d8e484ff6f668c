"""The potential energy of a field model on the flat unconstrained scale, built in one compiled call.

:func:`bayesbio.infer.laplace.mode_problem` builds the same pieces through NumPyro's
``initialize_model``, which traces the model and checks the starting point op by op outside
``jit``: on CPU every such eager operation is a separately compiled (or persistent-cache-read)
XLA program, about a hundred of them for a field model, seconds of start-up for a Newton
search that then needs under a second. Here the starting point (the prior median of every
latent site, ``init_to_median(15)`` as there, plus ``starts - 1`` uniform draws in (-2, 2) on the
unconstrained scale) is computed by one jitted function, and the potential and the constraining
map are NumPyro's own :func:`numpyro.infer.util.potential_energy` and
:func:`numpyro.infer.util.constrain_fn` (same transforms and Jacobians as NUTS).

Models this does not cover (discrete latent sites, ``param`` sites) raise
:class:`FastPathUnavailable`; the caller then uses ``mode_problem``. No validity search is done
here: a start where the potential is not finite makes the Newton search fail, and the caller
falls back to L-BFGS from ``mode_problem``'s validated starts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions import biject_to
from numpyro.infer import init_to_median
from numpyro.infer.util import constrain_fn, potential_energy

__all__ = ["FastPathUnavailable", "fast_mode_problem"]

_KWARGS = {"_bb_chain": 0, "_bb_iteration": 0}


class FastPathUnavailable(Exception):
    """The model has sites the compiled set-up does not handle (use ``mode_problem``)."""


def _latent_sites(model, data, rng_key):
    tr = handlers.trace(
        handlers.substitute(handlers.seed(model, rng_key), substitute_fn=init_to_median(num_samples=15))
    ).get_trace(data, **_KWARGS)
    out = {}
    for name, site in tr.items():
        if site["type"] == "param":
            raise FastPathUnavailable(f"param site '{name}'")
        if site["type"] == "sample" and not site["is_observed"]:
            if site["fn"].support.is_discrete:
                raise FastPathUnavailable(f"discrete latent site '{name}'")
            out[name] = biject_to(site["fn"].support).inv(site["value"])
    return out


def fast_mode_problem(model, data, rng_key, *, starts: int = 1):
    """``(x0s, unravel, flat_potential, postprocess)`` as :func:`~bayesbio.infer.laplace.mode_problem`.

    ``model`` takes ``(data, _bb_chain=..., _bb_iteration=...)`` (a model wrapped by
    ``with_failure_context``).
    """
    key_median, key_uniform = jax.random.split(rng_key)

    @jax.jit
    def starting_points(key_median, key_uniform):
        z0 = _latent_sites(model, data, key_median)
        flat, _ = ravel_pytree(z0)
        more = jax.random.uniform(key_uniform, (starts - 1, flat.shape[0]), flat.dtype, -2.0, 2.0)
        return z0, jnp.concatenate([flat[None], more])

    z0, x0s = starting_points(key_median, key_uniform)
    if not z0:
        raise FastPathUnavailable("no continuous latent site")
    _, unravel = ravel_pytree(z0)

    def flat_potential(x):
        return potential_energy(model, (data,), _KWARGS, unravel(x))

    def postprocess(params):
        return constrain_fn(model, (data,), _KWARGS, params, return_deterministic=True)

    return x0s, unravel, flat_potential, postprocess
