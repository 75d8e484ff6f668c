"""Model selection: evidence estimators vs exact conjugate evidence, Bayes factors, posterior
model probabilities, LOO/WAIC/K-fold bookkeeping vs exact leave-out predictive densities, and
`bayesbio compare` on constitutive and ODE models.

Conjugate model (normal–inverse-gamma linear regression): sigma^2 ~ InvGamma(a, b),
beta | sigma^2 ~ N(0, g sigma^2 I), y | beta, sigma^2 ~ N(X beta, sigma^2 I). Its evidence is a
multivariate Student-t density, y ~ t_{2a}(0, (b/a)(I + g X X^T)) (e.g. Bishop 2006, §3.3 with
the conjugate prior; Murphy 2007, "Conjugate Bayesian analysis of the Gaussian distribution").
Exact posterior: sigma^2 | y ~ InvGamma(a + n/2, b + (y'y - m' V^-1 m)/2),
beta | sigma^2, y ~ N(m, sigma^2 V), V = (I/g + X'X)^-1, m = V X'y.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
from scipy.stats import multivariate_t, t as student_t

import bayesbio as bb
from bayesbio import select
from bayesbio.errors import OptionError

A0, B0, G = 3.0, 1.0, 4.0
DATA_DIR = Path(__file__).parent / "data"


def _design(p, n=30, seed=1):
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    y = x @ np.array([1.0, 0.5, -0.3]) + 0.5 * rng.normal(size=n)
    return {"X": x[:, :p], "y": y}


def conjugate_model(data):
    p = data["X"].shape[1]
    s2 = numpyro.sample("sigma2", dist.InverseGamma(A0, B0))
    beta = numpyro.sample("beta", dist.Normal(0.0, jnp.sqrt(G * s2)).expand([p]).to_event(1))
    bb.observe("y", bb.NormalNoise(data["X"] @ beta, jnp.sqrt(s2)), obs=data["y"])


def exact_log_evidence(data):
    x, y = data["X"], data["y"]
    n = len(y)
    return float(multivariate_t(np.zeros(n), (B0 / A0) * (np.eye(n) + G * x @ x.T), df=2 * A0).logpdf(y))


def exact_posterior_idata(data, chains=4, draws=1000, seed=0):
    """Independent draws from the exact posterior as an InferenceData (chain, draw)."""
    import arviz as az

    x, y = data["X"], data["y"]
    n, p = x.shape
    v = np.linalg.inv(np.eye(p) / G + x.T @ x)
    m = v @ x.T @ y
    a_n, b_n = A0 + n / 2, B0 + 0.5 * (y @ y - m @ np.linalg.solve(v, m))
    rng = np.random.default_rng(seed)
    s2 = b_n / rng.gamma(a_n, size=(chains, draws))
    z = rng.standard_normal((chains, draws, p)) @ np.linalg.cholesky(v).T
    beta = m + np.sqrt(s2)[..., None] * z
    return az.from_dict(posterior={"sigma2": s2, "beta": beta})


@pytest.fixture(scope="module")
def evidences():
    """SMC (default settings: 2000 particles x 4 runs, tempering from a t reference fitted to a
    Laplace approximation), SMC along the prior path, and bridge (exact posterior draws) on the
    full (3 coefficients) and reduced (2 coefficients) regressions."""
    out = {}
    for p in (3, 2):
        data = _design(p)
        ld = select._logdensity.log_density(conjugate_model, data)
        out[p] = dict(
            exact=exact_log_evidence(data),
            smc=select.log_evidence_smc(ld, seed=p),
            smc_prior=select.log_evidence_smc(ld, seed=p, reference="prior"),
            bridge=select.log_evidence_bridge(ld, exact_posterior_idata(data, seed=p), seed=p),
        )
    return out


@pytest.mark.parametrize("method", ["smc", "smc_prior", "bridge"])
def test_evidence_matches_conjugate_exact(evidences, method):
    for p, r in evidences.items():
        est = r[method]
        err = est.log_evidence - r["exact"]
        # acceptance: within 0.1 nats of the truth and within the estimator's own error bars
        # (3 se: a 99.7 % interval for a normal MC error)
        assert abs(err) < 0.1, (p, est, r["exact"])
        assert abs(err) < 3 * est.se + 1e-3, (p, est, r["exact"])  # 1e-3: floor for a near-zero bridge se
        assert 0 < est.se < 0.1


@pytest.mark.parametrize("method", ["smc", "smc_prior", "bridge"])
def test_bayes_factor_recovered_within_ten_percent(evidences, method):
    bf = select.bayes_factor(evidences[3][method], evidences[2][method])
    exact = np.exp(evidences[3]["exact"] - evidences[2]["exact"])
    assert abs(bf.bf / exact - 1) < 0.10, (bf, exact)  # acceptance: analytic BF within 10 %


def test_smc_reference_options_are_checked():
    data = _design(2)
    ld = select._logdensity.log_density(conjugate_model, data)
    with pytest.raises(OptionError, match="reference"):
        select.log_evidence_smc(ld, reference="laplace")
    with pytest.raises(OptionError, match="reference_draws"):
        select.log_evidence_smc(ld, reference_draws=np.zeros((100, ld.dim + 1)))
    draws = np.random.default_rng(0).normal(size=(100, ld.dim))
    with pytest.raises(OptionError, match="reference_scale"):
        select.log_evidence_smc(ld, reference_draws=draws, reference_scale=-1.0)
    with pytest.raises(OptionError, match="reference_df"):
        select.log_evidence_smc(ld, reference_draws=draws, reference_df=0)


def test_posterior_model_probabilities():
    probs = select.posterior_model_probabilities({"a": -10.0, "b": -11.0}, {"a": 1, "b": 3})
    expected_a = 1 * np.exp(-10) / (1 * np.exp(-10) + 3 * np.exp(-11))
    assert probs["a"] == pytest.approx(expected_a, rel=1e-12)
    assert sum(probs.values()) == pytest.approx(1.0, rel=1e-12)
    uniform = select.posterior_model_probabilities([0.0, np.log(3.0)])
    np.testing.assert_allclose(uniform, [0.25, 0.75], rtol=1e-12)
    with pytest.raises(OptionError, match="prior_weights"):
        select.posterior_model_probabilities([0.0, 1.0], [1.0, -1.0])
    with pytest.raises(OptionError, match="same models"):
        select.posterior_model_probabilities({"a": 0.0}, {"b": 1.0})


def _masked_points(model_fn, data):
    """Held-out points of a model wrapped by kfold: their log-likelihood is zero for any parameters."""
    from numpyro.infer.util import log_likelihood

    p = data["X"].shape[1]
    vals = [log_likelihood(model_fn, {"sigma2": np.array([s]), "beta": np.full((1, p), b)}, data)["y"][0]
            for s, b in [(0.7, 0.1), (1.3, -0.2)]]
    return np.asarray((vals[0] == 0) & (vals[1] == 0))


def test_kfold_matches_exact_held_out_predictive_densities():
    """K-fold machinery (fold masks, held-out log predictive densities) against the exact
    leave-fold-out predictive density of the conjugate model, log p(y_i | y_-fold) (Student-t)."""
    data = _design(3, n=20)
    x, y = data["X"], data["y"]

    def fit(model_fn, d, seed):  # exact posterior given the kept points only
        held = _masked_points(model_fn, d)
        return exact_posterior_idata({"X": x[~held], "y": y[~held]}, chains=2, draws=4000, seed=seed)

    full = exact_posterior_idata(data, chains=2, draws=4000)
    import arviz as az
    from numpyro.infer.util import log_likelihood

    flat = {k: np.asarray(v.values).reshape((-1,) + v.shape[2:]) for k, v in full.posterior.items()}
    ll = np.asarray(log_likelihood(conjugate_model, flat, data)["y"]).reshape(2, 4000, -1)
    full = az.InferenceData(posterior=full.posterior, log_likelihood=az.from_dict(log_likelihood={"y": ll}).log_likelihood,
                            observed_data=az.from_dict(observed_data={"y": y}).observed_data)
    result = select.kfold(conjugate_model, data, idata=full, folds=5, seed=0, fit=fit)
    elpd_i = np.asarray(result["loo_i"])
    assert elpd_i.shape == (20,) and np.all(np.isfinite(elpd_i))
    # exact: for each point, the Student-t predictive given the other folds
    from bayesbio.select.loo import _fold_labels, pointwise_log_likelihood

    _, points = pointwise_log_likelihood(full)
    labels, _ = _fold_labels(points, 5, None, 0)
    n, p = x.shape
    exact = np.empty(n)
    for k in range(5):
        keep = labels != k
        xk, yk = x[keep], y[keep]
        v = np.linalg.inv(np.eye(p) / G + xk.T @ xk)
        m = v @ xk.T @ yk
        a_n, b_n = A0 + keep.sum() / 2, B0 + 0.5 * (yk @ yk - m @ np.linalg.solve(v, m))
        for i in np.flatnonzero(~keep):
            scale = np.sqrt(b_n / a_n * (1 + x[i] @ v @ x[i]))
            exact[i] = student_t(df=2 * a_n, loc=x[i] @ m, scale=scale).logpdf(y[i])
    # Monte Carlo: log-mean-exp over 8000 exact draws; the pointwise relative error of the
    # mean predictive density is ~ sd(p_i)/mean(p_i)/sqrt(8000) < 0.02 here
    np.testing.assert_allclose(elpd_i, exact, atol=0.03)
    assert float(result["elpd_loo"]) == pytest.approx(exact.sum(), abs=0.1)


def test_loo_waic_over_several_observed_sites_and_missing_points():
    import arviz as az

    rng = np.random.default_rng(0)
    ll_a = rng.normal(-1, 0.1, size=(2, 200, 3))
    ll_b = rng.normal(-2, 0.1, size=(2, 200, 2, 2))
    obs_b = np.array([[1.0, np.nan], [2.0, 3.0]])
    idata = az.from_dict(posterior={"theta": rng.normal(size=(2, 200))}, log_likelihood={"a": ll_a, "b": ll_b},
                         observed_data={"a": np.zeros(3), "b": obs_b})
    ll, points = select.pointwise_log_likelihood(idata)
    assert ll.shape == (2, 200, 6)  # 3 + 4 - 1 missing
    assert points[3] == ("b", (0, 0)) and ("b", (0, 1)) not in points
    result = select.loo(idata)
    ref = az.loo(az.from_dict(posterior={"theta": idata.posterior["theta"].values}, log_likelihood={"y": ll}))
    assert float(result["elpd_loo"]) == pytest.approx(float(ref["elpd_loo"]), rel=1e-12)
    w = select.waic(idata)
    assert int(w["n_data_points"]) == 6


def test_stacking_weights_prefer_the_better_predictive_model():
    import arviz as az

    rng = np.random.default_rng(1)
    good = az.from_dict(posterior={"t": rng.normal(size=(2, 300))}, log_likelihood={"y": rng.normal(-1, 0.05, (2, 300, 40))})
    bad = az.from_dict(posterior={"t": rng.normal(size=(2, 300))}, log_likelihood={"y": rng.normal(-3, 0.05, (2, 300, 40))})
    w = select.stacking_weights({"good": select.loo(good), "bad": select.loo(bad)})
    assert w["good"] > 0.99 and sum(w.values()) == pytest.approx(1.0, abs=1e-6)


def _run_cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "bayesbio.cli", "compare", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=1800)


def test_compare_on_two_ode_models_smoke():
    """Fast tier: compare_models on logistic vs Gompertz tumour-growth ODEs (two lesions of
    Laleh et al. 2022) with tiny settings: NUTS 2 x (100 + 100), PSIS-LOO only (no refits),
    bridge-sampling evidence only (the SMC compilation of an ODE gradient is the slow part; the
    slow-tier CLI test below runs both estimators). Checks the pipeline and the table, not a
    ranking."""
    models = [str(DATA_DIR / "tumour_logistic.py"), str(DATA_DIR / "tumour_gompertz.py")]
    result = select.compare_models(models, chains=2, warmup=100, samples=100, evidence=["bridge"],
                                   k_threshold=np.inf, progress=False)
    table = result.table
    assert list(table.columns) == select.COLUMNS
    assert set(table["model"]) == {"tumour_logistic", "tumour_gompertz"}
    assert np.all(np.isfinite(table[["elpd_loo", "elpd_loo_se", "log_evidence", "log_evidence_se"]].to_numpy()))
    assert table["posterior_prob"].sum() == pytest.approx(1.0, abs=1e-9)
    assert table["stacking_weight"].sum() == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.isfinite(result.details["log_evidence_bridge"]))


@pytest.mark.slow  # two ODE models x (NUTS + 2-fold refits + SMC + bridge) through the CLI
def test_compare_cli_on_two_ode_models(tmp_path):
    """`bayesbio compare` is generic: logistic vs Gompertz tumour-growth ODEs (two lesions of
    Laleh et al. 2022). Small settings: this checks the pipeline and the table, not a ranking."""
    out = tmp_path / "t.csv"
    res = _run_cli([str(DATA_DIR / "tumour_logistic.py"), str(DATA_DIR / "tumour_gompertz.py"), "--out", str(out),
                    "--chains", "2", "--warmup", "200", "--samples", "200", "--particles", "300", "--smc-runs", "2", "--folds", "2",
                    "--no-progress"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(out)
    assert list(table.columns) == select.COLUMNS
    assert set(table["model"]) == {"tumour_logistic", "tumour_gompertz"}
    assert np.all(np.isfinite(table[["elpd_loo", "elpd_loo_se", "log_evidence", "log_evidence_se"]].to_numpy()))
    # the CSV holds 6 significant digits (cli: float_format "%.6g"): each value is off by up to
    # 5e-7, so two values sum to 1 within 1e-6 (plus the 1e-6 of the stacking optimiser)
    assert table["posterior_prob"].sum() == pytest.approx(1.0, abs=1e-6)
    assert table["stacking_weight"].sum() == pytest.approx(1.0, abs=2e-6)
    assert (tmp_path / "t.png").stat().st_size > 1000


def test_compare_cli_rejects_bad_input(tmp_path):
    res = _run_cli(["treloar_neo_hookean", "treloar_ogden3", "--out", str(tmp_path / "t.csv"),
                    "--prior-weights", "1,2,3"], tmp_path)
    assert res.returncode == 2 and "expected 2 weights" in res.stderr
    res = _run_cli(["treloar_neo_hookean", "--out", str(tmp_path / "t.csv"), "--particles", "0"], tmp_path)
    assert res.returncode == 2 and "--particles" in res.stderr


@pytest.mark.slow
def test_compare_cli_treloar_ranks_ogden_above_neo_hookean(tmp_path):
    """Acceptance: defaults, three laws; Ogden (3 terms) beats neo-Hookean by LOO and by evidence."""
    out = tmp_path / "t.csv"
    res = _run_cli(["treloar_neo_hookean", "treloar_mooney_rivlin", "treloar_ogden3", "--out", str(out),
                    "--no-progress"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(out).set_index("model")
    assert table.loc["treloar_ogden3", "elpd_loo"] > table.loc["treloar_neo_hookean", "elpd_loo"]
    assert table.loc["treloar_ogden3", "log_evidence"] > table.loc["treloar_neo_hookean", "log_evidence"]


TRELOAR_LAWS = ["neo_hookean", "mooney_rivlin", "yeoh3", "gent", "demiray", "ogden1", "ogden2", "ogden3"]


@pytest.mark.slow
@pytest.mark.parametrize("law", TRELOAR_LAWS)
def test_treloar_smc_and_bridge_agree(law):
    """Acceptance: on Treloar the two estimators agree within 0.5 nats for every law."""
    name = f"treloar_{law}"
    idata = bb.sample_nuts(name, chains=4, warmup=1000, samples=1000, progress=False)
    ld = select._logdensity.log_density(name)
    smc = select.log_evidence_smc(ld, reference_draws=idata)  # as compare_models does
    bridge = select.log_evidence_bridge(ld, idata)
    print(f"{name}: smc {smc.log_evidence:.3f} ± {smc.se:.3f} (runs {smc.details['runs']}), "
          f"bridge {bridge.log_evidence:.3f} ± {bridge.se:.3f}")
    assert abs(smc.log_evidence - bridge.log_evidence) < 0.5, (smc, bridge)


@pytest.mark.slow
def test_bridge_from_nuts_draws_matches_exact():
    data = _design(3)
    idata = bb.sample_nuts(conjugate_model, data, chains=4, warmup=1000, samples=1000, progress=False)
    est = select.log_evidence_bridge(conjugate_model, idata, data)
    assert abs(est.log_evidence - exact_log_evidence(data)) < 0.1  # acceptance tolerance

