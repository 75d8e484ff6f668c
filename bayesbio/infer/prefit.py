"""Pre-fit for NUTS: a short mean-field variational fit before warm-up.

NumPyro's warm-up starts from an identity mass matrix and adapts it only after its first
75-iteration window. For hierarchical models with hundreds of latent variables whose posterior
scales differ by orders of magnitude (population parameters known to 1 %, random effects of
unit scale) that first window builds trees of hundreds to 1,023 leapfrog steps per iteration,
and its trajectories wander into regions where the ODE solves are slow or fail. Measured on
the theophylline model with 200 simulated patients, one chain: 100 warm-up iterations with an
identity start took 57,000 leapfrog steps; after a mean-field pre-fit, 3,000
(``benchmarks/README.md``, levers log).

``prefit="svi"`` fits a mean-field normal approximation (:class:`numpyro.infer.autoguide.AutoNormal`,
Adam, :data:`STEPS` steps, updates with a non-finite loss skipped) and then

* starts each chain at its own draw from that approximation (on the unconstrained scale; a
  draw without a finite log density and gradient falls back to the approximation's mean), and
* gives warm-up the approximation's variances as the initial diagonal of the inverse mass
  matrix (the diagonal of a dense one with ``dense_mass=True``).

Limit: with a fixed Adam step, the location of each site keeps jittering by roughly the
learning rate, and scales below that come out too wide (a Gaussian site of posterior SD 0.014
came out 1.0x to 3.0x too wide over six random keys, one of SD 0.0014 4x to 29x; a decaying
learning rate narrowed this only a little). The pre-fit gets the
order of the scales right, which is what the first warm-up window needs; it is no estimate of
the posterior.

Warm-up then adapts step size and mass matrix as usual, so the pre-fit changes where
adaptation starts, not what it converges to. Mean-field fits understate posterior variances
and the chains start closer together than with a uniform start: the warm-up that follows is
what makes R-hat meaningful, as with any start.

``prefit="map"`` is for posteriors with poor local modes, where a chain started in the wrong
basin stays there (the Lotka–Volterra and Ogden-1 SBC runs, ``benchmarks/results/sbc/``): each
chain draws :data:`MAP_STARTS` points from the init strategy, runs L-BFGS from each
(:func:`bayesbio.infer.laplace.search_modes`, at most :data:`MAP_ITERATIONS` iterations) and
starts at the end point with the highest log density. The chains search independently, so
chains that end in different modes still show it in R-hat; warm-up starts from the usual
identity metric. It finds the dominant mode, not every mode: a posterior with real mass in
several modes needs more than this start.

``prefit="laplace"`` runs the ``"svi"`` fit, then measures the Hessian at its mean as one block
per patient plus the population parameters and returns the map to coordinates where that
Hessian is the identity (:mod:`bayesbio.infer.whiten`); NUTS then samples those coordinates,
each chain from its own draw of that Gaussian. Where the per-patient structure does not hold,
or the model has more than :data:`~bayesbio.infer.whiten.MAX_GLOBAL` population-level
coordinates, it warns and returns the ``"svi"`` pre-fit instead.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = ["PREFITS", "Prefit", "best_start", "laplace_prefit", "map_prefit", "prefit_points", "svi_fit_traced",
           "svi_prefit"]

#: Accepted values of ``sample_nuts(prefit=...)`` and ``bayesbio fit --prefit``.
PREFITS = ("none", "svi", "map", "laplace")
#: ``prefit="laplace"``: the largest relative error of the assembled Hessian along the random
#: probe that still counts as the arrowhead structure (central differences alone: ~1e-6)
PROBE_TOLERANCE = 1e-3
#: the same in single precision (``--float32``; differences of step :data:`~bayesbio.infer.whiten.REL_STEP_32`)
PROBE_TOLERANCE_32 = 3e-2
#: ``prefit="map"``: mode searches per chain, and L-BFGS iterations per search (gradient
#: tolerance :data:`MAP_TOLERANCE`: a start needs the right basin, not a converged mode)
MAP_STARTS = 8
MAP_ITERATIONS = 500
MAP_TOLERANCE = 1e-5
#: Adam steps and learning rate of the pre-fit (the ELBO of the 200-patient theophylline model
#: is flat to 0.5 % by step 2,000 at this rate).
STEPS = 2000
LEARNING_RATE = 0.02


@dataclass(frozen=True)
class Prefit:
    """Result of a pre-fit: per-chain starting points and the initial inverse mass matrix."""

    #: site -> (chains, ...) values on the unconstrained scale
    start: dict
    #: (n,) diagonal of the inverse mass matrix, in the order of ``ravel_pytree`` of the sites
    #: (None: warm-up starts from the identity)
    inverse_mass: np.ndarray | None
    #: site -> (...) mean of the approximation on the unconstrained scale (the fall-back start)
    mean: dict
    #: the fit's final loss (SVI: negative ELBO; map: the best potential energy)
    final_loss: float
    seconds: float
    #: ``prefit="laplace"``: the arrays of :func:`bayesbio.infer.whiten.whiten` (NUTS samples the
    #: whitened coordinates); None otherwise
    whitening: dict | None = None


def svi_prefit(model, data, key, chains: int, *, init_strategy, latent, steps: int = STEPS,
               learning_rate: float = LEARNING_RATE) -> Prefit | None:
    """Mean-field SVI fit of ``model(data)``; None (with a warning) when it gives no usable scales."""
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal
    from numpyro.optim import Adam

    t0 = time.perf_counter()
    guide = AutoNormal(model, init_loc_fn=init_strategy, init_scale=0.1)
    svi = SVI(model, guide, Adam(learning_rate), Trace_ELBO())
    key_fit, key_start = jax.random.split(key)
    result = svi.run(key_fit, steps, data, progress_bar=False, stable_update=True)
    losses = np.asarray(result.losses)
    params = result.params
    mean, scale = {}, {}
    for name in latent:
        loc_key, scale_key = f"{name}_auto_loc", f"{name}_auto_scale"
        if loc_key not in params or scale_key not in params:
            warnings.warn(f"prefit: latent site '{name}' is not in the variational fit; "
                          "NUTS starts without the pre-fit", RuntimeWarning, stacklevel=3)
            return None
        mean[name] = np.asarray(params[loc_key])
        scale[name] = np.asarray(params[scale_key])
    flat_scale, _ = ravel_pytree(scale)
    flat_scale = np.asarray(flat_scale)
    tail = losses[-min(100, losses.size):]
    if not (np.all(np.isfinite(flat_scale)) and np.any(np.isfinite(tail))):
        warnings.warn("prefit: the variational fit gave no finite scales (every ELBO evaluation "
                      "failed?); NUTS starts without the pre-fit", RuntimeWarning, stacklevel=3)
        return None
    # scales far outside the unit scale of the unconstrained space are kept, only bounded away
    # from 0 and infinity so the mass matrix stays invertible
    inverse_mass = np.clip(flat_scale, 1e-6, 1e3) ** 2
    keys = jax.random.split(key_start, len(mean))
    start = {
        name: np.asarray(mean[name] + scale[name] * jax.random.normal(k, (chains,) + mean[name].shape,
                                                                      dtype=jnp.result_type(mean[name])))
        for k, name in zip(keys, sorted(mean))
    }
    return Prefit(start=start, inverse_mass=inverse_mass, mean=mean,
                  final_loss=float(np.nanmean(tail[np.isfinite(tail)])), seconds=time.perf_counter() - t0)


def laplace_prefit(model, data, key, chains: int, *, init_strategy, latent, n_patients) -> Prefit | None:
    """Mean-field SVI fit, then the structured Hessian at its mean and the whitening map built
    from it (:mod:`bayesbio.infer.whiten`); each chain starts at its own draw from that Gaussian.

    Falls back (with a warning) to the plain SVI pre-fit when the model has more than
    :data:`~bayesbio.infer.whiten.MAX_GLOBAL` global coordinates, when the Hessian is not finite,
    or when the probe shows that patients couple (the arrowhead structure does not hold).
    """
    from numpyro.infer.util import initialize_model

    from bayesbio.infer import whiten as wh

    t0 = time.perf_counter()
    key_svi, key_probe, key_start = jax.random.split(key, 3)
    fitted = svi_prefit(model, data, key_svi, chains, init_strategy=init_strategy, latent=latent)
    if fitted is None:
        return None
    lay = wh.layout(fitted.mean, n_patients)
    if lay.glob.size > wh.MAX_GLOBAL:
        warnings.warn(f"prefit 'laplace': {lay.glob.size} global coordinates (more than {wh.MAX_GLOBAL}); "
                      "NUTS starts from the mean-field pre-fit instead", RuntimeWarning, stacklevel=3)
        return fitted
    x0, unravel = ravel_pytree({k: jnp.asarray(v) for k, v in fitted.mean.items()})

    @jax.jit
    def build(data, x0, key_probe, key_start):
        _, potential_gen, _, _ = initialize_model(key_probe, model, init_strategy=init_strategy, dynamic_args=True,
                                                  model_args=(data,))
        potential = potential_gen(data)
        a, b, d, error = wh.structured_hessian(jax.grad(lambda x: potential(unravel(x))), x0, lay, key_probe)
        arrays = wh.whiten(a, b, d, x0, lay)
        # the measured blocks and the factors built from them (a block of zeros has no factor)
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(v)) for v in (a, b, d, *(
            arrays[name] for name in ("m", "lt", "ct", "p", "pt")))]))
        w = jax.random.normal(key_start, (chains, x0.shape[0]), x0.dtype)
        return arrays, error, finite, jax.vmap(lambda w: wh.to_sites(arrays, unravel, w))(w)

    arrays, error, finite, start = jax.device_get(build(data, x0, key_probe, key_start))
    # central differences in single precision carry ~eps / REL_STEP_32 ~ 2e-5 of rounding, and
    # the curvature's change over the step more: a looser bar there
    tolerance = PROBE_TOLERANCE if x0.dtype == jnp.float64 else PROBE_TOLERANCE_32
    if not (bool(finite) and float(error) <= tolerance):
        why = ("the Hessian at the pre-fit mean or its factors are not finite" if not bool(finite) else
               f"the per-patient structure does not hold (probe error {float(error):.1e} > {tolerance:g}: "
               "patients couple, or a site with one entry per patient is not a random effect)")
        warnings.warn(f"prefit 'laplace': {why}; NUTS starts from the mean-field pre-fit instead",
                      RuntimeWarning, stacklevel=3)
        return fitted
    return Prefit(start={k: np.asarray(v) for k, v in start.items()}, inverse_mass=None, mean=fitted.mean,
                  final_loss=fitted.final_loss, seconds=time.perf_counter() - t0, whitening=arrays)


def prefit_points(potential_fn, start, mean, found):
    """Per chain: the pre-fit draw where its log density and gradient are finite, else the
    pre-fit mean where that is, else the point NumPyro's init strategy ``found``."""

    def at(z):
        pe, grad = jax.value_and_grad(potential_fn)(z)
        ok = jnp.isfinite(pe) & jnp.all(jnp.isfinite(ravel_pytree(grad)[0]))
        return pe, grad, ok

    pe_s, grad_s, ok_s = jax.vmap(at)(start)
    pe_m, grad_m, ok_m = at(mean)

    def pick(draw, avg, old):
        shape = (-1,) + (1,) * (jnp.ndim(draw) - 1)
        return jnp.where(ok_s.reshape(shape), draw, jnp.where(ok_m, avg[None], old))

    z_old, pe_old, grad_old = found
    return (
        jax.tree_util.tree_map(pick, start, mean, z_old),
        pick(pe_s, pe_m, pe_old),
        jax.tree_util.tree_map(pick, grad_s, grad_m, grad_old),
    )


