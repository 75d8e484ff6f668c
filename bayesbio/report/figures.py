"""Report figures as base64-encoded PNG.

Every figure is a :class:`matplotlib.figure.Figure` drawn on the Agg canvas and never
registered with ``pyplot``: producing a report neither changes the user's matplotlib backend
nor leaves figures behind in a notebook or GUI session, and needs no display. ArviZ plots
draw into axes created here (its ``ax=``/``axes=`` arguments).

Each function returns the PNG as a base64 string (or a list of ``(title, png)``), or
``None`` when the InferenceData lacks what the figure needs.
"""

from __future__ import annotations

import base64
import io
import warnings

import arviz as az
import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from bayesbio.report.tables import (
    MAX_CORRELATION_COMPONENTS,
    LooResult,
    _diverging,
    plot_components,
    scalar_components,
)

__all__ = [
    "DPI",
    "density_figure",
    "elbo_figure",
    "energy_figure",
    "khat_figure",
    "pair_figure",
    "ppc_figures",
    "rank_figure",
    "to_png",
    "trace_figure",
]

#: Resolution of every figure (dots per inch); with ~10-inch-wide figures the PNGs are
#: ~800 px wide, sharp on screen and small (the default Lotka–Volterra report is < 1 MB).
DPI = 80
#: Most panels drawn for one observed variable in the posterior predictive plots.
MAX_PPC_PANELS = 12
#: Observed variables without a time axis and at most this many values get an interval plot
#: (one 50 %/90 % predictive interval per value); larger ones get ``az.plot_ppc``.
MAX_INTERVAL_VALUES = 30
#: Posterior predictive draws overlaid by ``az.plot_ppc``.
PPC_DRAWS = 100
#: Points drawn per scatter panel of the pair plot.
MAX_SCATTER_POINTS = 3000

_DIVERGENT = "#d62728"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure, *, dpi: int = DPI) -> str:
    """Render a figure with Agg to PNG, release it, and return the PNG base64-encoded."""
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # layout-engine complaints about crowded panels
            fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    finally:
        fig.clear()
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plot_idata(idata, comps: dict[str, np.ndarray]) -> az.InferenceData:
    """A small InferenceData with one scalar variable per component (and the divergences)."""
    post = idata.posterior
    coords = {"chain": post["chain"].values, "draw": post["draw"].values}
    ds = xr.Dataset({k: (("chain", "draw"), v) for k, v in comps.items()}, coords=coords)
    groups = {"posterior": ds}
    if hasattr(idata, "sample_stats") and "diverging" in idata.sample_stats:
        div = idata.sample_stats["diverging"]
        if div.dims == ("chain", "draw") and div.shape == next(iter(comps.values())).shape:
            groups["sample_stats"] = xr.Dataset(
                {"diverging": (("chain", "draw"), div.values.astype(bool))}, coords=coords
            )
    return az.InferenceData(**groups)


