"""Adaptive tempered sequential Monte Carlo (SMC) estimate of the model evidence.

Particles start as prior draws and move through the tempered targets
``pi_b(theta) ∝ p(theta) p(y | theta)^b``, ``0 = b_0 < b_1 < ... < b_T = 1``. Each next
temperature is chosen by bisection so that the effective sample size of the incremental
weights ``p(y | theta)^(b_t - b_{t-1})`` is ``target_ess`` times the number of particles with
a finite likelihood (Jasra et al. 2011; Zhou, Johansen & Aston 2016). The evidence is the
product of the mean incremental weights,

    log p(y) = sum_t log mean_i p(y | theta_i)^(b_t - b_{t-1}),

an unbiased estimate of ``p(y)`` for a fixed schedule. After each reweighting the particles
are resampled (systematic) and moved by random-walk Metropolis steps with a Gaussian proposal
shaped by the particle covariance, its scale adapted towards 25–35 % acceptance, repeated until
a particle has moved with probability 0.99 (at least ``min_steps``, at most ``max_steps``).

The Monte-Carlo error comes from ``runs`` independent runs: the estimate is the mean of their
log evidences and its standard error their standard deviation over ``sqrt(runs)``.

Works on the unconstrained space of any NumPyro model (constrained sites are mapped by
NumPyro's bijections, with their Jacobians in the prior).
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

from bayesbio.errors import ModelError
from bayesbio.infer._common import check_positive_int, check_probability, check_seed
from bayesbio.select._logdensity import LogDensity, log_density
from bayesbio.select.evidence import EvidenceEstimate

__all__ = ["log_evidence_smc"]

_BLOCK = 5  # Metropolis steps per compiled call


def _ess(logw):
    finite = np.isfinite(logw)
    if not finite.any():
        return 0.0
    lw = logw[finite] - logw[finite].max()
    w = np.exp(lw)
    return float(w.sum() ** 2 / (w**2).sum())


def _next_beta(ll, beta, fraction):
    """Largest step with ESS(exp(delta * ll)) >= fraction * (# finite ll), by bisection."""
    finite = np.isfinite(ll)
    target = fraction * finite.sum()
    room = 1.0 - beta
    if _ess(room * ll) >= target:
        return 1.0
    lo, hi = 0.0, room
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _ess(mid * ll) >= target:
            lo = mid
        else:
            hi = mid
    return beta + max(lo, 1e-12)


def _systematic(rng, logw):
    w = np.exp(logw - logsumexp(logw))
    n = len(w)
    positions = (rng.random() + np.arange(n)) / n
    idx = np.searchsorted(np.cumsum(w), positions)
    return np.minimum(idx, n - 1)


def _weighted_cov(x, logw):
    w = np.exp(logw - logsumexp(logw))
    mean = w @ x
    centred = x - mean
    cov = (centred * w[:, None]).T @ centred
    jitter = 1e-10 * max(1.0, float(np.trace(cov)) / x.shape[1])
    return cov + jitter * np.eye(x.shape[1])


class _Kernels:
    """Compiled pieces for one model: batched log densities and a block of Metropolis steps."""

    def __init__(self, ld: LogDensity):
        split = jax.vmap(ld.split)
        self.split = jax.jit(split)

        def block(key, x, lp, ll, beta, chol, scale):
            def step(carry, k):
                x, lp, ll, accepted = carry
                k1, k2 = jax.random.split(k)
                prop = x + scale * jax.random.normal(k1, x.shape, x.dtype) @ chol.T
                lp_p, ll_p = split(prop)
                log_ratio = (lp_p + beta * ll_p) - (lp + beta * ll)
                log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
                accept = jnp.log(jax.random.uniform(k2, lp.shape, x.dtype)) < log_ratio
                x = jnp.where(accept[:, None], prop, x)
                lp = jnp.where(accept, lp_p, lp)
                ll = jnp.where(accept, ll_p, ll)
                return (x, lp, ll, accepted + accept), None

            keys = jax.random.split(key, _BLOCK)
            init = (x, lp, ll, jnp.zeros(lp.shape, jnp.int32))
            (x, lp, ll, accepted), _ = jax.lax.scan(step, init, keys)
            return x, lp, ll, accepted

        self.block = jax.jit(block)


def _one_run(ld, kernels, key, rng, particles, target_ess, min_steps, max_steps, max_stages):
    key, k0 = jax.random.split(key)
    x = ld.prior_draws(k0, particles)
    lp, ll = kernels.split(x)
    x, lp, ll = np.asarray(x), np.asarray(lp), np.asarray(ll)
    if not np.isfinite(lp).all():
        raise ModelError(f"model '{ld.prepared.spec.name}': a prior draw has a non-finite prior density")
    if not np.isfinite(ll).any():
        raise ModelError(
            f"model '{ld.prepared.spec.name}': every one of {particles} prior draws has zero likelihood; "
            "the prior does not cover the data"
        )
    d = x.shape[1]
    scale = 2.38 / math.sqrt(d)
    beta, log_z = 0.0, 0.0
    betas, acceptance, steps = [0.0], [], []
    while beta < 1.0:
        if len(betas) > max_stages:
            raise ModelError(
                f"SMC for model '{ld.prepared.spec.name}' needed more than {max_stages} temperatures "
                "(the likelihood is extremely concentrated relative to the prior); raise max_stages"
            )
        new_beta = _next_beta(ll, beta, target_ess)
        with np.errstate(invalid="ignore"):
            logw = np.where(np.isfinite(ll), (new_beta - beta) * ll, -np.inf)
        log_z += float(logsumexp(logw) - np.log(particles))
        cov = _weighted_cov(x[np.isfinite(logw)], logw[np.isfinite(logw)])
        chol = np.linalg.cholesky(cov)
        idx = _systematic(rng, logw)
        x, lp, ll = x[idx], lp[idx], ll[idx]
        beta = new_beta
        betas.append(beta)
        done, acc_total = 0, 0
        needed = min_steps
        while done < needed:
            key, kb = jax.random.split(key)
            x, lp, ll, accepted = kernels.block(kb, x, lp, ll, beta, chol, scale)
            done += _BLOCK
            acc_total += int(np.asarray(accepted).sum())
            rate = acc_total / (done * particles)
            moved = math.log(0.01) / math.log(max(1e-12, 1.0 - rate)) if rate < 1 else 1
            needed = int(min(max_steps, max(min_steps, math.ceil(moved))))
        x, lp, ll = np.asarray(x), np.asarray(lp), np.asarray(ll)
        rate = acc_total / (done * particles)
        acceptance.append(rate)
        steps.append(done)
        scale *= math.exp(2.0 * (rate - 0.3))
        scale = float(np.clip(scale, 0.01, 10.0))
    return log_z, dict(betas=betas, acceptance=acceptance, steps=steps, particles=x)


def log_evidence_smc(
    model,
    data=None,
    *,
    particles: int = 2000,
    runs: int = 4,
    seed: int = 0,
    target_ess: float = 0.5,
    min_steps: int = 10,
    max_steps: int = 60,
    max_stages: int = 1000,
) -> EvidenceEstimate:
    """Log marginal likelihood of a model by adaptive tempered SMC.

    Parameters
    ----------
    model : str, ModelSpec or callable
        As for :func:`bayesbio.sample_nuts`.
    data : dict, path or None
        As for :func:`bayesbio.sample_nuts`.
    particles : int
        Particles per run.
    runs : int
        Independent runs; their spread gives the Monte-Carlo standard error (>= 2).
    seed : int
    target_ess : float
        Fraction of particles kept effective at each temperature step (0 < target_ess < 1).
    min_steps, max_steps : int
        Bounds on the Metropolis moves per temperature.
    max_stages : int
        Give up (with an error) after this many temperatures.

    Returns
    -------
    EvidenceEstimate
        ``details``: ``runs`` (log evidence of each run), ``stages`` (temperatures per run),
        ``mean_acceptance``, ``seconds``, ``particles`` (final unconstrained particles of run 1).

    Examples
    --------
    >>> est = log_evidence_smc("my_model.py")            # doctest: +SKIP
    >>> est.log_evidence, est.se                          # doctest: +SKIP
    """
    particles = check_positive_int("particles", particles, minimum=10)
    runs = check_positive_int("runs", runs, minimum=2)
    seed = check_seed(seed)
    target_ess = check_probability("target_ess", target_ess)
    min_steps = check_positive_int("min_steps", min_steps)
    max_steps = check_positive_int("max_steps", max_steps, minimum=min_steps)
    max_stages = check_positive_int("max_stages", max_stages)
    t0 = time.perf_counter()
    ld = model if isinstance(model, LogDensity) else log_density(model, data)
    kernels = _Kernels(ld)
    keys = jax.random.split(jax.random.PRNGKey(seed), runs)
    values, infos = [], []
    for r in range(runs):
        value, info = _one_run(ld, kernels, keys[r], np.random.default_rng([seed, r]), particles, target_ess, min_steps, max_steps, max_stages)
        values.append(value)
        infos.append(info)
    values = np.array(values)
    se = float(values.std(ddof=1) / np.sqrt(runs))
    details = dict(
        runs=values.tolist(),
        stages=[len(i["betas"]) - 1 for i in infos],
        mean_acceptance=float(np.mean([np.mean(i["acceptance"]) for i in infos])),
        mean_steps=float(np.mean([np.mean(i["steps"]) for i in infos])),
        particles=infos[0]["particles"],
        seconds=time.perf_counter() - t0,
        n_particles=particles,
    )
    return EvidenceEstimate(log_evidence=float(values.mean()), se=se, method="smc", details=details)
