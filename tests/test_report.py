"""HTML diagnostic reports (bayesbio.report).

Fits are small NumPyro models (no ODE) so the tier stays fast: a well-behaved regression, a
deliberately bad centred eight-schools hierarchy (divergences), an SVI and a Laplace fit.
Report-level checks use a synthetic Lotka–Volterra-shaped InferenceData (4 chains x 1000 draws).
The browser test renders reports in headless Chromium and skips cleanly without it.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import os
import re
import shutil
import subprocess
import time
import warnings
from html.parser import HTMLParser
from pathlib import Path

import arviz as az
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from PIL import Image

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

MAX_BYTES = 5 * 1024 * 1024

# ----------------------------------------------------------------------------- models

SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def centred_schools(data):
    """Eight schools, centred: the classic funnel that makes NUTS diverge."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", data["y"].shape[0]):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, data["sigma"]), obs=data["y"])


def regression(data):
    a = numpyro.sample("a", dist.Normal(0.0, 10.0))
    b = numpyro.sample("b", dist.Normal(0.0, 10.0))
    s = numpyro.sample("s", dist.HalfNormal(2.0))
    numpyro.sample("y", dist.Normal(a + b * data["x"], s), obs=data["y"])


def _regression_data():
    x = np.linspace(-1.0, 1.0, 20)  # centred: a and b nearly uncorrelated, so NUTS mixes well
    noise = np.random.default_rng(1).permutation(np.linspace(-1.5, 1.5, 20))  # no outliers
    return {"x": x, "y": 1.0 + 2.0 * x + 0.3 * noise}


@pytest.fixture(scope="module")
def good_run():
    return bb.sample_nuts(
        regression, data=_regression_data(), chains=4, warmup=300, samples=500, progress=False
    )


@pytest.fixture(scope="module")
def bad_run():
    return bb.sample_nuts(
        centred_schools,
        data={"y": SCHOOLS_Y, "sigma": SCHOOLS_SIGMA},
        chains=4,
        warmup=100,
        samples=250,
        target_accept=0.6,
        progress=False,
    )


@pytest.fixture(scope="module")
def svi_run():
    return bb.fit_svi(regression, data=_regression_data(), steps=500, samples=500, starts=2, progress=False)


@pytest.fixture(scope="module")
def laplace_run():
    return bb.fit_laplace(regression, data=_regression_data(), samples=500, starts=2)


# ----------------------------------------------------------------------------- synthetic LV-shaped result


