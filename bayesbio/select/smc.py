"""Adaptive tempered sequential Monte Carlo (SMC) estimate of the model evidence.

On the prior path (``reference="prior"``) particles start as prior draws and move through the tempered targets
``pi_b(theta) ∝ p(theta) p(y | theta)^b``, ``0 = b_0 < b_1 < ... < b_T = 1``. Each next
temperature is chosen by bisection so that the effective sample size of the incremental
weights ``p(y | theta)^(b_t - b_{t-1})`` is ``target_ess`` times the number of particles with
a finite likelihood (Jasra et al. 2011; Zhou, Johansen & Aston 2016). The evidence is the
product of the mean incremental weights,

    log p(y) = sum_t log mean_i p(y | theta_i)^(b_t - b_{t-1}),

an unbiased estimate of ``p(y)`` for a fixed schedule. After each reweighting the particles
are resampled (systematic) and moved by Markov moves that leave the current tempered target
invariant: by default Hamiltonian Monte Carlo preconditioned by the particle covariance, its
step size adapted towards 75 % mean acceptance and its trajectory length fixed in whitened
units (random-walk Metropolis on request), each block preceded by an independence move with a
Gaussian-mixture proposal fitted to the particles (see :mod:`bayesbio.select._moves`). Moves repeat
until no whitened coordinate keeps a correlation above 0.1 with its value before the moves
(at least ``min_steps``, at most ``max_steps``). The estimate is only as good as the moves:
particles that lag behind the tempered target bias ``log p(y)`` downwards, which the
spread over independent runs does not reveal when every run lags alike.

Reference path (default, ``reference="t"``): instead of the prior, the path starts at a
normalised multivariate t (or Gaussian) ``q`` fitted to posterior draws (NUTS draws when given,
else a Laplace approximation), ``pi_b ∝ q(x)^(1-b) [p(x) p(y | x)]^b``; the incremental weights
are ``exp((b_t - b_{t-1}) (log p(x, y) - log q(x)))`` and ``log p(y)`` is the same sum (``q``
integrates to 1). The path is short and never visits the prior's tails, where sloppy models
(Treloar / 3-term Ogden) form thin curved ridges the moves cannot cross: measured there, the
prior path came out 1.5–5 nats low, the reference path (t, 5 dof, scale 1.5 x the NUTS draws'
covariance) 57.29 ± 0.01 against bridge sampling's 57.29–57.37 and importance sampling's 57.295.
The estimate stays consistent whatever ``q`` is; a poor ``q`` only costs temperatures.

The Monte-Carlo error comes from ``runs`` independent runs: the estimate is the mean of their
log evidences and its standard error their standard deviation over ``sqrt(runs)``.

Works on the unconstrained space of any NumPyro model (constrained sites are mapped by
NumPyro's bijections, with their Jacobians in the prior).
"""

from __future__ import annotations

import math
import time

import jax
import numpy as np
from scipy.special import logsumexp

from bayesbio.errors import ModelError, OptionError, describe
from bayesbio.infer._common import check_positive_int, check_probability, check_seed
from bayesbio.select._logdensity import LogDensity, log_density
from bayesbio.select._moves import BLOCK as _BLOCK
from bayesbio.select._moves import MOVES, Mixture, Moves, independence_step
from bayesbio.select._reference import REFERENCES, reference_from_draws, reference_log_pdf
from bayesbio.select.evidence import EvidenceEstimate

__all__ = ["log_evidence_smc"]

_HMC_ACCEPT = 0.75  # target mean acceptance probability of the HMC moves (Beskos et al. 2013: 0.651 optimal
#                     for long trajectories in high dimension; a little higher is more robust in curved targets)
_RWM_ACCEPT = 0.3  # random walk: ~0.234 optimal in high dimension, higher in low dimension
_TRAJECTORY = 1.5  # HMC trajectory length in whitened units (a quarter period, pi/2, decorrelates a Gaussian)
_MAX_LEAPFROG = 16
_DECORRELATED = 0.1  # stop moving once no whitened coordinate keeps a correlation above this with its start


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


def _decorrelation(z0, z):
    """Largest absolute correlation, over coordinates, between the particles before and after moving."""
    a = z0 - z0.mean(axis=0)
    b = z - z.mean(axis=0)
    denom = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(denom > 0, (a * b).sum(axis=0) / denom, 0.0)
    return float(np.max(np.abs(corr)))


