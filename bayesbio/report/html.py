"""HTML assembly: one self-contained page (inline CSS, images as data URIs, no JavaScript).

Every piece of text that comes from the InferenceData (names, labels, attrs, messages) goes
through :func:`html.escape`; the markup itself is well-formed (every non-void element is
closed), so it renders the same in any browser and parses with strict XML-like parsers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from bayesbio.report import diagnostics as dg

__all__ = ["render"]

CSS = """
:root { --fail: #b3261e; --warn: #a15c00; --note: #35607f; --ok: #1e6b35; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0; color: #1d1d1f; background: #fff; line-height: 1.45; }
main { max-width: 1060px; margin: 0 auto; padding: 1.2em 1.5em 3em; }
h1 { font-size: 1.6em; margin: 0.2em 0; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
p.sub { color: #555; margin-top: 0; }
nav { font-size: 0.9em; margin: 0.8em 0 0; }
nav a { margin-right: 1em; color: #35607f; }
.headline { font-size: 1.1em; font-weight: 600; padding: 0.6em 0.9em; border-radius: 6px; }
.headline.ok { background: #e7f4ea; color: var(--ok); }
.headline.warn { background: #fdf1de; color: var(--warn); }
.headline.fail { background: #fbe7e6; color: var(--fail); }
ul.findings { list-style: none; padding-left: 0; }
ul.findings li { border-left: 5px solid #ccc; padding: 0.45em 0.8em; margin: 0.5em 0; background: #fafafa; }
ul.findings li.fail { border-color: var(--fail); }
ul.findings li.warn { border-color: var(--warn); }
ul.findings li.note { border-color: var(--note); }
.tag { display: inline-block; font-size: 0.75em; font-weight: 700; padding: 0.05em 0.45em; border-radius: 3px;
       color: #fff; margin-right: 0.5em; vertical-align: middle; }
.tag.fail { background: var(--fail); }
.tag.warn { background: var(--warn); }
.tag.note { background: var(--note); }
.suggestion { display: block; margin-top: 0.25em; color: #333; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.55em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; }
td.label, th.label { text-align: left; }
table.kv td { text-align: left; white-space: normal; }
table.kv td.key { font-weight: 600; background: #f8f8f8; white-space: nowrap; }
td.bad { background: #f8d4d1; color: var(--fail); font-weight: 700; }
td.warn { background: #fbe8c8; color: var(--warn); font-weight: 600; }
figure { margin: 0.8em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; margin-top: 0.3em; }
.muted { color: #666; font-size: 0.9em; }
code { background: #f3f3f3; padding: 0 0.25em; border-radius: 3px; }
footer { margin-top: 3em; font-size: 0.8em; color: #777; }
"""

_TAG = {"fail": "FAIL", "warn": "CHECK", "note": "NOTE"}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(x):
        return "–" if math.isnan(x) else str(x)
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def _seconds(x: float) -> str:
    return f"{x:.1f} s" if x < 120 else f"{x / 60:.1f} min"


def _kv_table(rows: Iterable[tuple[str, Any]]) -> str:
    body = "".join(f'<tr><td class="key">{esc(k)}</td><td>{esc(v)}</td></tr>' for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _img(png: str | None, alt: str, caption: str = "") -> str:
    if not png:
        return ""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{png}" alt="{esc(alt)}">{cap}</figure>'


# ----------------------------------------------------------------------------- sections


def _verdict(analysis: dg.Analysis) -> str:
    findings = analysis.findings
    fails = [f for f in findings if f.severity == "fail"]
    warns = [f for f in findings if f.severity == "warn"]
    if fails:
        cls = "fail"
        head = (
            f"{len(fails)} failed check{'s' if len(fails) > 1 else ''}"
            + (f" and {len(warns)} borderline" if warns else "")
            + ": do not rely on these results before fixing the problems below."
        )
    elif warns:
        cls = "warn"
        plural = "s" if len(warns) > 1 else ""
        head = f"{len(warns)} borderline check{plural}: see below before relying on the results."
    else:
        cls = "ok"
        head = "No problems found"
        if analysis.method in dg.APPROXIMATIONS:
            head += " by the checks available for this approximation"
        head += "."
    items = []
    for f in findings:
        sugg = (
            f'<span class="suggestion"><em>Suggestion:</em> {esc(f.suggestion)}</span>'
            if f.suggestion
            else ""
        )
        sev = esc(f.severity)
        items.append(
            f'<li class="{sev}"><span class="tag {sev}">{_TAG.get(f.severity, "")}</span>'
            f"<strong>{esc(f.check)}</strong>: {esc(f.message)}{sugg}</li>"
        )
    listing = f'<ul class="findings">{"".join(items)}</ul>' if items else ""
    checked = (
        "Checked: Pareto-k of the approximation (where available), SVI convergence, ODE solver failures, "
        "PSIS-LOO Pareto-k, parameter correlations."
        if analysis.method in dg.APPROXIMATIONS
        else "Checked: divergences, R-hat, bulk/tail ESS, tree-depth saturation, E-BFMI, "
        "ODE solver failures, PSIS-LOO Pareto-k, parameter correlations."
    )
    return (
        '<section id="verdict"><h2>Verdict</h2>'
        f'<p class="headline {cls}">{esc(head)}</p>{listing}<p class="muted">{esc(checked)}</p></section>'
    )


def _run_section(info: dict[str, Any]) -> str:
    rows = [("model", info.get("model", ""))]
    if info.get("model_source") and info.get("model_source") != info.get("model"):
        rows.append(("model source", info["model_source"]))
    rows += [
        ("data fingerprint", info.get("data_fingerprint", "–")),
        ("method", info.get("method", "")),
        ("seed", info.get("seed", "–")),
        ("chains × draws", f"{info.get('chains', 0)} × {info.get('draws', 0)}"),
    ]
    settings = info.get("settings") or {}
    if settings:
        rows.append(("settings", ", ".join(f"{k}={v}" for k, v in settings.items())))
    for key, label in (("created_at", "created"), ("platform", "platform")):
        if info.get(key) is not None:
            rows.append((label, info[key]))
    if info.get("x64") is not None:
        rows.append(("precision", "float64" if int(info["x64"]) else "float32"))
    for key, value in (info.get("extra") or {}).items():
        text = ("yes" if int(value) else "no") if key == "converged" else _fmt(value)
        rows.append((key.replace("_", " "), text))
    times = info.get("wall_times") or {}
    time_rows = [(k, _seconds(v)) for k, v in times.items()]
    versions = info.get("versions") or {}
    out = '<section id="run"><h2>Run</h2>' + _kv_table(rows)
    if time_rows:
        out += "<h3>Wall times</h3>" + _kv_table(time_rows)
    if versions:
        out += "<h3>Software</h3>" + _kv_table(sorted(versions.items()))
    return out + "</section>"


def _summary_class(column: str, value: Any) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(x):
        return ""
    if column == "r_hat":
        return "bad" if x > dg.RHAT_FAIL else "warn" if x > dg.RHAT_WARN else ""
    if column in ("ess_bulk", "ess_tail"):
        return "bad" if x < dg.ESS_FAIL else "warn" if x < dg.ESS_WARN else ""
    return ""


def _table(df: pd.DataFrame, *, classify=None, index_label: str = "") -> str:
    head = f'<th class="label">{esc(index_label)}</th>' + "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = []
    for idx, row in df.iterrows():
        cells = [f'<td class="label">{esc(idx)}</td>']
        for column, value in row.items():
            cls = classify(column, value) if classify else ""
            attr = f' class="{cls}"' if cls else ""
            digits = 3 if column == "r_hat" else 4
            text = f"{float(value):.3f}" if column == "r_hat" and _finite(value) else _fmt(value, digits)
            if column in ("ess_bulk", "ess_tail") and _finite(value):
                text = f"{float(value):.0f}"
            cells.append(f"<td{attr}>{esc(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _summary_section(analysis: dg.Analysis) -> str:
    out = '<section id="summary"><h2>Posterior summary</h2>'
    df = analysis.summary
    if df is None or df.empty:
        return out + '<p class="muted">No numeric posterior variables.</p></section>'
    if analysis.method in dg.APPROXIMATIONS:
        out += (
            '<p class="muted">Independent draws from the approximation: R-hat and ESS do not apply; '
            "the accuracy check is the Pareto-k in the verdict.</p>"
        )
    else:
        out += (
            f'<p class="muted">ArviZ summary (HDI 94%). Highlighted: R-hat &gt; {dg.RHAT_WARN} '
            f"(red above {dg.RHAT_FAIL}), bulk/tail ESS &lt; {dg.ESS_WARN:.0f} (red below "
            f"{dg.ESS_FAIL:.0f}).</p>"
        )
    shown = df
    if len(df) > dg.MAX_SUMMARY_ROWS:
        # keep the flagged rows first, then fill with the rest in order
        flagged = [i for i, row in df.iterrows() if any(_summary_class(c, v) for c, v in row.items())]
        rest = [i for i in df.index if i not in set(flagged)]
        keep = (flagged + rest)[: dg.MAX_SUMMARY_ROWS]
        shown = df.loc[[i for i in df.index if i in set(keep)]]
        out += (
            f'<p class="muted">Showing {len(shown)} of {len(df)} components (flagged ones first); '
            "the verdict covers all of them.</p>"
        )
    return out + _table(shown, classify=_summary_class) + "</section>"


def _health_class(column: str, value: Any) -> str:
    if not _finite(value):
        return ""
    x = float(value)
    if column in ("divergences", "solver failures"):
        return "bad" if x > 0 else ""
    if column == "max tree depth hits":
        return "warn" if x > 0 else ""
    if column == "E-BFMI":
        return "bad" if x < dg.BFMI_FAIL else ""
    if column in ("solver failures (warm-up)", "solver failures (fit)"):
        return "warn" if x > 0 else ""
    return ""


def _health_section(analysis: dg.Analysis, energy_png: str | None) -> str:
    out = '<section id="health"><h2>Sampler health</h2>'
    df = analysis.health
    if df is None:
        out += '<p class="muted">No sampler statistics in this result.</p>'
    else:
        out += _table(df, classify=_health_class, index_label="chain")
    out += _patient_failures(analysis.patient_failures)
    if energy_png:
        out += _img(
            energy_png,
            "energy plot",
            "Marginal energy and energy transitions (E-BFMI per chain): the two densities should "
            f"overlap; E-BFMI below {dg.BFMI_FAIL} indicates poor exploration of the tails.",
        )
    return out + "</section>"


def _patient_class(column: str, value: Any) -> str:
    return "bad" if column == "sampling" and _finite(value) and float(value) > 0 else ""


def _patient_failures(table: pd.DataFrame | None, limit: int = 20) -> str:
    """Population models: the patients with failed solves (most first), summed over chains."""
    if table is None:
        return ""
    what = table.index.name or "patient"
    shown = table.head(limit)
    note = f"; the {len(shown)} with most failures shown" if len(shown) < len(table) else ""
    return (
        f'<h3 id="patient-failures">Solver failures per {esc(what)}</h3><p class="muted">{len(table)} of '
        f"{esc(table.attrs.get('patients', '?'))} {esc(what)}s had failed solves (summed over chains; a "
        f"{esc(what)} counts once for each model evaluation in which its solve failed){esc(note)}.</p>"
        + _table(shown, classify=_patient_class, index_label=what)
    )


def _approx_section(analysis: dg.Analysis, elbo_png: str | None) -> str:
    method = analysis.method
    label = "SVI" if method == "svi" else "Laplace approximation"
    out = f'<section id="approximation"><h2>{esc(label)}</h2>'
    rows = []
    if analysis.importance_k is None:
        rows.append(("Pareto-k of importance weights", "not available (no importance weights stored)"))
    else:
        k = analysis.importance_k
        verdict = "good" if k <= dg.PARETO_K_WARN else "borderline" if k <= dg.PARETO_K_FAIL else "unreliable"
        rows.append(
            ("Pareto-k of importance weights", f"{k:.2f} ({verdict}; > {dg.PARETO_K_FAIL} means use NUTS)")
        )
    extra = analysis.info.get("extra") or {}
    if method == "svi" and "converged" in extra:
        rows.append(("ELBO converged", "yes" if int(extra["converged"]) else "no"))
    if "final_elbo" in extra:
        rows.append(("final ELBO", _fmt(extra["final_elbo"])))
    out += _kv_table(rows)
    if elbo_png:
        out += _img(
            elbo_png,
            "ELBO trace",
            "Loss (−ELBO) per optimisation step; a converged run ends on a flat, noisy plateau.",
        )
    return out + "</section>"


def _traces_section(trace_png, rank_png, n_shown: int, n_total: int, density_png=None) -> str:
    if not trace_png and not rank_png and not density_png:
        return ""
    title = "Traces and ranks" if (trace_png or rank_png) else "Posterior densities"
    out = f'<section id="traces"><h2>{title}</h2>'
    if n_total > n_shown:
        out += (
            f'<p class="muted">Showing {n_shown} of {n_total} scalar components '
            "(the smallest variables first).</p>"
        )
    out += _img(
        trace_png,
        "trace plot",
        "Left: posterior density per chain; right: draws per chain (divergent draws as ticks at the "
        "bottom). Chains should overlap and look like stationary noise.",
    )
    out += _img(
        rank_png,
        "rank plot",
        "Rank histograms per chain: roughly uniform and alike when the chains mix well.",
    )
    out += _img(
        density_png,
        "posterior densities",
        "Densities of the draws from the approximation, with mean and 94% HDI (the draws are "
        "independent, so trace and rank plots do not apply).",
    )
    return out + "</section>"


def _pairs_section(analysis: dg.Analysis, pair_png: str | None) -> str:
    if not analysis.pairs and not analysis.divergence_pair:
        return ""
    caption = "Posterior draws of the most correlated pairs"
    caption += "." if analysis.method in dg.APPROXIMATIONS else "; divergent draws in red."
    if analysis.divergence_pair:
        a, b = analysis.divergence_pair
        caption += (
            f" Last panel: {a} against {b}, the components whose divergent draws lie furthest from "
            "the bulk (log axes for positive ones); a funnel shape there calls for a non-centred "
            "parameterisation."
        )
    rows = "".join(
        f'<tr><td class="label">{esc(a)}</td><td class="label">{esc(b)}</td><td>{r:+.3f}</td></tr>'
        for a, b, r in analysis.pairs
    )
    table = (
        '<table><thead><tr><th class="label">component</th><th class="label">component</th>'
        f"<th>correlation</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return (
        '<section id="pairs"><h2>Most correlated parameters</h2>'
        '<p class="muted">The pairs of scalar components with the largest absolute posterior correlation '
        "(an identifiability hint: |r| near 1 means the data pin down a combination, not each one).</p>"
        + table
        + _img(pair_png, "pair plot", caption)
        + "</section>"
    )


def _ppc_section(ppc: list[tuple[str, str, str]]) -> str:
    if not ppc:
        return ""
    captions = {
        "bands": "Posterior predictive median with 50% and 90% bands against the observations (points).",
        "intervals": "Posterior predictive 50% and 90% intervals per observed value; observations as points.",
        "density": "Observed data density (black) against densities of posterior predictive draws (blue).",
    }
    out = (
        '<section id="ppc"><h2>Posterior predictive checks</h2><p class="muted">Replicated data '
        "simulated from the posterior, including the observation noise. Observations far outside "
        "the bands point to model misfit.</p>"
    )
    for name, kind, png in ppc:
        out += f"<h3>{esc(name)}</h3>" + _img(png, f"posterior predictive check of {name}", captions[kind])
    return out + "</section>"


def _loo_section(analysis: dg.Analysis, khat_png: str | None) -> str:
    out = '<section id="loo"><h2>PSIS-LOO</h2>'
    loo = analysis.loo
    if loo is None:
        reason = analysis.loo_error or "no log-likelihood in this result"
        return out + f'<p class="muted">Not computed: {esc(reason)}.</p></section>'
    e = loo.elpd
    out += (
        '<p class="muted">Pareto-smoothed importance-sampling leave-one-out cross-validation over every '
        f"observed value of {esc(', '.join(loo.variables))} pooled ({len(loo.labels)} points): each observed "
        "value is left out in turn, and elpd_loo is the sum over all of them (the same as adding the "
        "per-variable estimates).</p>"
    )
    if analysis.method in dg.APPROXIMATIONS:
        out += (
            '<p class="muted">The draws come from an approximation and are used as if they were posterior '
            "draws: a high Pareto-k can reflect the approximation as well as an influential observation.</p>"
        )
    rows = [
        ("elpd_loo", f"{float(e.elpd_loo):.2f} ± {float(e.se):.2f}"),
        ("p_loo (effective number of parameters)", f"{float(e.p_loo):.2f}"),
        ("observations", str(len(loo.labels))),
        (f"Pareto-k > {loo.good_k:.2f}", str(len(loo.flagged()))),
    ]
    if loo.dropped_missing:
        rows.append(("left out (missing observations)", str(loo.dropped_missing)))
    out += _kv_table(rows)
    out += _img(
        khat_png,
        "Pareto-k plot",
        f"Pareto-k per observation; above {loo.good_k:.2f} the LOO estimate for that observation is "
        "unreliable (an influential observation).",
    )
    flagged = loo.flagged()
    if flagged:
        body = "".join(
            f'<tr><td class="label">{esc(lab)}</td><td class="warn">{k:.2f}</td></tr>'
            for lab, k in flagged[:20]
        )
        out += (
            '<h3>Influential observations</h3><table><thead><tr><th class="label">observation</th>'
            f"<th>Pareto-k</th></tr></thead><tbody>{body}</tbody></table>"
        )
    return out + "</section>"


def render(
    analysis: dg.Analysis,
    figs: dict[str, Any],
    *,
    problems: list[str] | None = None,
    elapsed: float | None = None,
) -> str:
    """The whole page. ``figs`` maps figure names (trace, rank, energy, pair, ppc, khat, elbo)
    to base64 PNG (``ppc``: a list of ``(variable, kind, png)``)."""
    info = analysis.info
    title = f"{info.get('model', 'model')} — {info.get('method', '')} diagnostics"
    approx = analysis.method in dg.APPROXIMATIONS
    sections = [
        _verdict(analysis),
        _run_section(info),
        _summary_section(analysis),
        _approx_section(analysis, figs.get("elbo"))
        if approx
        else _health_section(analysis, figs.get("energy")),
        _traces_section(
            figs.get("trace"),
            figs.get("rank"),
            figs.get("n_components", 0),
            figs.get("n_components_total", 0),
            figs.get("density"),
        ),
        _pairs_section(analysis, figs.get("pair")),
        _ppc_section(figs.get("ppc") or []),
        _loo_section(analysis, figs.get("khat")),
    ]
    links = [
        ("verdict", "Verdict"),
        ("run", "Run"),
        ("summary", "Summary"),
        ("approximation", "Approximation") if approx else ("health", "Sampler health"),
        ("traces", "Traces"),
        ("pairs", "Pairs"),
        ("ppc", "Predictive checks"),
        ("loo", "LOO"),
    ]
    present = "".join(sections)
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in links if f'id="{a}"' in present)
    notes = ""
    if problems:
        notes = (
            '<section id="report-problems"><h2>Report problems</h2><ul>'
            + "".join(f"<li>{esc(p)}</li>" for p in problems)
            + "</ul></section>"
        )
    footer = "Generated by bayesbio.report"
    versions = info.get("versions") or {}
    if versions.get("bayesbio"):
        footer += f" (bayesbio {versions['bayesbio']})"
    if elapsed is not None:
        footer += f" in {elapsed:.1f} s"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
        f"<header><h1>{esc(title)}</h1>"
        f'<p class="sub">data {esc(info.get("data_fingerprint", "–"))} · seed {esc(info.get("seed", "–"))} · '
        f"{esc(info.get('chains', 0))} chain(s) × {esc(info.get('draws', 0))} draws</p>"
        f"<nav>{nav}</nav></header>"
        + present
        + notes
        + f"<footer>{esc(footer)}.</footer></main></body></html>\n"
    )
