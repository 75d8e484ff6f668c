"""Plots of field posteriors against the truth (matplotlib, imported on use)."""

from __future__ import annotations

import numpy as np

from bayesbio.errors import OptionError
from bayesbio.fields._grid import as_field_grid
from bayesbio.fields.exact import FieldPosterior
from bayesbio.fields.summary import FieldSummary, summarize_field

__all__ = ["plot_field"]


def plot_field(summaries, grid=None, *, truth=None, labels=None, ax=None, samples: bool = True, xlabel="x",
               ylabel="u"):
    """Posterior mean, credible band and sample fields (1-D), or mean / sd / truth panels (2-D).

    Parameters
    ----------
    summaries : FieldSummary, FieldPosterior or a list of them
        Several summaries are overlaid (1-D) for comparison (e.g. exact vs NUTS).
    grid : grid, optional
        For the x-axis (default: cell centres on [0, 1]).
    truth : array, optional
        The true field, drawn as a dashed black line (1-D) or a third panel (2-D).

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt

    items = summaries if isinstance(summaries, (list, tuple)) else [summaries]
    items = [summarize_field(s) if isinstance(s, FieldPosterior) else s for s in items]
    if not items or not all(isinstance(s, FieldSummary) for s in items):
        raise OptionError("'summaries' must be FieldSummary/FieldPosterior objects")
    shape = np.shape(items[0].mean)
    g = as_field_grid(grid if grid is not None else shape[0]) if len(shape) == 1 else (
        as_field_grid(grid) if grid is not None else None)
    labels = labels or [s.method or f"posterior {i}" for i, s in enumerate(items)]
    if len(shape) == 1:
        if ax is None:
            fig, ax = plt.subplots(figsize=(7, 3.2))
        else:
            fig = ax.figure
        x = g.axis(0)
        for i, (s, label) in enumerate(zip(items, labels)):
            colour = f"C{i}"
            ax.fill_between(x, s.lower, s.upper, color=colour, alpha=0.2 if i == 0 else 0.12,
                            label=f"{label} {int(round(100 * s.prob))}% band")
            ax.plot(x, s.mean, color=colour, lw=1.8, label=f"{label} mean")
            if samples and i == 0:
                for k, field in enumerate(s.samples):
                    ax.plot(x, field, color=colour, lw=0.5, alpha=0.5, label="sample fields" if k == 0 else None)
        if truth is not None:
            ax.plot(x, np.asarray(truth), "k--", lw=1.5, label="truth")
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.legend(fontsize=8, loc="best")
        return fig
    s = items[0]
    panels = [("posterior mean", s.mean), ("posterior sd", s.sd)] + ([("truth", np.asarray(truth))] if truth is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    extent = None if g is None else (g.lower[1], g.upper[1], g.upper[0], g.lower[0])
    vmin = min(np.min(s.mean), np.min(truth) if truth is not None else np.inf)
    vmax = max(np.max(s.mean), np.max(truth) if truth is not None else -np.inf)
    for a, (title, arr) in zip(np.atleast_1d(axes), panels):
        kw = {} if title == "posterior sd" else {"vmin": vmin, "vmax": vmax}
        im = a.imshow(arr, extent=extent, **kw)
        a.set_title(title)
        fig.colorbar(im, ax=a, shrink=0.8)
    return fig