def _one_run(ld, moves, key, rng, particles, target_ess, min_steps, max_steps, max_stages, reference=None):
    key, k0 = jax.random.split(key)
    ref = None if reference is None else reference.params
    x = ld.prior_draws(k0, particles) if reference is None else reference.sample(rng, particles)
    lp, ll = moves.split(x, ref)
    x, lp, ll = np.asarray(x), np.asarray(lp), np.asarray(ll)
    start = "prior" if reference is None else "reference"
    if not np.isfinite(lp).all():
        raise ModelError(f"model '{ld.prepared.spec.name}': a {start} draw has a non-finite {start} density")
    if not np.isfinite(ll).any():
        raise ModelError(
            f"model '{ld.prepared.spec.name}': every one of {particles} {start} draws has zero likelihood "
            f"(or prior) density; the {start} does not cover the posterior"
        )

    def split(y):
        return moves.split(y, ref)

    d = x.shape[1]
    hmc = moves.kind == "hmc"
    target = _HMC_ACCEPT if hmc else _RWM_ACCEPT
    eps = 0.5 if hmc else 2.38 / math.sqrt(d)
    beta, log_z = 0.0, 0.0
    betas, acceptance, steps, leapfrogs, independence = [0.0], [], [], [], []
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
        finite = np.isfinite(logw)
        cov = _weighted_cov(x[finite], logw[finite])
        chol = np.linalg.cholesky(cov)
        idx = _systematic(rng, logw)
        x, lp, ll = x[idx], lp[idx], ll[idx]
        beta = new_beta
        betas.append(beta)
        z0 = np.linalg.solve(chol, x.T).T
        mixture = Mixture(x, rng)
        done, prob_total, n_leap, imh_rate = 0, 0.0, 1, []
        while True:
            x, lp, ll, r = independence_step(rng, split, mixture, x, lp, ll, beta)
            imh_rate.append(r)
            n_leap = int(min(_MAX_LEAPFROG, math.ceil(_TRAJECTORY / eps))) if hmc else 1
            key, kb = jax.random.split(key)
            x, lp, ll, prob = moves.block(kb, x, lp, ll, beta, chol, eps, n_leap, ref)
            x, lp, ll = np.asarray(x), np.asarray(lp), np.asarray(ll)
            done += _BLOCK
            rate = float(np.asarray(prob).sum()) / (_BLOCK * particles)
            prob_total += rate * _BLOCK
            eps = float(np.clip(eps * math.exp(2.0 * (rate - target)), 1e-4, 10.0))
            if done >= max_steps:
                break
            if done >= min_steps and _decorrelation(z0, np.linalg.solve(chol, x.T).T) < _DECORRELATED:
                break
        acceptance.append(prob_total / done)
        independence.append(float(np.mean(imh_rate)))
        steps.append(done)
        leapfrogs.append(n_leap)
    return log_z, dict(betas=betas, acceptance=acceptance, steps=steps, leapfrogs=leapfrogs,
                  independence=independence, particles=x)


def _path_split(split, reference):
    """``(base log density, tempered log ratio)`` of the path: prior and likelihood, or
    ``log q`` and ``log p(x, y) - log q``."""
    if reference == "prior":
        return lambda x, ref: split(x)
    gaussian = reference == "gaussian"

    def path(x, ref):
        lp, ll = split(x)
        lq = reference_log_pdf(gaussian, ref, x)
        return lq, lp + ll - lq

    return path


def _reference_draws(ld, draws, seed):
    """Unconstrained posterior draws (n, d) to fit the reference to."""
    from bayesbio.select._logdensity import posterior_draws

    if draws is None:
        from bayesbio.infer.laplace import LaplaceError, fit_laplace

        try:
            draws = fit_laplace(ld.prepared.spec, ld.data, seed=seed)
        except (LaplaceError, ValueError) as err:
            raise ModelError(
                f"SMC reference for model '{ld.prepared.spec.name}': the Laplace approximation failed ({err}); "
                "pass reference_draws (e.g. NUTS draws) or reference='prior'"
            ) from None
    if hasattr(draws, "posterior"):
        draws = posterior_draws(draws, ld.prepared.latent)
    if isinstance(draws, dict):
        return np.asarray(ld.to_unconstrained(draws))
    u = np.asarray(draws, dtype=float)
    if u.ndim != 2 or u.shape[1] != ld.dim:
        raise OptionError(f"'reference_draws' must be an InferenceData, a dict of constrained draws or an "
                          f"unconstrained array of shape (n, {ld.dim}); got {describe(draws)}")
    return u