def trace_figure(idata, comps: dict[str, np.ndarray] | None = None) -> str | None:
    """``az.plot_trace`` (density and trace per chain, divergences as ticks) of at most
    :data:`~bayesbio.report.tables.MAX_PLOT_COMPONENTS` scalar components."""
    comps = plot_components(idata.posterior) if comps is None else comps
    if not comps:
        return None
    n = len(comps)
    fig = _figure(10, 1.55 * n + 0.3)
    axes = fig.subplots(n, 2, squeeze=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        az.plot_trace(_plot_idata(idata, comps), axes=axes, compact=False, show=False)
    for ax in axes.ravel():
        ax.title.set_fontsize(10)
    return to_png(fig)


def _panel_grid(n: int, *, row_height: float):
    """A figure with ``n`` panels on a grid of at most 4 columns (spare panels hidden)."""
    cols = min(4, n)
    rows = -(-n // cols)
    fig = _figure(10, row_height * rows + 0.2)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def rank_figure(idata, comps: dict[str, np.ndarray] | None = None) -> str | None:
    """``az.plot_rank`` (rank histograms per chain: flat and alike when the chains mix)."""
    comps = plot_components(idata.posterior) if comps is None else comps
    if not comps or idata.posterior.sizes.get("chain", 1) < 2:
        return None
    n = len(comps)
    fig, axes = _panel_grid(n, row_height=2.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        az.plot_rank(_plot_idata(idata, comps), kind="bars", ax=axes[:n], show=False)
    for ax in axes[:n]:
        ax.title.set_fontsize(10)
        ax.xaxis.label.set_fontsize(9)
        ax.yaxis.label.set_fontsize(9)
        ax.tick_params(labelsize=8)
    return to_png(fig)


def energy_figure(idata) -> str | None:
    """``az.plot_energy``: marginal energy vs energy transitions, with E-BFMI per chain."""
    if not hasattr(idata, "sample_stats") or "energy" not in idata.sample_stats:
        return None
    fig = _figure(6, 3.2)
    ax = fig.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        az.plot_energy(idata, ax=ax, show=False, textsize=9)
    return to_png(fig)


def pair_figure(
    idata, pairs: list[tuple[str, str, float]], divergence_pair: tuple[str, str] | None = None
) -> str | None:
    """Scatter plots of the most correlated pairs of components, divergent draws in red; with
    ``divergence_pair``, one more panel (log axes for positive components) where the
    divergences concentrate."""
    panels = [(a, b, f"r = {r:+.2f}", False) for a, b, r in pairs]
    if divergence_pair is not None:
        panels.append((*divergence_pair, "where the divergences are", True))
    if not panels:
        return None
    comps = scalar_components(idata.posterior, limit=MAX_CORRELATION_COMPONENTS, order="size")
    div = _diverging(idata)
    n = len(panels)
    fig = _figure(min(10, 3.0 * n + 0.6), 3.3)
    axes = np.atleast_1d(fig.subplots(1, n, squeeze=False)).ravel()
    rng = np.random.default_rng(0)
    for ax, (a, b, title, logscale) in zip(axes, panels):
        if a not in comps or b not in comps:
            ax.set_visible(False)
            continue
        x, y = comps[a].reshape(-1), comps[b].reshape(-1)
        keep = np.arange(x.size)
        if x.size > MAX_SCATTER_POINTS:
            keep = np.sort(rng.choice(x.size, MAX_SCATTER_POINTS, replace=False))
        ax.scatter(x[keep], y[keep], s=4, alpha=0.35, color="C0", linewidths=0, label="draws")
        if div is not None and div.any():
            ax.scatter(x[div], y[div], s=12, color=_DIVERGENT, linewidths=0, label="divergent")
            ax.legend(fontsize=7, loc="best", markerscale=1.5)
        if logscale:
            if np.all(x > 0):
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
            if np.all(y > 0):
                ax.set_yscale("log")
                ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(a, fontsize=9)
        ax.set_ylabel(b, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_title(title, fontsize=10)
    return to_png(fig)


def density_figure(idata, comps: dict[str, np.ndarray] | None = None) -> str | None:
    """``az.plot_posterior`` (density, mean, 94 % HDI) per component; used for SVI/Laplace,
    whose draws are independent, so trace and rank plots say nothing."""
    comps = plot_components(idata.posterior) if comps is None else comps
    if not comps:
        return None
    n = len(comps)
    fig, axes = _panel_grid(n, row_height=2.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        az.plot_posterior(_plot_idata(idata, comps), ax=axes[:n], textsize=8, show=False)
    for ax in axes[:n]:
        ax.title.set_fontsize(10)
    return to_png(fig)


def _draws(var: xr.DataArray) -> np.ndarray:
    """(chain, draw, ...) -> (samples, ...)."""
    values = np.asarray(var.values, dtype=float)
    return values.reshape((-1,) + values.shape[2:])


def _coord_text(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _time_bands(name: str, pp: xr.DataArray, obs: xr.DataArray | None) -> str:
    """Median and 50 %/90 % predictive bands against the observations, one panel per label of
    the other dims (e.g. one per species)."""
    pp = pp.transpose("chain", "draw", "time", ...)
    others = list(pp.dims[3:])
    shape = pp.shape[3:]
    combos = list(np.ndindex(*shape))[:MAX_PPC_PANELS] if others else [()]
    draws = _draws(pp)  # (samples, time, ...)
    t = pp["time"].values if "time" in pp.coords else np.arange(pp.sizes["time"])
    try:
        t = np.asarray(t, dtype=float)
    except (TypeError, ValueError):
        t = np.arange(pp.sizes["time"], dtype=float)
    obs_values = None
    if obs is not None and set(obs.dims) == set(pp.dims[2:]):
        obs_values = np.asarray(obs.transpose("time", *others).values, dtype=float)
    n = len(combos)
    cols = min(3, n)
    rows = -(-n // cols)
    fig = _figure(10 if n > 1 else 7, 2.8 * rows + 0.3)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax, combo in zip(axes, combos):
        series = draws[(slice(None), slice(None)) + combo]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q05, q25, q50, q75, q95 = np.nanquantile(series, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
        ax.fill_between(t, q05, q95, color="C0", alpha=0.2, linewidth=0, label="90% predictive")
        ax.fill_between(t, q25, q75, color="C0", alpha=0.4, linewidth=0, label="50% predictive")
        ax.plot(t, q50, color="C0", linewidth=1.5, label="median")
        if obs_values is not None:
            y = obs_values[(slice(None),) + combo]
            ok = np.isfinite(y)
            ax.plot(t[ok], y[ok], "o", color="black", markersize=4, label="observed")
        label = ", ".join(
            f"{dim}={_coord_text(pp[dim].values[i]) if dim in pp.coords else i}"
            for dim, i in zip(others, combo)
        )
        ax.set_title(f"{name}[{label}]" if label else name, fontsize=10)
        ax.set_xlabel("time")
        if np.all(np.mod(t, 1) == 0):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=8, loc="best")
    return to_png(fig)


def _intervals(name: str, pp: xr.DataArray, obs: xr.DataArray | None) -> str:
    """50 %/90 % predictive interval and median for each observed value (few values, no time)."""
    draws = _draws(pp).reshape(-1, int(np.prod(pp.shape[2:], dtype=np.int64)))
    k = draws.shape[1]
    labels = []
    for idx in np.ndindex(*pp.shape[2:]) if pp.ndim > 2 else [()]:
        parts = [_coord_text(pp[d].values[i]) if d in pp.coords else str(i) for d, i in zip(pp.dims[2:], idx)]
        labels.append(", ".join(parts))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q05, q25, q50, q75, q95 = np.nanquantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    x = np.arange(k)
    fig = _figure(min(10, 2.5 + 0.45 * k), 3.2)
    ax = fig.subplots()
    ax.vlines(x, q05, q95, color="C0", alpha=0.45, linewidth=6, label="90% predictive")
    ax.vlines(x, q25, q75, color="C0", linewidth=6, label="50% predictive")
    ax.plot(x, q50, "_", color="white", markersize=10, label="median")
    if obs is not None and obs.size == k:
        y = np.asarray(obs.transpose(*pp.dims[2:]).values, dtype=float).reshape(-1)
        ok = np.isfinite(y)
        ax.plot(x[ok], y[ok], "o", color="black", markersize=5, label="observed")
    ax.set_xlim(-0.7, k - 0.3)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=45 if k > 8 else 0, fontsize=8)
    ax.set_title(name, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return to_png(fig)


def _ppc_density(idata, name: str) -> str:
    fig = _figure(7, 3.2)
    ax = fig.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        az.plot_ppc(idata, var_names=[name], ax=ax, num_pp_samples=PPC_DRAWS, random_seed=0, show=False)
    ax.set_title(name, fontsize=10)
    return to_png(fig)


def ppc_figures(idata) -> list[tuple[str, str, str]]:
    """Posterior predictive checks, one figure per observed variable, as
    ``(variable, kind, png)``: ``kind`` is ``"bands"`` (variables with a ``time`` dim),
    ``"intervals"`` (few values) or ``"density"`` (``az.plot_ppc``)."""
    if not hasattr(idata, "posterior_predictive"):
        return []
    pp_group = idata.posterior_predictive
    observed = idata.observed_data if hasattr(idata, "observed_data") else None
    out = []
    for name in pp_group.data_vars:
        pp = pp_group[name]
        if pp.dims[:2] != ("chain", "draw"):
            continue
        obs = observed[name] if observed is not None and name in observed else None
        if "time" in pp.dims:
            out.append((name, "bands", _time_bands(name, pp, obs)))
        elif int(np.prod(pp.shape[2:], dtype=np.int64)) <= MAX_INTERVAL_VALUES:
            out.append((name, "intervals", _intervals(name, pp, obs)))
        elif obs is not None:
            out.append((name, "density", _ppc_density(idata, name)))
    return out


def khat_figure(loo: LooResult | None) -> str | None:
    """``az.plot_khat`` of the pooled PSIS-LOO (see :func:`~bayesbio.report.tables.loo_pooled`)."""
    if loo is None:
        return None
    n = len(loo.labels)
    fig = _figure(8, 3.2)
    ax = fig.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        az.plot_khat(loo.elpd, ax=ax, show_hlines=True, show=False, threshold=loo.good_k)
    ax.set_xlabel(f"observation (all {n} observed values of {', '.join(loo.variables)})")
    ax.set_title("PSIS-LOO Pareto-k per observation", fontsize=10)
    return to_png(fig)


def elbo_figure(idata) -> str | None:
    """SVI loss (−ELBO) per step: the whole run, and the second half with a running mean."""
    if not hasattr(idata, "svi_trace") or "loss" not in idata.svi_trace:
        return None
    loss = np.asarray(idata.svi_trace["loss"].values, dtype=float).reshape(-1)
    if loss.size == 0:
        return None
    steps = np.arange(1, loss.size + 1)
    finite = np.isfinite(loss)
    fig = _figure(10, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(steps[finite], loss[finite], linewidth=0.6, color="C0")
    if finite.sum() > 20:
        tail = loss[finite][finite.sum() // 20 :]
        lo, hi = np.quantile(tail, [0.0, 0.99])
        pad = 0.05 * (hi - lo or 1.0)
        ax1.set_ylim(lo - pad, hi + pad)
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss (−ELBO)")
    ax1.set_title("whole run", fontsize=10)
    half = loss.size // 2
    s2, l2 = steps[half:], loss[half:]
    ok = np.isfinite(l2)
    ax2.plot(s2[ok], l2[ok], linewidth=0.5, color="C0", alpha=0.5, label="loss")
    window = max(1, min(200, l2.size // 10))
    if ok.sum() >= window:
        rolling = np.convolve(np.where(ok, l2, np.nanmean(l2[ok])), np.ones(window) / window, mode="valid")
        ax2.plot(s2[window - 1 :], rolling, color="C1", linewidth=1.5, label=f"running mean ({window})")
        ax2.legend(fontsize=8)
    ax2.set_xlabel("step")
    ax2.set_title("second half", fontsize=10)
    return to_png(fig)
