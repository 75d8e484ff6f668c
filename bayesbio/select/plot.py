"""The model-comparison figure: ELPD, log evidence, posterior probabilities and stacking weights."""

from __future__ import annotations

import numpy as np

from bayesbio.tables import require_columns

__all__ = ["plot_comparison"]


def plot_comparison(table, *, details=None, figsize=(11, 3.2)):
    """Three panels, one row per model: ``elpd_loo ± se`` and ``log_evidence ± se`` (both
    relative to the best model) and bars of posterior probability and stacking weight.

    ``table`` is :attr:`Comparison.table` (or the CSV written by ``bayesbio compare``);
    ``details`` (:attr:`Comparison.details`) adds every evidence estimator's value as a marker.
    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    require_columns(table, ["model", "elpd_loo", "elpd_loo_se", "log_evidence", "log_evidence_se",
                            "posterior_prob", "stacking_weight"], source="comparison table")
    names = list(table["model"])
    y = np.arange(len(names))[::-1]
    fig, axes = plt.subplots(1, 3, figsize=figsize, sharey=True, constrained_layout=True)
    elpd = table["elpd_loo"].to_numpy(float)
    axes[0].errorbar(elpd - elpd.max(), y, xerr=2 * table["elpd_loo_se"].to_numpy(float), fmt="o", capsize=3)
    axes[0].axvline(0, color="0.6", lw=0.8)
    axes[0].set(xlabel="ELPD (LOO) − best  [± 2 se]", yticks=y, yticklabels=names)
    logz = table["log_evidence"].to_numpy(float)
    best = np.nanmax(logz)
    axes[1].errorbar(logz - best, y, xerr=2 * table["log_evidence_se"].to_numpy(float), fmt="s", capsize=3,
                     label="log evidence")
    if details is not None:
        for col, marker in (("log_evidence_smc", "x"), ("log_evidence_bridge", "+")):
            if col in details:
                d = details.set_index("model").loc[names, col].to_numpy(float)
                axes[1].plot(d - best, y, marker, color="k", label=col.split("_")[-1])
        axes[1].legend(fontsize=7, loc="lower left")
    axes[1].axvline(0, color="0.6", lw=0.8)
    axes[1].set(xlabel="log evidence − best (nats)  [± 2 se]")
    h = 0.38
    axes[2].barh(y + h / 2, table["posterior_prob"], height=h, label="posterior prob.")
    axes[2].barh(y - h / 2, table["stacking_weight"], height=h, label="stacking weight")
    axes[2].set(xlim=(0, 1), xlabel="weight")
    axes[2].legend(fontsize=7, loc="lower right")
    for ax in axes[:2]:  # differences between laws span 0.1 to 1000 nats: linear near 0, log beyond
        ax.set_xscale("symlog", linthresh=1.0)
    return fig
