"""SBC figures: rank histograms and ECDF-difference plots, one panel per scalar parameter.

Drawn on the Agg canvas without ``pyplot`` (as the report's figures), returned as PNG bytes.
"""

from __future__ import annotations

import base64

import numpy as np
from scipy import stats

from bayesbio.report.figures import _panel_grid, to_png
from bayesbio.sbc.stats import EcdfBand, _ecdf_counts, bin_ranks

__all__ = ["ecdf_difference_png", "rank_histogram_png"]

#: Pointwise coverage of the grey band of the rank histograms (Talts et al. 2018, Fig. 3).
HISTOGRAM_BAND = 0.99


def _png_bytes(fig) -> bytes:
    return base64.b64decode(to_png(fig))


def rank_histogram_png(ranks: dict[str, np.ndarray], n_draws: int, bins: int, p_holm: dict[str, float]) -> bytes:
    """Histograms of the binned ranks with the pointwise 99 % band of uniform counts."""
    fig, axes = _panel_grid(len(ranks), row_height=2.0)
    for ax, (name, r) in zip(axes, ranks.items()):
        counts, probs = bin_ranks(r, n_draws, bins)
        n = counts.sum()
        x = np.arange(len(counts))
        lo = stats.binom.ppf((1 - HISTOGRAM_BAND) / 2, n, probs)
        hi = stats.binom.ppf(1 - (1 - HISTOGRAM_BAND) / 2, n, probs)
        ax.fill_between(np.r_[x - 0.5, x[-1] + 0.5], np.r_[lo, lo[-1]], np.r_[hi, hi[-1]],
                        step="post", color="0.85", lw=0)
        ax.bar(x, counts, width=0.9, color="#4c72b0")
        ax.axhline(n / len(counts), color="0.3", lw=0.8)
        ax.set_title(f"{name}  (Holm p = {p_holm[name]:.3g})", fontsize=9)
        ax.set_xticks([])
        ax.set_xlabel("rank bin", fontsize=8)
    return _png_bytes(fig)


def ecdf_difference_png(ranks: dict[str, np.ndarray], n_draws: int, band: EcdfBand) -> bytes:
    """ECDF of the fractional ranks minus the uniform CDF, with the simultaneous band."""
    fig, axes = _panel_grid(len(ranks), row_height=2.0)
    for ax, (name, r) in zip(axes, ranks.items()):
        f = _ecdf_counts(np.asarray(r, dtype=np.int64), n_draws) / len(r)
        ax.fill_between(band.z, band.lower - band.z, band.upper - band.z, step="mid", color="0.85", lw=0)
        ax.step(band.z, f - band.z, where="mid", color="#4c72b0", lw=1.2)
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("fractional rank", fontsize=8)
    axes[0].set_ylabel(f"ECDF - uniform ({100 * band.level:.0f}% band)", fontsize=8)
    return _png_bytes(fig)
