"""Rank statistics of simulation-based calibration: ranks, uniformity tests, ECDF bands.

Pure NumPy/SciPy functions (no JAX), so they are cheap to test on their own.

If the posterior draws are exact, the rank of the true parameter among ``L`` posterior draws
is uniform on ``{0, ..., L}`` (Talts et al. 2018, "Validating Bayesian inference algorithms
with simulation-based calibration", arXiv:1804.06788, Theorem 1).

* :func:`chi_square_uniformity` bins the ranks and compares the counts with their expectation
  (Pearson's chi-square, ``bins - 1`` degrees of freedom);
* :func:`holm` adjusts the p-values of several parameters for multiplicity (Holm 1979,
  "A simple sequentially rejective multiple test procedure"), controlling the family-wise
  error rate without assuming independence between parameters;
* :func:`ecdf_band` gives the simultaneous confidence band of the rank ECDF of Säilynoja,
  Bürkner & Vehtari (2022, "Graphical test for discrete uniformity and its applications in
  goodness-of-fit evaluation and multiple sample comparison", Statistics and Computing 32:32),
  with the adjusted pointwise level found by simulation (their sec. 2.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "EcdfBand",
    "bin_ranks",
    "chi_square_uniformity",
    "ecdf_band",
    "ecdf_in_band",
    "holm",
    "ranks",
]


def ranks(prior_values: np.ndarray, posterior_draws: np.ndarray) -> np.ndarray:
    """Rank of each true value among its posterior draws: ``#{draws < true}``.

    ``prior_values`` has shape ``(reps,)``, ``posterior_draws`` shape ``(reps, L)``; the
    result is an integer array of shape ``(reps,)`` with values in ``0 .. L``.
    """
    prior_values = np.asarray(prior_values, dtype=float)
    posterior_draws = np.asarray(posterior_draws, dtype=float)
    if posterior_draws.ndim != 2 or prior_values.shape != posterior_draws.shape[:1]:
        raise ValueError(
            f"ranks: expected prior values (reps,) and draws (reps, L); got {prior_values.shape} "
            f"and {posterior_draws.shape}"
        )
    return np.sum(posterior_draws < prior_values[:, None], axis=1).astype(np.int64)


def bin_ranks(r: np.ndarray, n_draws: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of ranks (values ``0 .. n_draws``) in ``bins`` equal-width bins, and the
    probability of each bin under uniformity (exact, also when ``n_draws + 1`` is not a
    multiple of ``bins``)."""
    levels = n_draws + 1
    bins = min(bins, levels)
    which = (np.arange(levels) * bins) // levels  # bin of each possible rank
    probs = np.bincount(which, minlength=bins) / levels
    counts = np.bincount(which[np.asarray(r, dtype=np.int64)], minlength=bins)
    return counts, probs


def chi_square_uniformity(r: np.ndarray, n_draws: int, bins: int) -> tuple[float, int, float]:
    """Pearson chi-square test of binned ranks against uniformity: ``(statistic, dof, p)``."""
    counts, probs = bin_ranks(r, n_draws, bins)
    expected = probs * counts.sum()
    statistic = float(np.sum((counts - expected) ** 2 / expected))
    dof = len(counts) - 1
    return statistic, dof, float(stats.chi2.sf(statistic, dof))


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values (same order as the input)."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.maximum.accumulate(scaled)
    out = np.empty_like(p)
    out[order] = adjusted
    return out


@dataclass(frozen=True)
class EcdfBand:
    """Simultaneous band of the rank ECDF at ``z = i / (L + 1)``, ``i = 1 .. L``.

    ``lower`` and ``upper`` bound the ECDF (fractions); ``gamma`` is the adjusted pointwise
    level, ``level`` the simultaneous coverage."""

    z: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    gamma: float
    level: float


def _ecdf_counts(r: np.ndarray, n_draws: int) -> np.ndarray:
    """``#{ranks < i}`` for ``i = 1 .. n_draws``."""
    return np.cumsum(np.bincount(r, minlength=n_draws + 1))[:-1]


def ecdf_band(n_reps: int, n_draws: int, *, level: float = 0.95, simulations: int = 2000,
              seed: int = 0) -> EcdfBand:
    """Simultaneous ``level`` band for the ECDF of ``n_reps`` uniform ranks on ``0 .. n_draws``.

    Under uniformity ``N F(z_i) ~ Binomial(N, z_i)``. The band is the pointwise
    ``1 - gamma`` binomial interval at every ``z_i``, with ``gamma`` chosen by simulation so
    that a whole uniform ECDF stays inside with probability ``level``.
    """
    n, levels = int(n_reps), int(n_draws) + 1
    z = np.arange(1, levels) / levels
    rng = np.random.default_rng(seed)
    sims = rng.integers(0, levels, size=(simulations, n))
    counts = np.cumsum(
        np.stack([np.bincount(row, minlength=levels) for row in sims]), axis=1
    )[:, :-1]
    below = stats.binom.cdf(counts, n, z)
    above = stats.binom.sf(counts - 1, n, z)
    min_p = np.min(2.0 * np.minimum(below, above), axis=1)
    gamma = float(np.quantile(min_p, 1.0 - level))
    lower = stats.binom.ppf(gamma / 2.0, n, z) / n
    upper = stats.binom.ppf(1.0 - gamma / 2.0, n, z) / n
    return EcdfBand(z=z, lower=lower, upper=upper, gamma=gamma, level=level)


def ecdf_in_band(r: np.ndarray, n_draws: int, band: EcdfBand) -> bool:
    """Whether the ECDF of the ranks ``r`` stays inside the simultaneous band."""
    f = _ecdf_counts(np.asarray(r, dtype=np.int64), n_draws) / len(r)
    return bool(np.all((f >= band.lower - 1e-12) & (f <= band.upper + 1e-12)))
