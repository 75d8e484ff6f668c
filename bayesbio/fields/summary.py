"""Field summaries: posterior mean, pointwise sd, credible bands and sample fields, from any runner.

:func:`summarize_field` accepts an ``arviz.InferenceData`` (NUTS, SVI, Laplace draws; bands
from pointwise quantiles), a :class:`~bayesbio.fields.FieldPosterior` (exact or Laplace;
Gaussian bands), or an array of draws ``(draws, *shape)``. :func:`band_coverage` and
:func:`compare_fields` are the checks used against a known truth or an oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayesbio.errors import DataError, OptionError, describe
from bayesbio.fields.exact import FieldPosterior, _check_prob

__all__ = ["FieldSummary", "band_coverage", "compare_fields", "summarize_field"]


@dataclass
class FieldSummary:
    """Pointwise summary of a field posterior; arrays have the field's shape.

    ``samples`` holds a few posterior sample fields ``(k, *shape)`` for plots.
    """

    mean: np.ndarray
    sd: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    prob: float
    samples: np.ndarray
    method: str = ""
    name: str = ""


def _draws_from_idata(idata, name):
    if name is None:
        raise OptionError("'name' (the field's variable) is required with an InferenceData")
    if not hasattr(idata, "posterior") or name not in idata.posterior:
        have = sorted(idata.posterior.data_vars) if hasattr(idata, "posterior") else []
        raise OptionError(f"'name': no posterior variable '{name}'; variables: {have}")
    v = np.asarray(idata.posterior[name].values)
    return v.reshape((-1,) + v.shape[2:]), str(idata.posterior.attrs.get("method", "draws"))


def summarize_field(source, name: str | None = None, *, prob: float = 0.95, n_samples: int = 5,
                    seed: int = 0) -> FieldSummary:
    """Mean, sd, central ``prob`` band and ``n_samples`` sample fields of a field posterior."""
    prob = _check_prob(prob)
    rng = np.random.default_rng(seed)
    if isinstance(source, FieldPosterior):
        lo, hi = source.band(prob)
        samples = source.sample(rng, n_samples) if source.factor is not None else np.empty((0,) + source.mean.shape)
        return FieldSummary(source.mean, source.sd, lo, hi, prob, samples, source.method, name or "")
    if hasattr(source, "posterior"):
        draws, method = _draws_from_idata(source, name)
    else:
        draws, method = np.asarray(source, dtype=float), "draws"
    if draws.ndim < 2 or draws.shape[0] < 2:
        raise DataError(f"draws must have shape (draws >= 2, *field_shape); got {describe(draws)}")
    q = np.quantile(draws, [0.5 - prob / 2, 0.5 + prob / 2], axis=0)
    pick = rng.choice(draws.shape[0], size=min(n_samples, draws.shape[0]), replace=False)
    return FieldSummary(draws.mean(axis=0), draws.std(axis=0, ddof=1), q[0], q[1], prob, draws[pick], method,
                        name or "")


def band_coverage(summary: FieldSummary | FieldPosterior, truth, *, prob: float = 0.95) -> float:
    """Fraction of grid points where ``truth`` lies inside the credible band."""
    if isinstance(summary, FieldPosterior):
        lo, hi = summary.band(prob)
    else:
        lo, hi = summary.lower, summary.upper
    truth = np.asarray(truth, dtype=float)
    if truth.shape != np.shape(lo):
        raise DataError(f"'truth' must have the field's shape {np.shape(lo)}; got {describe(truth)}")
    return float(np.mean((truth >= lo) & (truth <= hi)))


def compare_fields(candidate, reference, prior_sd) -> dict:
    """How far a posterior is from a reference: the acceptance metrics for field inference.

    Returns ``max_mean_error_prior_sd`` (``max |mean - ref_mean| / prior_sd``) and
    ``max_sd_rel_error`` (``max |sd / ref_sd - 1|``), maxima over the grid.
    """
    a = candidate if isinstance(candidate, (FieldSummary, FieldPosterior)) else summarize_field(candidate)
    b = reference if isinstance(reference, (FieldSummary, FieldPosterior)) else summarize_field(reference)
    prior_sd = np.broadcast_to(np.asarray(prior_sd, float), np.shape(b.mean))
    return {
        "max_mean_error_prior_sd": float(np.max(np.abs(a.mean - b.mean) / prior_sd)),
        "max_sd_rel_error": float(np.max(np.abs(a.sd / b.sd - 1.0))),
    }