def log_evidence_smc(
    model,
    data=None,
    *,
    particles: int = 2000,
    runs: int = 4,
    seed: int = 0,
    target_ess: float = 0.5,
    min_steps: int = 2,
    max_steps: int = 40,
    max_stages: int = 1000,
    move: str = "hmc",
    reference: str = "t",
    reference_draws=None,
    reference_scale: float = 1.5,
    reference_df: float = 5.0,
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
        Bounds on the moves per temperature (rounded up to a multiple of 2); between them the
        particles move until no whitened coordinate keeps a correlation above 0.1 with its
        value after resampling.
    max_stages : int
        Give up (with an error) after this many temperatures.
    move : {"hmc", "rwm"}
        The Markov move: Hamiltonian Monte Carlo (default; needs a differentiable model, as
        NUTS does) or random-walk Metropolis (see :mod:`bayesbio.select._moves`).
    reference : {"t", "gaussian", "prior"}
        The tempering path. ``"prior"``: from the prior, ``pi_b ∝ p(x) p(y | x)^b``.
        ``"t"`` / ``"gaussian"``: from a normalised multivariate t / Gaussian ``q`` fitted to
        posterior draws, ``pi_b ∝ q(x)^(1-b) [p(x) p(y | x)]^b`` (see
        :mod:`bayesbio.select._reference`); shorter, and it never visits the prior's tails.
    reference_draws : InferenceData, dict or array, optional
        Posterior draws to fit ``q`` to: an InferenceData (e.g. of :func:`bayesbio.sample_nuts`),
        constrained draws ``{site: (n, ...)}`` or unconstrained draws (n, d). Default: draws of
        a Laplace approximation (:func:`bayesbio.fit_laplace`). The estimate stays consistent
        whatever ``q`` is; ``q`` only decides the efficiency.
    reference_scale : float
        ``q``'s scale matrix is ``reference_scale^2`` times the draws' covariance (> 1 covers
        the posterior's tails).
    reference_df : float
        Degrees of freedom of the t reference.

    Returns
    -------
    EvidenceEstimate
        ``details``: ``runs`` (log evidence of each run), ``stages`` (temperatures per run),
        ``mean_acceptance``, ``mean_steps`` (moves per temperature), ``max_leapfrog`` (HMC),
        ``seconds``, ``particles`` (final unconstrained particles of run 1).

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
    if move not in MOVES:
        raise OptionError(f"'move' must be one of {list(MOVES)}; got {describe(move)}")
    if reference not in REFERENCES:
        raise OptionError(f"'reference' must be one of {list(REFERENCES)}; got {describe(reference)}")
    t0 = time.perf_counter()
    ld = model if isinstance(model, LogDensity) else log_density(model, data)
    q = None
    if reference != "prior":
        u = _reference_draws(ld, reference_draws, seed)
        q = reference_from_draws(u, kind=reference, scale=reference_scale, df=reference_df)
    moves = ld._compiled(("smc_moves", move, reference), lambda: Moves(_path_split(ld.split, reference), move))
    keys = jax.random.split(jax.random.PRNGKey(seed), runs)
    values, infos = [], []
    for r in range(runs):
        value, info = _one_run(ld, moves, keys[r], np.random.default_rng([seed, r]), particles, target_ess, min_steps,
                               max_steps, max_stages, q)
        values.append(value)
        infos.append(info)
    values = np.array(values)
    se = float(values.std(ddof=1) / np.sqrt(runs))
    details = dict(
        runs=values.tolist(),
        stages=[len(i["betas"]) - 1 for i in infos],
        mean_acceptance=float(np.mean([np.mean(i["acceptance"]) for i in infos])),
        mean_steps=float(np.mean([np.mean(i["steps"]) for i in infos])),
        max_leapfrog=int(max(max(i["leapfrogs"]) for i in infos)),
        mean_independence_acceptance=float(np.mean([np.mean(i["independence"]) for i in infos])),
        move=move,
        reference=reference,
        particles=infos[0]["particles"],
        seconds=time.perf_counter() - t0,
        n_particles=particles,
    )
    return EvidenceEstimate(log_evidence=float(values.mean()), se=se, method="smc", details=details)
