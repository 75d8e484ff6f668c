"""Pharmacometric figures (matplotlib): individual fits, visual predictive checks, regimens.

Each function draws on the ``ax`` (or axes) it is given, or on a new
:class:`matplotlib.figure.Figure` on the Agg canvas that is not registered with ``pyplot``
(so it neither changes the user's backend nor leaks open figures); Jupyter shows a returned
figure. The numbers come from :mod:`~bayesbio.population.simulate` and
:mod:`~bayesbio.population.diagnostics`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bayesbio.errors import OptionError

__all__ = ["plot_individual_fits", "plot_regimen", "plot_vpc"]


def _new_figure(nrows=1, ncols=1, *, figsize=None, sharex=False, sharey=False):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize or (4.0 * ncols, 3.0 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    return fig, axes


def plot_individual_fits(
    fits,
    *,
    patients: Sequence[int] | None = None,
    ncols: int = 4,
    log_y: bool = False,
    xlabel: str = "time",
    ylabel: str | None = None,
    axes=None,
):
    """One panel per patient: observations, individual prediction (IPRED, posterior median
    and band) and population prediction (PRED, random effects 0, median and band).

    Parameters
    ----------
    fits : IndividualFits
        From :func:`bayesbio.population.individual_fits`.
    patients : sequence of int, optional
        0-based patient indices to show (default all).
    ncols : int
        Panels per row.
    log_y : bool
        Logarithmic y axis (non-positive values are hidden).
    axes : array of Axes, optional
        Draw here (at least as many as patients shown).

    Returns
    -------
    matplotlib.figure.Figure
    """
    idx = list(range(len(fits.labels))) if patients is None else [int(i) for i in patients]
    if not idx:
        raise OptionError("plot_individual_fits: 'patients' is empty")
    bad = [i for i in idx if not 0 <= i < len(fits.labels)]
    if bad:
        raise OptionError(f"plot_individual_fits: patient indices {bad} outside 0..{len(fits.labels) - 1}")
    if axes is None:
        ncols = max(1, min(int(ncols), len(idx)))
        nrows = -(-len(idx) // ncols)
        fig, grid = _new_figure(nrows, ncols, figsize=(3.0 * ncols, 2.4 * nrows), sharex=True)
        flat = list(grid.ravel())
        for ax in flat[len(idx):]:
            ax.set_visible(False)
    else:
        flat = list(np.ravel(axes))
        if len(flat) < len(idx):
            raise OptionError(f"plot_individual_fits: {len(idx)} patients need as many axes; got {len(flat)}")
        fig = flat[0].figure
    q = fits.quantiles
    mid = int(np.argmin(np.abs(q - 0.5)))
    lo, hi = 0, len(q) - 1
    for k, (ax, i) in enumerate(zip(flat, idx)):
        t = fits.time[i]
        ax.fill_between(t, fits.pred[lo, i], fits.pred[hi, i], color="tab:gray", alpha=0.25, lw=0)
        ax.plot(t, fits.pred[mid, i], color="tab:gray", ls="--", lw=1.2, label="PRED (population)")
        ax.fill_between(t, fits.ipred[lo, i], fits.ipred[hi, i], color="tab:blue", alpha=0.3, lw=0)
        ax.plot(t, fits.ipred[mid, i], color="tab:blue", lw=1.5, label="IPRED (individual)")
        ok = np.isfinite(fits.obs_value[i])
        ax.plot(fits.obs_time[i][ok], fits.obs_value[i][ok], "o", color="black", ms=3.5, label="observed")
        ax.set_title(f"patient {fits.labels[i]}", fontsize=9)
        if log_y:
            ax.set_yscale("log")
        if k % (ncols if axes is None else len(flat)) == 0:
            ax.set_ylabel(ylabel or fits.site)
        ax.set_xlabel(xlabel)
    flat[0].legend(fontsize=7, loc="best")
    if axes is None:
        band = f"{100 * (q[hi] - q[lo]):.0f}%"
        fig.suptitle(f"Individual fits of '{fits.site}' (lines: posterior median; bands: {band} credible)", fontsize=10)
    return fig


def plot_vpc(
    result,
    *,
    ax=None,
    show_observations: bool = True,
    log_y: bool = False,
    xlabel: str = "time",
    ylabel: str = "observation",
    title: str | None = None,
):
    """Visual predictive check: observed percentiles (lines with markers) over the simulated
    intervals of the same percentiles (shaded: the outer percentiles in blue, the median in
    red), with the observations as dots.

    Parameters
    ----------
    result : VPC
        From :func:`bayesbio.population.vpc` or :func:`~bayesbio.population.vpc_from_model`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if ax is None:
        fig, grid = _new_figure(figsize=(6.5, 4.0))
        ax = grid[0, 0]
    else:
        fig = ax.figure
    lo, med, hi = result.bands
    t = result.time
    ok = result.count > 0
    if show_observations:
        ax.plot(*result.observations, "o", color="0.55", ms=2.5, alpha=0.6, label="observations")
    for j, p in enumerate(result.percentiles):
        central = abs(p - 50) < 1e-9
        color = "tab:red" if central else "tab:blue"
        ax.fill_between(t[ok], lo[ok, j], hi[ok, j], color=color, alpha=0.2 if central else 0.15, lw=0,
                        step=None)
        ax.plot(t[ok], med[ok, j], color=color, lw=0.8, ls=":")
        ax.plot(t[ok], result.observed[ok, j], "-s" if central else "--s", color=color, ms=3.5, lw=1.4,
                label=f"observed P{p:g}")
    for e in result.edges:
        ax.axvline(e, color="0.85", lw=0.6, zorder=0)
    if log_y:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    pct = f"{100 * result.interval:.0f}%"
    ax.set_title(title or f"VPC: observed percentiles vs {pct} intervals of {result.simulated.shape[0]} "
                 f"simulated replicates (coverage {100 * result.coverage:.0f}%)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return fig


def plot_regimen(
    frame,
    *,
    ax=None,
    patients: Sequence[int] | None = None,
    xlabel: str = "time",
    ylabel: str | None = None,
    label: str | None = None,
    color: str | None = None,
):
    """Median and band of a simulated regimen (:func:`bayesbio.population.simulate_regimen`).

    The band spans the outermost quantile columns of ``frame``; one line per patient shown.

    Returns
    -------
    matplotlib.figure.Figure
    """
    qcols = sorted([c for c in frame.columns if c.startswith("q") and c[1:].isdigit()], key=lambda c: int(c[1:]))
    if len(qcols) < 1:
        raise OptionError("plot_regimen: 'frame' has no quantile columns (q05, q50, ...)")
    if ax is None:
        fig, grid = _new_figure(figsize=(6.5, 3.6))
        ax = grid[0, 0]
    else:
        fig = ax.figure
    mid = min(qcols, key=lambda c: abs(int(c[1:]) - 50))
    for i in (sorted(frame["patient"].unique()) if patients is None else patients):
        rows = frame[frame["patient"] == i].sort_values("time", kind="stable")
        line = ax.plot(rows["time"], rows[mid], color=color, lw=1.5,
                       label=label if label is not None else f"patient {i} (median)")[0]
        if len(qcols) >= 2:
            ax.fill_between(rows["time"], rows[qcols[0]], rows[qcols[-1]], color=line.get_color(), alpha=0.2, lw=0)
    ax.set(xlabel=xlabel, ylabel=ylabel or frame.attrs.get("site", "prediction"))
    ax.legend(fontsize=7, loc="best")
    return fig
