"""Variational inference (SVI) with NumPyro autoguides, returning posterior draws."""

from __future__ import annotations

import time
import warnings

import jax
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions.transforms import AffineTransform
from numpyro.infer import SVI, Predictive, Trace_ELBO, init_to_value
from numpyro.infer.autoguide import (
    AutoIAFNormal,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)

from bayesbio.errors import OptionError, describe
from bayesbio.infer._common import (
    FailureLog,
    check_positive_int,
    check_seed,
    prepare,
    run_attrs,
    show_progress,
    with_failure_context,
)
from bayesbio.infer._idata import build_inference_data
from bayesbio.infer.laplace import find_mode

__all__ = ["GUIDES", "fit_svi"]

class CentredIAFNormal(AutoIAFNormal):
    """Inverse autoregressive flow whose output is shifted to the starting point.

    NumPyro's IAF guide starts at the origin of the unconstrained space whatever its
    ``init_loc_fn``, which for mechanistic models can be a poor local mode (Lotka–Volterra:
    the prior median). Here the flow acts on a standard normal and its output is mapped by
    ``z = z_init + init_scale * flow(eps)``, so the fit starts at the mode found beforehand.
    """

    def __init__(self, model, *, init_scale: float = 0.1, **kwargs):
        self._init_scale = init_scale
        super().__init__(model, **kwargs)

    def _get_posterior(self):
        flow = super()._get_posterior()
        shift = AffineTransform(self._init_latent, self._init_scale)
        return dist.TransformedDistribution(flow, [shift])


#: Guides by name: mean-field normal, full-rank normal, low-rank-plus-diagonal normal, and an
#: inverse autoregressive flow (a normalising-flow guide).
GUIDES = {
    "normal": AutoNormal,
    "mvn": AutoMultivariateNormal,
    "lowrank": AutoLowRankMultivariateNormal,
    "flow": CentredIAFNormal,
}


def elbo_converged(losses: np.ndarray, *, window: int = 500, rtol: float = 1e-3) -> bool:
    """True when the mean loss of the last ``window`` steps changed by less than ``rtol``
    (relative to the loss scale) from the window before, and the loss is finite."""
    losses = np.asarray(losses, dtype=float)
    if losses.size < 2 * window or not np.all(np.isfinite(losses[-2 * window :])):
        return False
    last = losses[-window:].mean()
    prev = losses[-2 * window : -window].mean()
    scale = max(1.0, abs(last))
    # Monte-Carlo noise of a window mean, so a noisy but flat loss counts as converged
    noise = losses[-window:].std() / np.sqrt(window)
    return abs(last - prev) <= rtol * scale + 3.0 * noise


def fit_svi(
    model,
    data=None,
    *,
    guide: str = "mvn",
    steps: int = 20000,
    learning_rate: float = 5e-3,
    num_particles: int = 1,
    samples: int = 4000,
    starts: int = 8,
    seed: int = 0,
    progress: bool | None = None,
    dims=None,
    coords=None,
):
    """Fit a variational approximation and return draws from it as ``arviz.InferenceData``.

    Parameters
    ----------
    guide : {"normal", "mvn", "lowrank", "flow"}
        Variational family (see :data:`GUIDES`).
    steps : int
        Optimisation steps (Adam with the given ``learning_rate``).
    num_particles : int
        Monte-Carlo particles per ELBO gradient estimate.
    samples : int
        Draws from the fitted approximation (one chain).
    starts : int
        Mode searches that pick the guide's starting point (see :func:`~bayesbio.infer.laplace.find_mode`).

    The ELBO trace is stored in the ``svi_trace`` group (variable ``loss`` = −ELBO) and the
    convergence check (:func:`elbo_converged`) in ``posterior.attrs["converged"]``; a run that
    has not converged also warns.
    """
    if guide not in GUIDES:
        raise OptionError(f"'guide' must be one of {sorted(GUIDES)}; got {describe(guide)}")
    steps = check_positive_int("steps", steps)
    samples = check_positive_int("samples", samples)
    num_particles = check_positive_int("num_particles", num_particles)
    starts = check_positive_int("starts", starts)
    seed = check_seed(seed)
    if not isinstance(learning_rate, (int, float)) or not (0 < learning_rate < 1):
        raise OptionError(f"'learning_rate' must be in (0, 1); got {describe(learning_rate)}")

    t_start = time.perf_counter()
    prepared = prepare(model, data, dims=dims, coords=coords)
    log = FailureLog()
    wrapped = with_failure_context(prepared.spec.model, log)

    def counted(data):
        return wrapped(data, _bb_chain=0, _bb_iteration=0)

    key = jax.random.PRNGKey(seed)
    key_mode, key_fit, key_draw, key_pred = jax.random.split(key, 4)
    # start the guide at the best of several mode searches (mechanistic posteriors are often
    # multimodal; the prior median can sit in a poor local mode)
    x_map, unravel, _, postprocess, _, _ = find_mode(prepared, wrapped, key_mode, starts=starts)
    start = {k: v for k, v in postprocess(unravel(x_map)).items() if k in prepared.latent}
    auto = GUIDES[guide](counted, init_loc_fn=init_to_value(values=start))
    # a failed ODE solve gives an infinite loss: skip that step instead of poisoning the state
    import optax  # on first use: not needed by the NUTS path (start-up time)

    optimizer = optax.apply_if_finite(optax.adam(learning_rate), max_consecutive_errors=1000)
    svi = SVI(counted, auto, optimizer, Trace_ELBO(num_particles=num_particles))
    t_compiled = time.perf_counter()
    result = svi.run(key_fit, steps, prepared.data, progress_bar=show_progress(progress))
    losses = np.asarray(result.losses)
    t_fit = time.perf_counter()

    predictive = Predictive(
        prepared.spec.model, guide=auto, params=result.params, num_samples=samples,
        return_sites=prepared.latent + prepared.deterministic,
    )
    draws = predictive(key_draw, prepared.data)
    latent_and_det = {k: np.asarray(v)[None] for k, v in draws.items()}
    converged = elbo_converged(losses, window=min(500, max(10, steps // 10)))
    if not converged:
        warnings.warn(
            f"SVI ({guide}) did not converge in {steps} steps: the ELBO is still changing; "
            "raise 'steps' or lower 'learning_rate'",
            RuntimeWarning,
            stacklevel=2,
        )
    settings = dict(guide=guide, starts=starts, steps=steps, learning_rate=learning_rate, num_particles=num_particles, samples=samples)
    timings = {
        "compile_seconds": t_compiled - t_start,
        "fit_seconds": t_fit - t_compiled,
        "warmup_seconds": 0.0,
        "sampling_seconds": time.perf_counter() - t_fit,
    }
    attrs = run_attrs(prepared, "svi", settings, seed, timings)
    attrs["converged"] = int(converged)
    attrs["final_elbo"] = float(-np.mean(losses[-min(100, len(losses)) :]))
    sample_stats = {"solver_failures": np.zeros((1, samples), dtype=np.int64)}
    idata = build_inference_data(
        prepared, latent_and_det, sample_stats=sample_stats, attrs=attrs, rng_key=key_pred,
        per_chain_stats={"fit_solver_failures": np.array([log.total()])},
        extra_groups={"svi_trace": {"loss": losses}},
    )
    return idata
