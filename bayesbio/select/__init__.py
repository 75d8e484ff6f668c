"""Bayesian model selection: LOO/WAIC, K-fold, stacking, model evidence and Bayes factors.

Generic over bayesbio models (ODE, population, PDE, constitutive):

* :func:`loo`, :func:`waic` — PSIS-LOO and WAIC with Pareto ``k`` (ArviZ) over all observed
  sites; :func:`kfold` — K-fold / leave-one-group-out refits; :func:`elpd` — PSIS-LOO with
  automatic refits where ``k`` is high; :func:`stacking_weights`.
* :func:`log_evidence_smc` (adaptive tempered SMC) and :func:`log_evidence_bridge` (bridge
  sampling from posterior draws) — two independent evidence estimators, each with a
  Monte-Carlo standard error; :func:`bayes_factor`, :func:`posterior_model_probabilities`.
* :func:`compare_models` — all of it for a list of models; :func:`plot_comparison`.
"""

from bayesbio.select.bridge import log_evidence_bridge
from bayesbio.select.compare import COLUMNS, Comparison, compare_models, stacking_weights
from bayesbio.select.evidence import BayesFactor, EvidenceEstimate, bayes_factor, posterior_model_probabilities
from bayesbio.select.loo import elpd, kfold, loo, pointwise_log_likelihood, waic
from bayesbio.select.plot import plot_comparison
from bayesbio.select.smc import log_evidence_smc

__all__ = [
    "COLUMNS",
    "BayesFactor",
    "Comparison",
    "EvidenceEstimate",
    "bayes_factor",
    "compare_models",
    "elpd",
    "kfold",
    "log_evidence_bridge",
    "log_evidence_smc",
    "loo",
    "plot_comparison",
    "pointwise_log_likelihood",
    "posterior_model_probabilities",
    "stacking_weights",
    "waic",
]