def synthetic_lv(chains=4, draws=1000, seed=0, *, divergent=0):
    """An InferenceData shaped like the Lotka–Volterra NUTS result (same groups, dims, attrs)."""
    rng = np.random.default_rng(seed)
    shape = (chains, draws)
    t = np.arange(1901.0, 1921.0)
    theta = np.stack(
        [rng.normal(m, s, shape) for m, s in ((0.55, 0.06), (0.028, 0.004), (0.8, 0.09), (0.024, 0.004))],
        axis=-1,
    )
    z_init = np.stack([rng.normal(34, 3, shape), rng.normal(6, 0.5, shape)], axis=-1)
    sigma = np.abs(rng.normal(0.25, 0.045, shape + (2,)))
    base = np.stack(
        [40 + 30 * np.sin(2 * np.pi * (t - 1901) / 10), 20 + 15 * np.sin(2 * np.pi * (t - 1903) / 10)],
        axis=-1,
    )
    y_obs = base * np.exp(rng.normal(0, 0.25, base.shape))
    y_init_obs = np.array([30.0, 4.0])
    mu = np.log(base)[None, None] + rng.normal(0, 0.05, shape + base.shape)
    y_pp = np.exp(mu + rng.normal(0, 0.25, mu.shape))
    ll_y = -0.5 * ((np.log(y_obs) - mu) / 0.25) ** 2 - np.log(0.25 * np.sqrt(2 * np.pi) * y_obs)
    mu0 = np.log(z_init)
    y_init_pp = np.exp(mu0 + rng.normal(0, 0.25, mu0.shape))
    ll_y0 = -0.5 * ((np.log(y_init_obs) - mu0) / 0.25) ** 2 - np.log(0.25 * np.sqrt(2 * np.pi) * y_init_obs)
    diverging = np.zeros(shape, dtype=bool)
    if divergent:
        diverging.reshape(-1)[rng.choice(chains * draws, divergent, replace=False)] = True
    energy = 140 + rng.normal(0, 3, shape)
    tree_depth = rng.integers(3, 7, shape)
    idata = az.from_dict(
        posterior={"theta": theta, "z_init": z_init, "sigma": sigma},
        sample_stats={
            "lp": -energy + 5,
            "energy": energy,
            "diverging": diverging,
            "n_steps": 2**tree_depth - 1,
            "tree_depth": tree_depth,
            "reached_max_treedepth": tree_depth >= 10,
            "acceptance_rate": rng.uniform(0.7, 1.0, shape),
            "step_size": np.full(shape, 0.1),
            "solver_failures": np.zeros(shape, dtype=np.int64),
        },
        log_likelihood={"y_init": ll_y0, "y": ll_y},
        posterior_predictive={"y_init": y_init_pp, "y": y_pp},
        observed_data={"y_init": y_init_obs, "y": y_obs},
        coords={"parameter": ["alpha", "beta", "gamma", "delta"], "species": ["hare", "lynx"], "time": t},
        dims={
            "theta": ["parameter"],
            "z_init": ["species"],
            "sigma": ["species"],
            "y_init": ["species"],
            "y": ["time", "species"],
        },
    )
    idata.sample_stats["warmup_solver_failures"] = (("chain",), np.array([6, 10, 41, 183][:chains]))
    idata.posterior.attrs.update(
        {
            "model": "lotka_volterra",
            "model_source": "bayesbio.models.lotka_volterra",
            "method": "nuts",
            "seed": 0,
            "data_fingerprint": "859464d6abddf66e",
            "settings": json.dumps(
                {
                    "chains": chains,
                    "warmup": 1000,
                    "samples": draws,
                    "target_accept": 0.8,
                    "max_tree_depth": 10,
                }
            ),
            "version_bayesbio": bb.__version__,
            "version_arviz": az.__version__,
            "compile_seconds": 40.6,
            "warmup_seconds": 128.9,
            "sampling_seconds": 52.6,
        }
    )
    return idata


# ----------------------------------------------------------------------------- HTML checks

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class StrictHTML(HTMLParser):
    """Fails on unclosed or mismatched non-void tags; collects <img> sources and section ids."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, tuple[int, int]]] = []
        self.images: list[dict] = []
        self.sections: list[str] = []
        self.scripts = 0
        self.doctype = False

    def handle_decl(self, decl):
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id", ""))
        if tag == "script":
            self.scripts += 1
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        if tag not in VOID:
            raise AssertionError(f"self-closing non-void <{tag}/> at {self.getpos()}")
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        if tag in VOID:
            raise AssertionError(f"end tag for void element </{tag}> at {self.getpos()}")
        if not self.stack:
            raise AssertionError(f"</{tag}> at {self.getpos()} closes nothing")
        open_tag, pos = self.stack.pop()
        if open_tag != tag:
            raise AssertionError(f"</{tag}> at {self.getpos()} closes <{open_tag}> opened at {pos}")

    def close(self):
        super().close()
        if self.stack:
            raise AssertionError(f"unclosed tags: {self.stack}")


def parse(text: str) -> StrictHTML:
    parser = StrictHTML()
    parser.feed(text)
    parser.close()
    assert parser.doctype, "missing <!DOCTYPE html>"
    return parser


def check_images(parser: StrictHTML) -> list[Image.Image]:
    out = []
    for img in parser.images:
        src = img.get("src", "")
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert img.get("alt"), "every image needs alt text"
        try:
            raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        except binascii.Error as exc:  # pragma: no cover - failure path
            raise AssertionError(f"invalid base64 in {img.get('alt')}") from exc
        assert raw.startswith(b"\x89PNG\r\n\x1a\n")
        Image.open(io.BytesIO(raw)).verify()  # raises on a corrupt PNG
        im = Image.open(io.BytesIO(raw))
        im.load()
        assert im.format == "PNG" and min(im.size) > 50
        out.append(im)
    return out


def section(text: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', text, flags=re.DOTALL)
    assert m, f"no section {sid}"
    return m.group(1)


def check_report(path: Path) -> tuple[str, StrictHTML]:
    assert path.is_file()
    assert path.stat().st_size < MAX_BYTES
    text = path.read_text(encoding="utf-8")
    parser = parse(text)
    assert parser.scripts == 0, "the report must not need JavaScript"
    assert not re.search(r'(src|href)="(https?:|//)', text), "the report must not load anything remote"
    check_images(parser)
    assert parser.sections.index("verdict") < parser.sections.index("summary")
    assert parser.sections[0] == "verdict"
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    return text, parser


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


# ----------------------------------------------------------------------------- browser

_CHROMIUM: list = []


def _find_chromium() -> str | None:
    """Headless Chromium: on PATH, else one attempt at `apt-get install chromium` (root only)."""
    if _CHROMIUM:
        return _CHROMIUM[0]
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    found = next((shutil.which(n) for n in names if shutil.which(n)), None)
    if (
        found is None
        and os.environ.get("BAYESBIO_NO_BROWSER_INSTALL") != "1"
        and shutil.which("apt-get")
        and hasattr(os, "geteuid")
        and os.geteuid() == 0
    ):
        try:
            subprocess.run(
                ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            pass
        found = next((shutil.which(n) for n in names if shutil.which(n)), None)
    _CHROMIUM.append(found)
    return found


_PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length;
  var d = document.createElement("div");
  d.id = "img-check"; d.setAttribute("data-total", imgs.length); d.setAttribute("data-broken", broken);
  document.body.appendChild(d);
  console.log("bayesbio-probe-console");
});
</script>"""


