"""Pharmacometric diagnostics as numbers: η-shrinkage and visual predictive checks (VPC).

η-shrinkage (Savic & Karlsson 2009, AAPS J 11:558)
    ``shrinkage_k = 1 - sd_i(E[eta_ik | y]) / omega_k``: how much the individual estimates of
    random effect ``k`` are pulled towards 0 because the data say little about each patient.
    0 means the posterior means spread as widely as the population distribution (every
    patient well determined); near 1 the individual estimates carry no information (and
    plots of individual estimates against covariates become misleading). The SD is the sample
    SD over patients (``ddof=1``); ``omega_k`` the posterior mean of the population SD.

Visual predictive check (Holford 2005; Bergstrand et al. 2011, AAPS J 13:143)
    The observations are grouped into time bins; in each bin the observed 5th, 50th and 95th
    percentiles are compared with the distribution of the same percentiles over ``R``
    replicate data sets simulated from the posterior with the same design (new patients:
    :func:`bayesbio.population.simulate` with ``mode="new"``). A well-specified model puts
    each observed percentile inside the central ``interval`` of its simulated distribution,
    except for about ``1 - interval`` of them by chance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayesbio.errors import DataError, OptionError, describe

__all__ = ["VPC", "eta_shrinkage", "shrinkage", "time_bins", "vpc", "vpc_from_model"]


def eta_shrinkage(eta_mean, omega, *, ddof: int = 1) -> np.ndarray:
    """η-shrinkage ``1 - sd(eta_mean) / omega`` per random effect (a pure function).

    Parameters
    ----------
    eta_mean : array (P, K)
        Posterior mean of each patient's random effects.
    omega : array (K,)
        Population SD of each random effect.
    ddof : int
        Delta degrees of freedom of the SD over patients.

    Returns
    -------
    array (K,)

    Examples
    --------
    >>> eta = np.array([[-1.0], [1.0]])            # sample SD sqrt(2)
    >>> float(eta_shrinkage(eta, [np.sqrt(2.0)])[0])
    0.0
    """
    eta_mean = np.asarray(eta_mean, dtype=float)
    omega = np.atleast_1d(np.asarray(omega, dtype=float))
    if eta_mean.ndim != 2:
        raise DataError(f"eta_shrinkage: 'eta_mean' must have shape (n_patients, n_effects); got {eta_mean.shape}")
    if eta_mean.shape[0] <= ddof:
        raise DataError(f"eta_shrinkage: need more than {ddof} patient(s); got {eta_mean.shape[0]}")
    if omega.shape != (eta_mean.shape[1],):
        raise DataError(
            f"eta_shrinkage: 'omega' must have shape ({eta_mean.shape[1]},) (one SD per random effect); got {omega.shape}"
        )
    if not np.all(np.isfinite(omega) & (omega > 0)):
        raise DataError(f"eta_shrinkage: 'omega' must be positive and finite; got {omega.tolist()}")
    return 1.0 - np.std(eta_mean, axis=0, ddof=ddof) / omega


def shrinkage(idata, *, random_effects: str = "eta", omega: Any = None, ddof: int = 1):
    """η-shrinkage of a fitted population model, per random effect (a pandas Series).

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit whose posterior holds the random effects ``random_effects`` with dims
        (chain, draw, patient, random_effect).
    random_effects : str
        Name of the random-effects variable.
    omega : array, dict or sequence of str, optional
        Population SDs: values, ``{effect: value}``, or posterior variable names. Default: the
        posterior means of ``omega_<effect>`` for each label of the last dim, or of a vector
        variable ``omega``.
    """
    import pandas as pd

    post = idata.posterior
    if random_effects not in post:
        raise DataError(f"shrinkage: the posterior has no variable '{random_effects}'; found {list(post.data_vars)}")
    eta = post[random_effects]
    if eta.ndim != 4:
        raise DataError(
            f"shrinkage: '{random_effects}' must have dims (chain, draw, patient, effect); got {eta.dims}"
        )
    labels = [str(x) for x in eta[eta.dims[-1]].values]
    eta_mean = eta.mean(("chain", "draw")).values
    if omega is None:
        if all(f"omega_{k}" in post for k in labels):
            omega = [float(post[f"omega_{k}"].mean()) for k in labels]
        elif "omega" in post:
            omega = post["omega"].mean(("chain", "draw")).values
        else:
            raise DataError(
                f"shrinkage: cannot find the population SDs (omega_<effect> for {labels}, or 'omega'); pass omega="
            )
    elif isinstance(omega, Mapping):
        omega = [float(omega[k]) for k in labels]
    elif isinstance(omega, Sequence) and omega and all(isinstance(o, str) for o in omega):
        omega = [float(post[o].mean()) for o in omega]
    values = eta_shrinkage(eta_mean, omega, ddof=ddof)
    return pd.Series(values, index=pd.Index(labels, name="random_effect"), name="shrinkage")


def time_bins(times, bins: int | Sequence[float] | None = None) -> np.ndarray:
    """Bin edges over the observation times.

    ``bins`` None: one bin per distinct time when there are at most 12, else 8 bins with
    (about) equal numbers of observations; an integer: that many equal-count bins; an array:
    the edges themselves. Bins are closed on the left, the last one on both sides.
    """
    t = np.asarray(times, dtype=float)
    t = t[np.isfinite(t)]
    if t.size == 0:
        raise DataError("time_bins: no finite observation times")
    if bins is None:
        distinct = np.unique(t)
        if distinct.size <= 12:
            mids = (distinct[1:] + distinct[:-1]) / 2
            return np.concatenate([[distinct[0]], mids, [distinct[-1]]])
        bins = 8
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            raise OptionError(f"'bins' must be >= 1; got {bins}")
        edges = np.unique(np.quantile(t, np.linspace(0, 1, int(bins) + 1)))
        return edges if edges.size >= 2 else np.array([t.min(), t.max()])
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise OptionError(f"'bins' must be an integer or increasing edges (at least 2); got {describe(bins)}")
    return edges


def _bin_index(t, edges):
    idx = np.searchsorted(edges, t, side="right") - 1
    idx = np.where(t == edges[-1], edges.size - 2, idx)
    return np.where((t < edges[0]) | (t > edges[-1]), -1, idx)


@dataclass(frozen=True)
class VPC:
    """Numbers of a visual predictive check (see :func:`vpc`).

    Attributes
    ----------
    edges : array (B + 1,)
        Bin edges.
    time : array (B,)
        Median observation time in each bin (the x position of the plot).
    count : array (B,)
        Observations per bin.
    percentiles : array (Q,)
        The percentiles compared (e.g. 5, 50, 95).
    observed : array (B, Q)
        Observed percentiles per bin (NaN for an empty bin).
    simulated : array (R, B, Q)
        The same percentiles of each simulated replicate.
    interval : float
        Central probability of the simulated intervals.
    observations : tuple of arrays (times, values)
        The observations themselves (for scatter plots).
    """

    edges: np.ndarray
    time: np.ndarray
    count: np.ndarray
    percentiles: np.ndarray
    observed: np.ndarray
    simulated: np.ndarray
    interval: float
    observations: tuple

    @property
    def bands(self) -> np.ndarray:
        """array (3, B, Q): lower, median, upper of the simulated percentiles."""
        a = (1 - self.interval) / 2
        return np.nanquantile(self.simulated, [a, 0.5, 1 - a], axis=0)

    @property
    def covered(self) -> np.ndarray:
        """bool (B, Q): observed percentile inside its simulated interval (False for empty bins)."""
        lo, _, hi = self.bands
        return (self.observed >= lo) & (self.observed <= hi)

    @property
    def coverage(self) -> float:
        """Fraction of (bin, percentile) pairs covered, over non-empty bins."""
        ok = np.isfinite(self.observed)
        return float(self.covered[ok].mean())

    def to_frame(self):
        """One row per bin and percentile: observed value and simulated interval."""
        import pandas as pd

        lo, med, hi = self.bands
        rows = []
        for b in range(self.time.size):
            for j, p in enumerate(self.percentiles):
                rows.append(dict(bin=b, time=self.time[b], count=int(self.count[b]), percentile=float(p),
                                 observed=self.observed[b, j], sim_lower=lo[b, j], sim_median=med[b, j],
                                 sim_upper=hi[b, j], covered=bool(self.covered[b, j])))
        return pd.DataFrame(rows)


def _binned_percentiles(values, index, n_bins, percentiles):
    """values (..., N) with NaN = absent; index (N,) bin of each column -> (..., B, Q)."""
    out = np.full(values.shape[:-1] + (n_bins, len(percentiles)), np.nan)
    for b in range(n_bins):
        cols = values[..., index == b]
        if cols.shape[-1] == 0:
            continue
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN
                out[..., b, :] = np.moveaxis(np.nanpercentile(cols, percentiles, axis=-1), 0, -1)
    return out


def vpc(
    times,
    observed,
    simulated,
    *,
    bins: int | Sequence[float] | None = None,
    percentiles: Sequence[float] = (5.0, 50.0, 95.0),
    interval: float = 0.9,
) -> VPC:
    """Visual predictive check from arrays (a pure function).

    Parameters
    ----------
    times : array (...)
        Time of every record (e.g. ``events["obs_time"]``, shape (P, O)).
    observed : array (...)
        Observations, NaN where there is none (padding, other outputs, missing).
    simulated : array (R, ...)
        Replicate data sets with the same design; only entries where ``observed`` is finite
        are used.
    bins, percentiles, interval
        Binning (:func:`time_bins`), percentiles compared, central probability of the
        simulated intervals.
    """
    t = np.asarray(times, dtype=float)
    y = np.asarray(observed, dtype=float)
    sim = np.asarray(simulated, dtype=float)
    if y.shape != t.shape:
        raise DataError(f"vpc: 'observed' has shape {y.shape} but 'times' has {t.shape}")
    if sim.shape[1:] != y.shape or sim.shape[0] < 2:
        raise DataError(f"vpc: 'simulated' must have shape (replicates >= 2, *{y.shape}); got {sim.shape}")
    if not 0 < interval < 1:
        raise OptionError(f"vpc: 'interval' must lie in (0, 1); got {interval!r}")
    p = np.asarray(percentiles, dtype=float)
    if p.ndim != 1 or np.any((p < 0) | (p > 100)):
        raise OptionError(f"vpc: 'percentiles' must lie in [0, 100]; got {describe(percentiles)}")
    present = np.isfinite(y) & np.isfinite(t)
    if not present.any():
        raise DataError("vpc: no observations (every value is NaN)")
    t_obs, y_obs = t[present], y[present]
    sim_obs = sim[:, present]
    edges = time_bins(t_obs, bins)
    index = _bin_index(t_obs, edges)
    n_bins = edges.size - 1
    count = np.array([(index == b).sum() for b in range(n_bins)])
    mid = np.array([np.median(t_obs[index == b]) if count[b] else (edges[b] + edges[b + 1]) / 2 for b in range(n_bins)])
    obs_p = _binned_percentiles(y_obs, index, n_bins, p)
    sim_p = _binned_percentiles(sim_obs, index, n_bins, p)
    return VPC(edges=edges, time=mid, count=count, percentiles=p, observed=obs_p, simulated=sim_p,
               interval=float(interval), observations=(t_obs, y_obs))


def vpc_from_model(
    model,
    idata,
    data: Mapping[str, Any] | None = None,
    *,
    site: str,
    num_replicates: int = 200,
    random_effects: str = "eta",
    bins: int | Sequence[float] | None = None,
    percentiles: Sequence[float] = (5.0, 50.0, 95.0),
    interval: float = 0.9,
    seed: int = 0,
    times=None,
) -> VPC:
    """VPC of a fitted population model: ``num_replicates`` replicate data sets with the
    fitted design, each from one posterior draw with new patients and new observation noise.

    ``times`` defaults to ``data["events"]["obs_time"]``; the observations are those of the
    observed site ``site`` (NaN where the site has no measurement).
    """
    from bayesbio.population.simulate import _resolve_model, simulate

    fn, data = _resolve_model(model, data)
    sim = simulate(fn, idata, data, mode="new", random_effects=random_effects, sites=site,
                   num_draws=num_replicates, seed=seed)
    observed = _observed_values(fn, data, site)
    if times is None:
        times = np.asarray(data["events"]["obs_time"], dtype=float)
    replicates = sim.observation[site][~sim.failed]
    return vpc(times, observed, replicates, bins=bins, percentiles=percentiles, interval=interval)


def _observed_values(fn, data, site):
    """The data of an observed site, NaN where missing (as given to bb.observe)."""
    from numpyro import handlers

    from bayesbio.observe import _OBS_KEY

    tr = handlers.trace(handlers.seed(fn, 0)).get_trace(data)
    if site not in tr or not tr[site]["is_observed"]:
        raise DataError(f"vpc: '{site}' is not an observed site of the model")
    s = tr[site]
    return np.asarray((s.get("infer") or {}).get(_OBS_KEY, s["value"]), dtype=float)
