"""End-to-end inference on the bundled Lotka–Volterra model against the posteriordb reference.

The reference (``hudson_lynx_hare-lotka_volterra``) is a summary of 10,000 draws from Stan;
its own Monte-Carlo error is negligible next to the tolerances below (MCSE of a mean
≈ 0.01 sd). Every tolerance is stated in units of the reference posterior sd.

The fast tier reuses one run per method through module-scoped fixtures (each LV run compiles
for ~20 s on a 2-core CPU); the full-length checks are marked ``slow``.
"""

from __future__ import annotations

import arviz as az
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from conftest import format_rows, posterior_vs_reference

import bayesbio as bb

PARAMETER_COORDS = ["alpha", "beta", "gamma", "delta"]
SPECIES = ["hare", "lynx"]


# a one-parameter ODE model (cheap to compile) for the determinism checks
def decay_model(data):
    k = numpyro.sample("k", dist.LogNormal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.LogNormal(-2.0, 0.5))
    y = bb.solve(lambda t, y, k: -k * y, jnp.array([10.0]), data["ts"], k)
    bb.observe("y", bb.LogNormalNoise(y[:, 0], sigma), obs=data["y"])


DECAY_DATA = {
    "ts": np.array([0.5, 1.0, 2.0, 3.0, 5.0]),
    "y": 10.0 * np.exp(-0.4 * np.array([0.5, 1.0, 2.0, 3.0, 5.0])) * np.array([1.05, 0.97, 1.02, 0.96, 1.04]),
}


# ------------------------------------------------------------------------------------------
# NUTS, fast tier


@pytest.fixture(scope="module")
def nuts_fast():
    return bb.sample_nuts("lotka_volterra", chains=2, warmup=200, samples=200, seed=1)


def test_nuts_inference_data_structure(nuts_fast):
    idata = nuts_fast
    for group in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data"):
        assert hasattr(idata, group), group
    stats = idata.sample_stats
    for name in ("diverging", "solver_failures", "tree_depth", "step_size"):
        assert name in stats, name
        assert stats[name].shape == (2, 200), (name, stats[name].shape)
    assert stats["diverging"].dtype == bool
    assert np.all(stats["step_size"].values > 0)
    assert np.all(stats["tree_depth"].values >= 1)
    attrs = idata.posterior.attrs
    for key in ("compile_seconds", "warmup_seconds", "sampling_seconds", "seed", "data_fingerprint", "version_jax"):
        assert key in attrs, key
    assert attrs["seed"] == 1
    assert attrs["compile_seconds"] > 0 and attrs["warmup_seconds"] > 0 and attrs["sampling_seconds"] > 0
    assert isinstance(attrs["data_fingerprint"], str) and len(attrs["data_fingerprint"]) == 16


def test_nuts_dims_and_coords(nuts_fast):
    idata = nuts_fast
    theta = idata.posterior["theta"]
    assert theta.dims == ("chain", "draw", "parameter")
    assert list(theta["parameter"].values) == PARAMETER_COORDS
    for var in ("z_init", "sigma"):
        assert idata.posterior[var].dims == ("chain", "draw", "species")
        assert list(idata.posterior[var]["species"].values) == SPECIES
    years = 1900 + np.arange(1, 21)
    for group, extra in (("posterior_predictive", ("chain", "draw")), ("log_likelihood", ("chain", "draw")),
                         ("observed_data", ())):
        y = getattr(idata, group)["y"]
        assert y.dims == extra + ("time", "species"), (group, y.dims)
        np.testing.assert_array_equal(y["time"].values, years)
        assert list(y["species"].values) == SPECIES
        assert "y_init" in getattr(idata, group)
    data = bb.load_model("lotka_volterra").load_data()
    np.testing.assert_array_equal(idata.observed_data["y"].values, data["y"])
    assert np.all(np.isfinite(idata.log_likelihood["y"].values))


def test_nuts_fast_matches_reference(nuts_fast, reference_summary):
    # 2 chains x 200 draws give a bulk ESS of ~130-400 per parameter (measured), i.e. a
    # Monte-Carlo standard error of the mean of sd/sqrt(ESS) ≈ 0.05-0.09 sd; 200 warm-up iterations also
    # leave some adaptation bias. 0.5 sd is ~5 MCSE: loose enough to be stable across seeds and
    # platforms, tight enough to catch a wrong mode (the poor local mode of this posterior sits
    # several sd away in theta and sigma). Measured on the development machine: max 0.04 sd
    # (0.16 sd with an earlier solver).
    rows = posterior_vs_reference(nuts_fast, reference_summary)
    assert len(rows) == 8
    report = format_rows(rows)
    assert all(z < 0.5 for *_, z, _ in rows), report
    # posterior sds within 30% (relative MCSE of an sd with ESS ~130 is ~1/sqrt(2*130) ≈ 6%;
    # measured ratios 0.92-1.03)
    assert all(0.7 < r < 1.3 for *_, r in rows), report
    # R-hat: with ESS ~130 the rank-normalised R-hat fluctuates by ~0.01-0.02 (measured max 1.008)
    rhat = az.rhat(nuts_fast, var_names=["theta", "z_init", "sigma"])
    assert max(float(rhat[v].max()) for v in rhat.data_vars) < 1.05
    # divergences are rare here (a smooth posterior); allow a handful after the short warm-up (measured 0)
    assert int(nuts_fast.sample_stats["diverging"].sum()) <= 4


