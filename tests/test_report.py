"""HTML diagnostic reports (bayesbio.report).

Fits are small NumPyro models (no ODE) so the tier stays fast: a well-behaved regression, a
deliberately bad centred eight-schools hierarchy (divergences), an SVI and a Laplace fit.
Report-level checks use a synthetic Lotka–Volterra-shaped InferenceData (4 chains x 1000 draws).
Shared models, the synthetic result and the HTML checks are in report_helpers.py; the headless
Chromium test is in test_report_browser.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import arviz as az
import numpy as np
import pytest

import bayesbio as bb
from bayesbio.report import (
    ReportWarning,
    analyse,
    build_report,
    cli_report,
    diagnose,
    report_main,
    write_report,
)
from bayesbio.report import diagnostics as dg

from report_helpers import (
    MAX_BYTES,
    check_report,
    fit_bad_run,
    fit_good_run,
    fit_laplace_run,
    fit_svi_run,
    parse,
    section,
    synthetic_lv,
)


@pytest.fixture(scope="module")
def good_run():
    return fit_good_run()


@pytest.fixture(scope="module")
def bad_run():
    return fit_bad_run()


@pytest.fixture(scope="module")
def svi_run():
    return fit_svi_run()


@pytest.fixture(scope="module")
def laplace_run():
    return fit_laplace_run()


# ----------------------------------------------------------------------------- tests: real fits


def test_clean_run_report(good_run, tmp_path):
    findings = diagnose(good_run)
    assert not [f for f in findings if f.severity in ("fail", "warn")], [str(f) for f in findings]
    path = write_report(good_run, tmp_path / "good.html")
    assert path == tmp_path / "good.html"
    text, parser = check_report(path)
    verdict = section(text, "verdict")
    assert "No problems found" in verdict
    # trace, rank, energy, pair, ppc, khat
    alts = {img["alt"] for img in parser.images}
    assert {"trace plot", "rank plot", "energy plot", "pair plot", "Pareto-k plot"} <= alts
    assert any(a.startswith("posterior predictive check of y") for a in alts)
    for sid in ("run", "summary", "health", "traces", "pairs", "ppc", "loo"):
        assert sid in parser.sections
    run = section(text, "run")
    for word in (
        "regression",
        "data fingerprint",
        "target_accept=0.8",
        "compile",
        "warm-up",
        "sampling",
        "numpyro",
    ):
        assert word in run


def test_bad_run_report_names_divergences(bad_run, tmp_path):
    n_div = int(bad_run.sample_stats["diverging"].sum())
    assert n_div > 0, "the centred eight-schools run should diverge"
    findings = diagnose(bad_run)
    div = [f for f in findings if f.check == "Divergences"]
    assert div and div[0].severity == "fail"
    assert str(n_div) in div[0].message
    assert "target_accept" in div[0].suggestion and "non-centred" in div[0].suggestion
    assert findings[0].severity == "fail"  # worst first

    text, _ = check_report(write_report(bad_run, tmp_path / "bad.html"))
    verdict = section(text, "verdict")
    assert "Divergences" in verdict and "No problems found" not in verdict
    assert "0.95" in verdict  # the concrete target_accept to try
    assert text.index("Divergences") < text.index('<section id="summary">')
    health = section(text, "health")
    assert 'class="bad"' in health  # divergence cells highlighted
    # the divergence panel of the pair plot points at the funnel (tau)
    analysis = analyse(bad_run)
    assert analysis.divergence_pair is not None and "tau" in analysis.divergence_pair


def test_svi_report(svi_run, tmp_path):
    assert "svi_trace" in svi_run.groups()
    text, parser = check_report(write_report(svi_run, tmp_path / "svi.html"))
    alts = {img["alt"] for img in parser.images}
    assert "ELBO trace" in alts and "posterior densities" in alts
    assert "trace plot" not in alts and "rank plot" not in alts
    assert "approximation" in parser.sections and "health" not in parser.sections
    summary = section(text, "summary")
    assert "r_hat" not in summary and "ess_bulk" not in summary
    assert "importance weights" in section(text, "verdict")  # says the Pareto-k check is unavailable


def test_svi_not_converged_is_reported(svi_run):
    idata = svi_run.copy()
    idata.posterior.attrs["converged"] = 0
    checks = {f.check: f for f in diagnose(idata)}
    assert checks["SVI convergence"].severity == "fail"
    assert "NUTS" in checks["SVI convergence"].suggestion


def test_laplace_report_pareto_k(laplace_run, tmp_path):
    analysis = analyse(laplace_run)
    assert analysis.importance_k is not None
    assert analysis.importance_k == pytest.approx(float(laplace_run.posterior.attrs["pareto_k"]), abs=1e-6)
    text, _ = check_report(write_report(laplace_run, tmp_path / "laplace.html"))
    assert "Pareto-k of importance weights" in section(text, "approximation")
    idata = laplace_run.copy()
    log_w = idata.sample_stats["log_importance_weight"]
    heavy = 5 * np.random.default_rng(0).standard_exponential(log_w.shape)  # Pareto-k ~ 5
    idata.sample_stats["log_importance_weight"] = (log_w.dims, heavy)
    bad = [f for f in diagnose(idata) if f.check.startswith("Laplace accuracy")]
    assert bad and bad[0].severity == "fail" and "NUTS" in bad[0].suggestion


def test_cli_report_from_netcdf(svi_run, tmp_path, capsys):
    nc = tmp_path / "svi.nc"
    svi_run.to_netcdf(str(nc), engine="h5netcdf")
    out = cli_report(nc)
    assert out == tmp_path / "svi.html"
    _, parser = check_report(out)
    assert "ELBO trace" in {img["alt"] for img in parser.images}  # the custom svi_trace group survives
    rc = report_main(argparse.Namespace(results=str(nc), out=str(tmp_path / "other.html")))
    assert rc == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "other.html" in printed


def test_missing_or_unreadable_results_file(tmp_path):
    with pytest.raises(bb.errors.BayesbioError, match="does not exist"):
        cli_report(tmp_path / "nope.nc")
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    with pytest.raises(bb.errors.BayesbioError, match="could not read"):
        cli_report(junk)
    assert not (tmp_path / "junk.html").exists()


# ----------------------------------------------------------------------------- tests: synthetic results


def test_lv_shaped_report_size_and_time(tmp_path):
    idata = synthetic_lv()
    t0 = time.perf_counter()
    path = write_report(idata, tmp_path / "lv.html")
    elapsed = time.perf_counter() - t0
    text, _ = check_report(path)
    assert elapsed < 20, f"report took {elapsed:.1f} s"
    assert path.stat().st_size < MAX_BYTES
    assert "No problems found" in section(text, "verdict")
    assert "solver failures (warm-up)" in section(text, "health")  # the note
    ppc = section(text, "ppc")
    assert "posterior predictive check of y" in ppc and "posterior predictive check of y_init" in ppc
    loo = section(text, "loo")
    assert "42 points" in loo  # 2 (y_init) + 20 x 2 (y) pooled
    for label in ("theta[alpha]", "z_init[hare]", "sigma[lynx]"):
        assert label in section(text, "summary")


def test_loo_pools_all_observed_variables_and_skips_missing():
    idata = synthetic_lv(chains=2, draws=200)
    obs = idata.observed_data["y"].values.copy()
    obs[3, 1] = np.nan
    idata.observed_data["y"] = (("time", "species"), obs)
    loo = dg.loo_pooled(idata)
    assert loo.variables == ["y_init", "y"]
    assert len(loo.labels) == 41 and loo.dropped_missing == 1
    assert "y[1904, lynx]" not in loo.labels and "y[1904, hare]" in loo.labels
    assert loo.labels[0] == "y_init[hare]"
    # pooled elpd = sum of the per-variable estimates
    single = {}
    for name in ("y_init", "y"):
        d = az.InferenceData(posterior=idata.posterior, log_likelihood=idata.log_likelihood[[name]])
        e = az.loo(d, pointwise=True, var_name=name)
        single[name] = e.loo_i.values.reshape(-1)
    expected = single["y_init"].sum() + np.delete(single["y"], 3 * 2 + 1).sum()
    assert float(loo.elpd.elpd_loo) == pytest.approx(expected, rel=1e-6)


def _checks(idata):
    return {f.check: f for f in diagnose(idata)}


def test_rhat_and_ess_findings():
    idata = synthetic_lv(chains=4, draws=200)
    theta = idata.posterior["theta"].values.copy()
    theta[0, :, 0] += 0.3  # chain 0 stuck elsewhere for alpha
    idata.posterior["theta"] = (("chain", "draw", "parameter"), theta)
    checks = _checks(idata)
    assert checks["R-hat"].severity == "fail" and "theta[alpha]" in checks["R-hat"].message
    assert "Effective sample size (bulk)" in checks
    assert "run longer" in checks["R-hat"].suggestion


def test_treedepth_bfmi_and_solver_findings():
    idata = synthetic_lv(chains=2, draws=300)
    stats = idata.sample_stats
    hits = np.zeros((2, 300), dtype=bool)
    hits[1, :60] = True
    stats["reached_max_treedepth"] = (("chain", "draw"), hits)
    energy = stats["energy"].values.copy()
    energy[0] = 140 + np.cumsum(np.random.default_rng(0).normal(0, 0.3, 300))  # slow energy random walk
    stats["energy"] = (("chain", "draw"), energy)
    fails = np.zeros((2, 300), dtype=np.int64)
    fails[0, 5] = 2
    stats["solver_failures"] = (("chain", "draw"), fails)
    checks = _checks(idata)
    assert checks["Tree depth"].severity == "fail" and "chain 1: 60" in checks["Tree depth"].message
    assert "max_tree_depth" in checks["Tree depth"].suggestion
    assert checks["E-BFMI"].severity == "fail" and "chain 0" in checks["E-BFMI"].message
    assert checks["ODE solver failures"].severity == "fail"
    assert (
        "stiff" in checks["ODE solver failures"].suggestion
        and "max_steps" in checks["ODE solver failures"].suggestion
    )
    assert checks["ODE solver failures (warm-up)"].severity == "note"


def test_text_is_escaped(tmp_path):
    idata = synthetic_lv(chains=2, draws=100)
    idata.posterior.attrs["model"] = '<script>alert("x")</script>'
    idata.posterior.attrs["settings"] = json.dumps({"note": "<b>&"})
    text, _ = check_report(write_report(idata, tmp_path / "esc.html"))
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "<b>&" not in text


def test_atomic_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "r.html"
    path.write_text("old")
    idata = synthetic_lv(chains=2, draws=100)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_report(idata, path)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_many_components_are_capped(tmp_path):
    rng = np.random.default_rng(0)
    idata = az.from_dict(
        posterior={"mu": rng.normal(size=(2, 200)), "effects": rng.normal(size=(2, 200, 40))},
        sample_stats={"diverging": np.zeros((2, 200), bool), "energy": rng.normal(size=(2, 200))},
        observed_data={"y": rng.normal(size=40)},
        posterior_predictive={"y": rng.normal(size=(2, 200, 40))},
        log_likelihood={"y": rng.normal(-1, 0.1, size=(2, 200, 40))},
    )
    page, analysis = build_report(idata)
    assert analysis.summary_rows_total == 41
    assert "Showing 12 of 41 scalar components" in page
    assert "posterior predictive check of y" in page  # 40 values, no time: az.plot_ppc density
    parse(page)


def test_report_does_not_touch_pyplot(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    backend = plt.get_backend()
    write_report(synthetic_lv(chains=2, draws=100), tmp_path / "r.html")
    assert plt.get_fignums() == before and plt.get_backend() == backend


def test_no_report_warnings(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_report(synthetic_lv(chains=2, draws=150), tmp_path / "r.html")
    assert not [w for w in caught if issubclass(w.category, ReportWarning)]

# ----------------------------------------------------------------------------- slow: the real LV model


@pytest.mark.slow
def test_lotka_volterra_default_report(tmp_path):
    idata = bb.sample_nuts("lotka_volterra", progress=False)
    t0 = time.perf_counter()
    path = write_report(idata, tmp_path / "lv.html")
    elapsed = time.perf_counter() - t0
    check_report(path)
    assert elapsed < 20 and path.stat().st_size < MAX_BYTES
