"""Individual fits: every fitted patient's observations with individual (IPRED) and
population (PRED) predictions and their posterior credible bands, on a fine time grid
(numbers for :func:`bayesbio.population.plot_individual_fits`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayesbio.population.batch import as_batch
from bayesbio.population.simulate import (
    _resolve_model,
    _site_info,
    dense_events,
    prediction_bands,
    simulate,
    with_events,
)

__all__ = ["IndividualFits", "individual_fits"]



@dataclass(frozen=True)
class IndividualFits:
    """Observations and posterior prediction bands of every patient (see :func:`individual_fits`).

    Attributes
    ----------
    site : str
        The observed site.
    labels : list
        Patient labels (the ``patient`` coordinate of the fit, else 0..P-1).
    obs_time, obs_value : arrays (P, O)
        The observations (NaN where none).
    time : array (P, T)
        Prediction grid of each patient.
    quantiles : array (Q,)
    ipred : array (Q, P, T)
        Individual predictions (posterior random effects of the patient).
    pred : array (Q, P, T)
        Population predictions (random effects 0: the typical patient with this patient's
        doses and covariates).
    """

    site: str
    labels: list
    obs_time: np.ndarray
    obs_value: np.ndarray
    time: np.ndarray
    quantiles: np.ndarray
    ipred: np.ndarray
    pred: np.ndarray


def individual_fits(
    model,
    idata,
    data: Mapping[str, Any] | None = None,
    *,
    site: str | None = None,
    num_draws: int = 200,
    num_times: int = 100,
    compartment: int | None = None,
    random_effects: str = "eta",
    quantiles: Sequence[float] = (0.05, 0.5, 0.95),
) -> IndividualFits:
    """Individual (IPRED) and population (PRED) predictions of every fitted patient, with
    credible bands from ``num_draws`` posterior draws, on a grid of ``num_times`` times.

    ``compartment``: the ``obs_cmt`` of the grid records (models with several outputs select
    the output by it; default each patient's first observed one).
    """
    from bayesbio.population.diagnostics import _observed_values

    fn, data = _resolve_model(model, data)
    _, observed = _site_info(fn, data)
    name = site or observed[0]
    batch = as_batch(data["events"])
    dense = dense_events(batch, num_times=num_times, compartment=compartment)
    design = with_events(data, dense)
    kw = dict(random_effects=random_effects, sites=name, num_draws=num_draws)
    ipred = simulate(fn, idata, design, mode="individual", **kw).prediction[name]
    pred = simulate(fn, idata, design, mode="typical", **kw).prediction[name]
    n = batch.n_patients
    labels = list(range(n))
    post = getattr(idata, "posterior", None)
    if post is not None and "patient" in getattr(post, "coords", {}) and post.sizes["patient"] == n:
        labels = [x.item() if hasattr(x, "item") else x for x in post["patient"].values]
    elif isinstance(model, str):  # a bundled model or script: its own coords
        from bayesbio.model import load_model

        try:
            named = load_model(model).coords_for(data).get("patient")
        except (ValueError, KeyError, TypeError, IndexError):  # labels are cosmetic: fall back to 0..P-1
            named = None
        if named is not None and len(named) == n:
            labels = list(named)
    valid = np.asarray(batch.obs_valid)
    return IndividualFits(
        site=name,
        labels=labels,
        obs_time=np.where(valid, np.asarray(batch.obs_time, float), np.nan),
        obs_value=_observed_values(fn, data, name),
        time=np.asarray(dense.obs_time, float),
        quantiles=np.asarray(quantiles, float),
        ipred=prediction_bands(ipred, quantiles),
        pred=prediction_bands(pred, quantiles),
    )
