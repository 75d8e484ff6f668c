"""Model evidence results, Bayes factors and posterior model probabilities."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import logsumexp

from bayesbio.errors import OptionError, describe

__all__ = ["BayesFactor", "EvidenceEstimate", "bayes_factor", "posterior_model_probabilities"]


@dataclass(frozen=True)
class EvidenceEstimate:
    """A log marginal likelihood estimate ``log p(y | model)`` with its Monte-Carlo error.

    Attributes
    ----------
    log_evidence : float
        Estimate of ``log p(y)`` (nats).
    se : float
        Monte-Carlo standard error of ``log_evidence`` (nats).
    method : str
        ``"smc"`` or ``"bridge"``.
    details : dict
        Method-specific diagnostics (independent runs, temperatures, acceptance, iterations).
    """

    log_evidence: float
    se: float
    method: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"EvidenceEstimate({self.method}: {self.log_evidence:.3f} ± {self.se:.3f})"


@dataclass(frozen=True)
class BayesFactor:
    """``log B_12 = log p(y | M1) - log p(y | M2)`` with its Monte-Carlo standard error."""

    log_bf: float
    se: float

    @property
    def bf(self) -> float:
        return float(np.exp(self.log_bf))

    def __repr__(self) -> str:
        return f"BayesFactor(log B = {self.log_bf:.3f} ± {self.se:.3f}, B = {self.bf:.4g})"


def _value_se(e) -> tuple[float, float]:
    if isinstance(e, EvidenceEstimate):
        return float(e.log_evidence), float(e.se)
    if isinstance(e, (tuple, list)) and len(e) == 2:
        return float(e[0]), float(e[1])
    try:
        return float(e), 0.0
    except (TypeError, ValueError):
        raise OptionError(
            f"an evidence must be an EvidenceEstimate, a (log_evidence, se) pair or a number; got {describe(e)}"
        ) from None


def bayes_factor(evidence_1, evidence_2) -> BayesFactor:
    """Bayes factor of model 1 over model 2 from two evidence estimates (independent errors add
    in quadrature)."""
    v1, s1 = _value_se(evidence_1)
    v2, s2 = _value_se(evidence_2)
    return BayesFactor(log_bf=v1 - v2, se=float(np.hypot(s1, s2)))


def posterior_model_probabilities(
    log_evidences: Sequence | Mapping[str, Any], prior_weights: Sequence[float] | Mapping[str, float] | None = None
):
    """Posterior model probabilities ``p(M_k | y) ∝ w_k p(y | M_k)``.

    Parameters
    ----------
    log_evidences : sequence or dict
        Log evidences (numbers, (value, se) pairs or EvidenceEstimate); a dict keeps its names.
    prior_weights : sequence or dict, optional
        Non-negative prior model weights (normalised here); default uniform.

    Returns
    -------
    numpy array, or dict when ``log_evidences`` is a dict
    """
    names = list(log_evidences) if isinstance(log_evidences, Mapping) else None
    values = list(log_evidences.values()) if names is not None else list(log_evidences)
    if not values:
        raise OptionError("'log_evidences' is empty: give one evidence per model")
    logz = np.array([_value_se(v)[0] for v in values])
    if prior_weights is None:
        w = np.ones(len(logz))
    else:
        if isinstance(prior_weights, Mapping):
            if names is None or set(prior_weights) != set(names):
                raise OptionError(f"'prior_weights' must name the same models as the evidences {names}; "
                                  f"got {sorted(prior_weights)}")
            w = np.array([prior_weights[n] for n in names], dtype=float)
        else:
            w = np.asarray(prior_weights, dtype=float)
        if w.shape != logz.shape or np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise OptionError(
                f"'prior_weights' must be {len(logz)} non-negative numbers, not all zero; got {describe(prior_weights)}"
            )
    with np.errstate(divide="ignore"):
        log_post = np.log(w / w.sum()) + logz
    if not np.any(np.isfinite(log_post)):
        raise OptionError("no model has a finite log evidence with positive prior weight")
    probs = np.exp(log_post - logsumexp(log_post))
    return dict(zip(names, probs.tolist())) if names is not None else probs