def svi_fit_traced(model, args, key, *, init_strategy, latent, steps: int = STEPS,
                   learning_rate: float = LEARNING_RATE) -> tuple[dict, dict]:
    """The pre-fit's mean-field fit as a pure, traceable function: ``(mean, scale)``, dicts of
    site -> unconstrained-scale location and scale.

    The same guide, optimiser, step count and skipping of non-finite updates as
    :func:`svi_prefit`, written as a ``lax.scan`` so it can run inside a compiled (and
    ``vmap``-ed) program, e.g. once per replication of SBC (:mod:`bayesbio.sbc.fit`). A new
    guide is made per call: a guide keeps the first trace's values, which must not leak into
    another trace.
    """
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal
    from numpyro.optim import Adam

    guide = AutoNormal(model, init_loc_fn=init_strategy, init_scale=0.1)
    svi = SVI(model, guide, Adam(learning_rate), Trace_ELBO())
    state = svi.init(key, *args)
    state, _ = jax.lax.scan(lambda st, _: svi.stable_update(st, *args), state, None, length=steps)
    params = svi.get_params(state)
    missing = [n for n in latent if f"{n}_auto_loc" not in params]
    if missing:
        raise ValueError(f"pre-fit: latent site(s) {missing} are not in the variational fit")
    return ({n: params[f"{n}_auto_loc"] for n in latent}, {n: params[f"{n}_auto_scale"] for n in latent})