def _chromium_args(binary, profile):
    return [
        binary,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
    ]


@pytest.mark.parametrize("which", ["bad", "lv"])
def test_report_renders_in_headless_chromium(which, request, tmp_path_factory):
    binary = _find_chromium()
    if binary is None:
        pytest.skip("headless Chromium not available (install the Debian package 'chromium')")
    out = tmp_path_factory.mktemp(f"browser_{which}")
    idata = request.getfixturevalue("bad_run") if which == "bad" else synthetic_lv()
    report = write_report(idata, out / "report.html")
    n_images = len(parse(report.read_text(encoding="utf-8")).images)

    # 1. screenshot of the report as it is
    shot = out / "screenshot.png"
    proc = subprocess.run(
        _chromium_args(binary, out / "profile1")
        + [f"--screenshot={shot}", "--window-size=1280,4000", report.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if not shot.is_file():
        pytest.skip(f"Chromium could not take a screenshot here (rc={proc.returncode}): {proc.stderr[-500:]}")
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    with Image.open(shot) as im:
        assert im.size == (1280, 4000)
        rgb = np.asarray(im.convert("RGB"), dtype=int)
    non_white = np.mean(np.any(rgb < 235, axis=-1))
    bluish = np.mean((rgb[..., 2] > rgb[..., 0] + 40) & (rgb[..., 2] > 120))  # plot colour C0 is blue
    assert non_white > 0.03 and bluish > 0.002, (non_white, bluish)
    print(f"\nscreenshot: {shot}")

    # 2. a copy with a load-time probe (the report itself has no JavaScript): every image decoded,
    #    and the console capture works (the probe's own message must be seen, nothing else)
    probe = out / "probe.html"
    probe.write_text(
        report.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8"
    )
    proc = subprocess.run(
        _chromium_args(binary, out / "profile2") + ["--dump-dom", probe.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    m = re.search(r'<div id="img-check" data-total="(\d+)" data-broken="(\d+)">', proc.stdout)
    assert m, proc.stdout[-500:]
    assert int(m.group(1)) == n_images > 0 and int(m.group(2)) == 0
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert any("bayesbio-probe-console" in ln for ln in console), "console capture did not work"
    assert all("bayesbio-probe-console" in ln for ln in console), console


# ----------------------------------------------------------------------------- slow: the real LV model


@pytest.mark.slow
def test_lotka_volterra_default_report(tmp_path):
    idata = bb.sample_nuts("lotka_volterra", progress=False)
    t0 = time.perf_counter()
    path = write_report(idata, tmp_path / "lv.html")
    elapsed = time.perf_counter() - t0
    check_report(path)
    assert elapsed < 20 and path.stat().st_size < MAX_BYTES
