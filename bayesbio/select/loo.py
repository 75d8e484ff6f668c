"""Predictive accuracy: PSIS-LOO and WAIC (ArviZ), with K-fold / leave-one-group-out refits.

Every observed site of a model contributes its observations (missing, NaN-masked records
left out) to one pointwise log-likelihood vector, so models with several observed sites
(e.g. three loading modes) are scored on all their data at once.

Where PSIS-LOO is unreliable (some Pareto ``k`` above ``k_threshold``, 0.7 by default; Vehtari
et al. 2017, 2024), :func:`elpd` replaces it by K-fold cross-validation — or
leave-one-group-out when ``groups`` are given — refitting the model without each fold. The
held-out points are masked out of the likelihood (the same mechanism as missing data), so any
model works without changes.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import jax
import numpy as np
from numpyro.infer.util import log_likelihood as _numpyro_log_likelihood
from numpyro.primitives import Messenger
from scipy.special import logsumexp

from bayesbio.errors import DataError, OptionError, describe

__all__ = ["elpd", "kfold", "loo", "pointwise_log_likelihood", "waic"]


def pointwise_log_likelihood(idata, var_names=None):
    """All observed points' log-likelihood draws as one array (chain, draw, point).

    Returns
    -------
    (numpy array, list of (site, index))
        The array and, for each point, the observed site and its index within the site.
    """
    if not hasattr(idata, "log_likelihood"):
        raise DataError("the InferenceData has no log_likelihood group (fit with bayesbio.sample_nuts)")
    group = idata.log_likelihood
    names = list(group.data_vars) if var_names is None else list(var_names)
    missing = [v for v in names if v not in group]
    if missing or not names:
        raise DataError(f"log_likelihood variables {missing or names} not found; available: {list(group.data_vars)}")
    obs = getattr(idata, "observed_data", None)
    parts, points = [], []
    for name in names:
        values = np.asarray(group[name].values, dtype=float)
        chains, draws = values.shape[:2]
        site_shape = values.shape[2:]
        flat = values.reshape(chains, draws, -1)
        keep = np.ones(flat.shape[2], dtype=bool)
        if obs is not None and name in obs:
            observed = np.asarray(obs[name].values, dtype=float).reshape(-1)
            if observed.size == keep.size:
                keep = ~np.isnan(observed)
        parts.append(flat[:, :, keep])
        for i in np.flatnonzero(keep):
            points.append((name, np.unravel_index(i, site_shape) if site_shape else ()))
    return np.concatenate(parts, axis=2), points


def _single_site_idata(idata, ll):
    """The posterior (for ArviZ's relative efficiency) and one pointwise log-likelihood variable."""
    import arviz as az
    import xarray as xr

    post = idata.posterior
    ds = xr.Dataset({"y": (("chain", "draw", "point"), ll)},
                    coords={"chain": post["chain"].values, "draw": post["draw"].values})
    return az.InferenceData(posterior=post, log_likelihood=ds)


def loo(idata, *, var_names=None):
    """PSIS-LOO (``arviz.loo``, pointwise) over every observed point of the model.

    Returns an ``arviz.ELPDData`` with ``elpd_loo``, ``se``, ``p_loo``, ``loo_i`` and
    ``pareto_k``.
    """
    import arviz as az

    ll, _ = pointwise_log_likelihood(idata, var_names)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Estimated shape parameter of Pareto.*")
        warnings.filterwarnings("ignore", message=".*Pareto k.*")
        return az.loo(_single_site_idata(idata, ll), pointwise=True)


def waic(idata, *, var_names=None):
    """WAIC (``arviz.waic``, pointwise) over every observed point of the model."""
    import arviz as az

    ll, _ = pointwise_log_likelihood(idata, var_names)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*posterior variance of the log predictive.*")
        return az.waic(_single_site_idata(idata, ll), pointwise=True)


class _HoldOut(Messenger):
    """Mask the held-out observations of the named observed sites out of the likelihood."""

    def __init__(self, fn=None, keep=None):
        self.keep = keep or {}
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["is_observed"] and msg["name"] in self.keep:
            msg["fn"] = msg["fn"].mask(self.keep[msg["name"]])


def _fold_labels(points, folds, groups, seed):
    n = len(points)
    if groups is None:
        if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= n:
            raise OptionError(f"'folds' must be an integer between 2 and the number of points ({n}); got {describe(folds)}")
        labels = np.arange(n) % folds
        np.random.default_rng(seed).shuffle(labels)
        return labels, [f"fold {k + 1}" for k in range(folds)]
    if isinstance(groups, str) and groups == "site":
        names = list(dict.fromkeys(site for site, _ in points))
        return np.array([names.index(site) for site, _ in points]), names
    if not isinstance(groups, Mapping):
        raise OptionError(f"'groups' must be None, 'site' or a dict {{site: labels}}; got {describe(groups)}")
    raw = []
    for site, index in points:
        if site not in groups:
            raise OptionError(f"'groups' has no labels for observed site '{site}'; it has {sorted(groups)}")
        raw.append(np.asarray(groups[site])[index].item() if index else np.asarray(groups[site]).item())
    uniq = list(dict.fromkeys(raw))
    return np.array([uniq.index(r) for r in raw]), [str(u) for u in uniq]


def _elpd_data(elpd_i, lppd, n_samples, pareto_k=None):
    import xarray as xr
    from arviz.stats.stats_utils import ELPDData

    elpd_i = np.asarray(elpd_i, dtype=float)
    n = elpd_i.size
    total = float(elpd_i.sum())
    se = float(np.sqrt(n * np.var(elpd_i)))
    k = xr.DataArray(np.zeros(n) if pareto_k is None else np.asarray(pareto_k), dims=["point"])
    return ELPDData(
        data=[total, se, float(lppd - total), n_samples, n, False, xr.DataArray(elpd_i, dims=["point"], name="loo_i"),
              k, "log", 0.7],
        index=["elpd_loo", "se", "p_loo", "n_samples", "n_data_points", "warning", "loo_i", "pareto_k", "scale",
               "good_k"],
    )


def kfold(model, data=None, *, idata=None, folds: int = 10, groups=None, seed: int = 0, fit=None, **fit_options):
    """K-fold (or leave-one-group-out) cross-validation by refitting the model.

    Parameters
    ----------
    model : str, ModelSpec or callable
        As for :func:`bayesbio.sample_nuts`.
    data : dict, path or None
    idata : InferenceData, optional
        The full-data fit; gives ``p_loo`` (``lppd - elpd``) and PSIS Pareto ``k`` for reference.
    folds : int
        Number of random folds (ignored when ``groups`` is given).
    groups : None, "site" or dict
        Leave-one-group-out: ``"site"`` leaves out each observed site in turn (e.g. each
        loading mode); ``{site: labels}`` gives a label per observation.
    fit : callable, optional
        ``fit(model_fn, data, seed) -> InferenceData``; default :func:`bayesbio.sample_nuts`
        with ``fit_options``.

    Returns
    -------
    arviz.ELPDData
        As from :func:`loo` (``loo_i`` = held-out log predictive densities), usable by
        ``arviz.compare``; attribute-style ``folds`` lists the groups left out.
    """
    from bayesbio.infer import sample_nuts
    from bayesbio.infer._common import prepare

    prepared = prepare(model, data)
    probe = idata
    if probe is None:
        probe = sample_nuts(prepared.spec, prepared.data, **{**fit_options, "seed": seed})
    ll_full, points = pointwise_log_likelihood(probe)
    labels, names = _fold_labels(points, folds, groups, seed)
    base = prepared.spec.model
    shapes = {site: np.shape(obs) for site, obs in prepared.observed.items()}
    elpd_i = np.full(len(points), np.nan)
    fit = fit or (lambda fn, d, s: sample_nuts(fn, d, **{**fit_options, "seed": s}))
    for k in range(len(names)):
        held = np.flatnonzero(labels == k)
        keep = {site: np.ones(shape, dtype=bool) for site, shape in shapes.items()}
        for i in held:
            site, index = points[i]
            keep[site][index] = False

        def model_without(data, _keep=keep):
            with _HoldOut(keep=_keep):
                return base(data)

        refit = fit(model_without, prepared.data, seed + 1 + k)
        post = refit.posterior
        latent = {v: np.asarray(post[v].values) for v in prepared.latent}
        flat = {v: x.reshape((-1,) + x.shape[2:]) for v, x in latent.items()}
        ll = jax.jit(lambda s: _numpyro_log_likelihood(base, s, prepared.data))(flat)
        for i in held:
            site, index = points[i]
            values = np.asarray(ll[site])[(slice(None),) + tuple(index)]
            elpd_i[i] = float(logsumexp(values) - np.log(values.size))
    chains_draws = ll_full.shape[0] * ll_full.shape[1]
    lppd = float(np.sum(logsumexp(ll_full, axis=(0, 1)) - np.log(chains_draws)))
    pareto_k = np.asarray(loo(probe).pareto_k) if idata is not None else None
    out = _elpd_data(elpd_i, lppd, chains_draws, pareto_k)
    out["folds"] = names
    return out


def elpd(model, idata, data=None, *, k_threshold: float = 0.7, folds: int = 10, groups=None, seed: int = 0,
         **fit_options):
    """PSIS-LOO, or K-fold / leave-one-group-out refits where PSIS is unreliable.

    Returns ``(elpd_data, method)`` with ``method`` ``"psis-loo"``, ``"kfold-K"`` or ``"logo"``;
    ``elpd_data["pareto_k"]`` always holds the PSIS ``k`` of the full-data fit.
    """
    if not (isinstance(k_threshold, (int, float)) and k_threshold > 0):
        raise OptionError(f"'k_threshold' must be a positive number; got {describe(k_threshold)}")
    psis = loo(idata)
    if float(np.max(psis.pareto_k)) <= k_threshold:
        return psis, "psis-loo"
    out = kfold(model, data, idata=idata, folds=folds, groups=groups, seed=seed, **fit_options)
    return out, ("logo" if groups is not None else f"kfold-{folds}")