def best_start(flat_potential, x0s):
    """Traceable: L-BFGS from every row of ``x0s``; the end point of lowest potential energy and
    that energy (``inf`` when no search ended at a finite point)."""
    from bayesbio.infer.laplace import search_modes  # optax on first use

    xs, values, _, _ = search_modes(flat_potential, x0s, max_iter=MAP_ITERATIONS, tol=MAP_TOLERANCE)
    best = jnp.argmin(values)
    return xs[best], values[best]


def map_prefit(model, data, key, chains: int, *, init_strategy, starts: int = MAP_STARTS) -> Prefit | None:
    """Per chain, the best of ``starts`` L-BFGS mode searches from init-strategy points (the
    module docstring); None (with a warning) when no search of any chain ends at a finite point."""
    from numpyro.infer.util import initialize_model

    t0 = time.perf_counter()
    keys = jax.random.split(key, chains * starts)

    @jax.jit
    def search(keys, data):
        info, potential_gen, _, _ = initialize_model(keys, model, init_strategy=init_strategy, dynamic_args=True,
                                                     model_args=(data,))
        unravel = ravel_pytree(jax.tree_util.tree_map(lambda x: x[0], info.z))[1]
        x0s = jax.vmap(lambda z: ravel_pytree(z)[0])(info.z).reshape(chains, starts, -1)
        potential = potential_gen(data)
        xs, values = jax.vmap(lambda x0: best_start(lambda x: potential(unravel(x)), x0))(x0s)
        return jax.vmap(unravel)(xs), values

    start, values = jax.device_get(search(keys, data))
    values = np.asarray(values)
    if not np.any(np.isfinite(values)):
        warnings.warn("prefit: no mode search ended at a point where the model can be evaluated; NUTS starts "
                      "without the pre-fit", RuntimeWarning, stacklevel=3)
        return None
    best = int(np.argmin(values))
    mean = {name: np.asarray(v[best]) for name, v in start.items()}
    return Prefit(start={name: np.asarray(v) for name, v in start.items()}, inverse_mass=None, mean=mean,
                  final_loss=float(values[best]), seconds=time.perf_counter() - t0)
