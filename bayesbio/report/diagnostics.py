"""Diagnostics of an ``arviz.InferenceData``: pure functions, no plotting, no HTML.

:func:`diagnose` turns a fitted result into a list of :class:`Finding` objects (the verdict);
:func:`analyse` computes everything the report shows (summary table, per-chain health, PSIS-LOO,
correlated parameter pairs, run metadata) once, so the verdict and the tables agree.

The verdict (thresholds, :class:`Finding` and the checks) lives in :mod:`~bayesbio.report.verdict`,
the tables, scalar components and PSIS-LOO in :mod:`~bayesbio.report.tables`; this module
combines them and re-exports their public names.

Thresholds (module constants, all from the ArviZ/Stan recommendations):

* R-hat (rank-normalised, split): > 1.01 borderline, > 1.05 failed;
* bulk and tail effective sample size: < 400 borderline, < 100 failed;
* divergent transitions after warm-up: any is a failure;
* tree-depth saturation: any is borderline, more than 10 % of the draws of a chain a failure;
* E-BFMI (energy Bayesian fraction of missing information): < 0.3 in a chain is a failure;
* ODE/PDE solver failures while sampling: any is a failure (during warm-up only: a note); for
  population models the patients with most failed solves are named, and listed in a table;
* Pareto-k̂ of importance weights (Laplace/SVI against the posterior): > 0.7 failed, > 0.5 borderline;
* PSIS-LOO Pareto-k̂ of an observation above ArviZ's ``good_k`` (0.7 for large samples): borderline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bayesbio.infer._patients import patient_failure_table
from bayesbio.report.tables import MAX_CORRELATION_COMPONENTS as MAX_CORRELATION_COMPONENTS
from bayesbio.report.tables import MAX_PLOT_COMPONENTS as MAX_PLOT_COMPONENTS
from bayesbio.report.tables import MAX_SUMMARY_ROWS as MAX_SUMMARY_ROWS
from bayesbio.report.tables import (
    LooResult,
    chain_health,
    correlated_pairs,
    divergence_pair,
    importance_pareto_k,
    loo_pooled,
    method_of,
    plot_components,
    run_info,
    scalar_components,
    summary_table,
)
from bayesbio.report.verdict import BFMI_FAIL as BFMI_FAIL
from bayesbio.report.verdict import CORRELATION_NOTE as CORRELATION_NOTE
from bayesbio.report.verdict import ESS_FAIL as ESS_FAIL
from bayesbio.report.verdict import ESS_WARN as ESS_WARN
from bayesbio.report.verdict import LAPLACE_GRADIENT_WARN as LAPLACE_GRADIENT_WARN
from bayesbio.report.verdict import PARETO_K_FAIL as PARETO_K_FAIL
from bayesbio.report.verdict import PARETO_K_WARN as PARETO_K_WARN
from bayesbio.report.verdict import RHAT_FAIL as RHAT_FAIL
from bayesbio.report.verdict import RHAT_WARN as RHAT_WARN
from bayesbio.report.verdict import SEVERITIES as SEVERITIES
from bayesbio.report.verdict import TREEDEPTH_FAIL_FRACTION as TREEDEPTH_FAIL_FRACTION
from bayesbio.report.verdict import (
    APPROXIMATIONS,
    Finding,
    _attrs,
    _check_approximation,
    _check_bfmi,
    _check_divergences,
    _check_loo,
    _check_pairs,
    _check_rhat_ess,
    _check_solver,
    _check_treedepth,
    _settings,
    _sorted,
)

__all__ = [
    "Analysis",
    "Finding",
    "LooResult",
    "analyse",
    "chain_health",
    "correlated_pairs",
    "diagnose",
    "divergence_pair",
    "loo_pooled",
    "method_of",
    "plot_components",
    "run_info",
    "scalar_components",
    "summary_table",
]


@dataclass
class Analysis:
    """Everything the report shows, computed once from an InferenceData."""

    method: str
    info: dict[str, Any]
    summary: pd.DataFrame | None
    summary_rows_total: int
    health: pd.DataFrame | None
    loo: LooResult | None
    loo_error: str | None
    pairs: list[tuple[str, str, float]]
    divergence_pair: tuple[str, str] | None
    importance_k: float | None
    findings: list[Finding] = field(default_factory=list)
    #: population models: patients with failed solves, most first (see
    #: :func:`bayesbio.infer._patients.patient_failure_table`), else None
    patient_failures: pd.DataFrame | None = None

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity in ("fail", "warn")]


def analyse(idata, *, loo: bool = True) -> Analysis:
    """Compute the verdict and every table of the report from an InferenceData."""
    if not hasattr(idata, "posterior"):
        raise ValueError("the InferenceData has no posterior group")
    method = method_of(idata)
    attrs = _attrs(idata)
    settings = _settings(attrs)
    summary = summary_table(idata, method=method)
    health = chain_health(idata)
    loo_result, loo_error = None, None
    if loo:
        try:
            loo_result = loo_pooled(idata)
        except Exception as exc:  # noqa: BLE001 - e.g. a single draw
            loo_error = f"{type(exc).__name__}: {exc}"
    pairs = correlated_pairs(idata.posterior)
    importance_k = importance_pareto_k(idata) if method in APPROXIMATIONS else None

    findings: list[Finding] = []
    if method not in APPROXIMATIONS:
        findings += _check_divergences(idata, settings)
        findings += _check_rhat_ess(summary, attrs.get("metric"))
        findings += _check_treedepth(idata, settings)
        findings += _check_bfmi(idata)
    findings += _check_approximation(idata, method, importance_k)
    findings += _check_solver(idata, method)
    findings += _check_loo(loo_result)
    findings += _check_pairs(pairs, attrs.get("metric"))
    if loo_error:
        findings.append(Finding("PSIS-LOO", "note", f"could not be computed ({loo_error})."))
    return Analysis(
        method=method,
        info=run_info(idata),
        summary=summary,
        summary_rows_total=0 if summary is None else len(summary),
        health=health,
        loo=loo_result,
        loo_error=loo_error,
        pairs=pairs,
        divergence_pair=divergence_pair(idata) if method not in APPROXIMATIONS else None,
        importance_k=importance_k,
        findings=_sorted(findings),
        patient_failures=patient_failure_table(idata),
    )


def diagnose(idata) -> list[Finding]:
    """The verdict: failed and borderline diagnostics (then notes), worst first; empty when
    nothing was found."""
    return analyse(idata).findings