# ------------------------------------------------------------------------------------------
# NUTS, slow tier: the full default run


@pytest.mark.slow
def test_nuts_default_settings_match_reference(reference_summary):
    idata = bb.sample_nuts("lotka_volterra", seed=0)  # 4 chains x 1000 warm-up x 1000 draws
    assert idata.posterior["theta"].shape == (4, 1000, 4)
    rows = posterior_vs_reference(idata, reference_summary)
    report = format_rows(rows)
    summary = az.summary(idata, var_names=["theta", "z_init", "sigma"])
    print(report)
    print(summary.to_string())
    # Means: 4000 draws give a bulk ESS of ~850-1000 for theta and ~2000-2700 for the others
    # (measured), so the MCSE of a mean is <= sd/sqrt(850) = 0.034 sd (the reference's own is
    # 0.01 sd) and 0.1 sd is ~3 combined standard errors. Measured: max 0.066 sd.
    assert all(z < 0.1 for *_, z, _ in rows), report
    # SDs: the relative MCSE of an sd is ~1/sqrt(2 ESS) ≈ 2.4% at ESS 850 (a little more for the
    # skewed sigmas), so 10% is ~4 standard errors. Measured: sd ratios 1.00-1.06.
    assert all(0.9 < r < 1.1 for *_, r in rows), report
    # Convergence as recommended by Vehtari et al. (2021): R-hat < 1.01, bulk ESS > 400.
    assert float(summary["r_hat"].max()) < 1.01, summary.to_string()
    assert float(summary["ess_bulk"].min()) > 400, summary.to_string()
    assert int(idata.sample_stats["diverging"].sum()) == 0
    assert int(idata.sample_stats["solver_failures"].sum()) == 0


# ------------------------------------------------------------------------------------------
# Laplace


@pytest.fixture(scope="module")
def laplace_fit():
    # seed=1: see the slow test below for seed=2, whose four starts all reach the poor mode
    return bb.fit_laplace("lotka_volterra", samples=1000, starts=4, seed=1)


def test_laplace_matches_reference(laplace_fit, reference_summary):
    idata = laplace_fit
    assert idata.posterior["theta"].shape == (1, 1000, 4)
    assert "pareto_k" in idata.posterior.attrs
    k_hat = float(idata.posterior.attrs["pareto_k"])
    assert np.isfinite(k_hat)
    # The posterior of theta is close to Gaussian on the log scale, so the Laplace
    # approximation's means are close to NUTS/Stan (measured <= 0.05 sd for theta, 0.14 sd for
    # z_init); the MCSE of the
    # mean of 1000 independent draws is 0.03 sd. 0.3 sd catches a wrong mode or a wrong
    # covariance while allowing for the Gaussian's skewness bias.
    rows = posterior_vs_reference(idata, reference_summary, names=("theta", "z_init"))
    assert all(z < 0.3 for *_, z, _ in rows), format_rows(rows)
    # sds within 25% (measured 0.84-0.90: the Gaussian at the mode is a little narrow). The sigmas
    # are not checked: their posteriors are skewed, and the mode-centred Gaussian puts their
    # means ~0.6 sd low (measured), as expected of a Laplace approximation.
    assert all(0.75 < r < 1.25 for *_, r in rows), format_rows(rows)
    assert "log_importance_weight" in idata.sample_stats


def test_laplace_same_seed_gives_identical_draws():
    # a cheap model keeps this in the fast tier (each LV Laplace fit takes over a minute)
    a = bb.fit_laplace(decay_model, DECAY_DATA, samples=200, starts=2, seed=5)
    b = bb.fit_laplace(decay_model, DECAY_DATA, samples=200, starts=2, seed=5)
    for var in ("k", "sigma"):
        np.testing.assert_array_equal(a.posterior[var].values, b.posterior[var].values)
    np.testing.assert_array_equal(a.posterior_predictive["y"].values, b.posterior_predictive["y"].values)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="package issue: with seed=2 all four L-BFGS starts of fit_laplace converge to the "
    "poor local mode of the LV posterior (potential 172.5 vs 132.6), theta[alpha] ≈ 1.03 "
    "instead of 0.55, and pareto_k (≈0.52 < 0.7) does not flag it",
)
def test_laplace_finds_the_global_mode_with_another_seed(reference_summary):
    idata = bb.fit_laplace("lotka_volterra", samples=1000, starts=4, seed=2)
    rows = posterior_vs_reference(idata, reference_summary, names=("theta",))
    assert all(z < 0.3 for *_, z, _ in rows), format_rows(rows)


