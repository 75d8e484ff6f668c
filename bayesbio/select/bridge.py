"""Bridge-sampling estimate of the model evidence from posterior draws.

Meng & Wong (1996) with the optimal bridge function, as set out by Gronau et al. (2017,
J. Math. Psychol. 81:80, "A tutorial on bridge sampling"): on the unconstrained space, a
multivariate normal proposal ``g`` is fitted to the first half of each chain's draws; with the
second halves (``N1`` draws, effective size ``N1_eff``) and ``N2 = N1`` proposal draws, the
fixed-point iteration

    r <- [ 1/N2 sum_j l2_j / (s1 l2_j + s2 r) ] / [ 1/N1 sum_i 1 / (s1 l1_i + s2 r) ],

``l = q / g`` (``q`` the unnormalised posterior), ``s1 = N1_eff / (N1_eff + N2)``, converges to
``p(y)``. The Monte-Carlo error is Frühwirth-Schnatter's (2004) relative mean-squared-error
approximation, with the posterior part inflated by the draws' autocorrelation (``N1 / ESS``),
so ``se(log p(y)) ≈ sqrt(RE^2)``.

Needs good posterior draws (e.g. :func:`bayesbio.sample_nuts`). :func:`bayesbio.select.log_evidence_smc`
is a different estimator: it may fit its reference density to the same draws, but its estimate
is consistent whatever that reference is.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from scipy.special import logsumexp

from bayesbio.errors import DataError, OptionError, describe
from bayesbio.infer._common import check_seed
from bayesbio.select._logdensity import LogDensity, log_density, posterior_draws
from bayesbio.select._reference import mean_and_cholesky
from bayesbio.select.evidence import EvidenceEstimate

__all__ = ["log_evidence_bridge"]


def _mvn_logpdf(x, mean, chol):
    z = np.linalg.solve(chol, (x - mean).T).T
    d = x.shape[1]
    return -0.5 * np.sum(z**2, axis=1) - np.sum(np.log(np.diag(chol))) - 0.5 * d * np.log(2 * np.pi)


def _ess_chains(values):
    """ESS of a (chains, draws) array (ArviZ bulk ESS)."""
    import arviz as az

    values = np.asarray(values, dtype=float)
    if values.shape[1] < 4 or not np.all(np.isfinite(values)):
        return float(values.size)
    return float(az.ess(values[None, ...] if values.ndim == 1 else values))


def _iterate(l1, l2, s1, s2, tol, max_iter):
    log_s1, log_s2 = np.log(s1), np.log(s2)
    log_r = 0.0
    for it in range(1, max_iter + 1):
        num = logsumexp(l2 - np.logaddexp(log_s1 + l2, log_s2 + log_r)) - np.log(len(l2))
        den = logsumexp(-np.logaddexp(log_s1 + l1, log_s2 + log_r)) - np.log(len(l1))
        new = num - den
        if abs(new - log_r) < tol:
            return new, it
        log_r = new
    return log_r, max_iter


def log_evidence_bridge(model, idata, data=None, *, seed: int = 0, tol: float = 1e-10, max_iter: int = 1000) -> EvidenceEstimate:
    """Log marginal likelihood by bridge sampling from the posterior draws in ``idata``.

    Parameters
    ----------
    model : str, ModelSpec or callable
        The model the draws come from.
    idata : arviz.InferenceData
        Posterior draws (at least 2 chains x 20 draws) of every latent variable.
    data : dict, path or None
        The data of the fit (default: the model's bundled data).
    seed : int
        Seed of the proposal draws.

    Returns
    -------
    EvidenceEstimate
        ``details``: ``iterations``, ``n_posterior``, ``ess_posterior``, ``relative_mse``.
    """
    seed = check_seed(seed)
    if not (isinstance(tol, float) and tol > 0):
        raise OptionError(f"'tol' must be a positive float; got {describe(tol)}")
    t0 = time.perf_counter()
    ld = model if isinstance(model, LogDensity) else log_density(model, data)
    if not hasattr(idata, "posterior"):
        raise DataError(f"'idata' must be an InferenceData with a posterior group; got {type(idata).__name__}")
    chains, draws = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    if draws < 20:
        raise DataError(f"bridge sampling needs at least 20 draws per chain; got {draws}")
    samples = posterior_draws(idata, ld.prepared.latent)
    u = np.asarray(ld.to_unconstrained(samples)).reshape(chains, draws, ld.dim)
    half = draws // 2
    fit = u[:, :half].reshape(-1, ld.dim)
    post = u[:, half:]
    n1 = post.shape[0] * post.shape[1]
    mean, chol = mean_and_cholesky(fit)
    rng = np.random.default_rng(seed)
    n2 = n1
    proposal = mean + rng.standard_normal((n2, ld.dim)) @ chol.T

    log_joint = jax.jit(jax.vmap(ld.log_joint))
    post_flat = post.reshape(-1, ld.dim)
    q1 = np.asarray(log_joint(post_flat))
    q2 = np.asarray(log_joint(proposal))
    l1 = q1 - _mvn_logpdf(post_flat, mean, chol)
    l2 = q2 - _mvn_logpdf(proposal, mean, chol)
    if not np.all(np.isfinite(l1)):
        raise DataError("a posterior draw has zero posterior density under the model: are the draws from this model and data?")
    l2 = np.where(np.isnan(l2), -np.inf, l2)

    ess_each = [_ess_chains(post[:, :, k]) for k in range(ld.dim)]
    n1_eff = float(np.clip(np.median(ess_each), 1.0, n1))
    s1 = n1_eff / (n1_eff + n2)
    s2 = n2 / (n1_eff + n2)
    shift = float(np.median(l1))
    log_r, iterations = _iterate(l1 - shift, l2 - shift, s1, s2, tol, max_iter)
    log_z = log_r + shift

    # Frühwirth-Schnatter (2004) relative MSE
    f1 = np.exp(-np.logaddexp(np.log(s1) + l2 - log_z, np.log(s2)))
    f2 = np.exp((l1 - log_z) - np.logaddexp(np.log(s1) + l1 - log_z, np.log(s2)))
    ess_f2 = _ess_chains(f2.reshape(post.shape[0], post.shape[1]))
    re2 = f1.var() / (n2 * f1.mean() ** 2) + f2.var() / (ess_f2 * f2.mean() ** 2)
    details = dict(iterations=iterations, n_posterior=n1, ess_posterior=n1_eff, ess_f2=ess_f2,
                   relative_mse=float(re2), seconds=time.perf_counter() - t0)
    if iterations >= max_iter:
        details["warning"] = f"the bridge iteration did not converge in {max_iter} iterations"
    return EvidenceEstimate(log_evidence=float(log_z), se=float(np.sqrt(re2)), method="bridge", details=details)