# ------------------------------------------------------------------------------------------
# SVI


@pytest.fixture(scope="module")
def svi_fit():
    # seed=1: the guide starts at the best of `starts` L-BFGS mode searches; with starts=2 and
    # seed=0 both searches end in the poor local mode (potential 172.5 vs 132.6) and the fit is
    # ~8 sd off. seed=1 reaches the main mode (as do ~half of all single starts).
    return bb.fit_svi("lotka_volterra", guide="mvn", steps=3000, samples=500, starts=2, seed=1)


def test_svi_mvn_runs_and_matches_reference_means(svi_fit, reference_summary):
    idata = svi_fit
    assert hasattr(idata, "svi_trace")
    loss = idata.svi_trace["loss"].values
    assert loss.shape == (3000,)
    assert np.all(np.isfinite(loss[-100:]))
    assert np.mean(loss[-100:]) < np.mean(loss[:100])  # the ELBO improved
    assert "converged" in idata.posterior.attrs
    assert idata.posterior["theta"].shape == (1, 500, 4)
    # The guide starts at the best mode found, so its means land close to the posterior's:
    # measured <= 0.22 sd on all 8 parameters; the MCSE of a 500-draw mean is 0.045 sd. 0.5 sd
    # allows for the mode/mean offset of the skewed sigma posteriors. (Its sds are another
    # matter: see the xfail below.)
    rows = posterior_vs_reference(idata, reference_summary)
    assert all(z < 0.5 for *_, z, _ in rows), format_rows(rows)


@pytest.mark.xfail(
    strict=True,
    reason="package issue: after 3000 steps the mvn guide's theta sds are ~0.5x the reference "
    "(0.48-0.54; 0.86-0.93 after 20000 steps) while posterior.attrs['converged'] is 1: the ELBO "
    "window test declares convergence while the scale parameters are still moving",
)
def test_svi_converged_flag_implies_usable_spread(svi_fit, reference_summary):
    assert int(svi_fit.posterior.attrs["converged"]) == 1
    rows = posterior_vs_reference(svi_fit, reference_summary, names=("theta",))
    assert all(0.7 < r < 1.3 for *_, r in rows), format_rows(rows)


# ------------------------------------------------------------------------------------------
# reproducibility


def test_nuts_same_seed_gives_bit_identical_draws():
    kwargs = dict(chains=2, warmup=50, samples=50)
    a = bb.sample_nuts(decay_model, DECAY_DATA, seed=11, **kwargs)
    b = bb.sample_nuts(decay_model, DECAY_DATA, seed=11, **kwargs)
    for var in ("k", "sigma"):
        np.testing.assert_array_equal(a.posterior[var].values, b.posterior[var].values)
    for group in ("sample_stats", "posterior_predictive", "log_likelihood"):
        ga, gb = getattr(a, group), getattr(b, group)
        for var in ga.data_vars:
            np.testing.assert_array_equal(ga[var].values, gb[var].values, err_msg=f"{group}.{var}")
    assert a.posterior.attrs["data_fingerprint"] == b.posterior.attrs["data_fingerprint"]


@pytest.mark.slow
def test_nuts_lotka_volterra_same_seed_is_bit_identical():
    # the bundled model exercises forward sensitivities behind a custom VJP and the solver
    # failure callbacks, all of which must be deterministic too
    a = bb.sample_nuts("lotka_volterra", chains=2, warmup=30, samples=30, seed=4)
    b = bb.sample_nuts("lotka_volterra", chains=2, warmup=30, samples=30, seed=4)
    for var in ("theta", "z_init", "sigma"):
        np.testing.assert_array_equal(a.posterior[var].values, b.posterior[var].values)


def bounded_model(data):
    # a Uniform with array bounds: its transform holds arrays, which must not leak from the
    # jitted initialisation into the postprocessing of the draws (regression test)
    # (no deterministic site: NumPyro then postprocesses with the stored transforms, not a replay)
    theta = numpyro.sample("theta", dist.Uniform(jnp.zeros(2), jnp.array([1.0, 2.0])).to_event(1))
    bb.observe("y", bb.NormalNoise(jnp.broadcast_to(theta, (3, 2)), 0.5), obs=data["y"])


def test_nuts_postprocesses_models_with_array_bounded_transforms():
    data = {"y": np.array([[0.2, 1.5], [0.4, 1.2], [0.3, 1.8]])}
    idata = bb.sample_nuts(bounded_model, data, chains=1, warmup=20, samples=10, seed=0, progress=False)
    theta = idata.posterior["theta"].values
    assert theta.shape == (1, 10, 2) and np.all((theta > 0) & (theta < np.array([1.0, 2.0])))
