"""Pharmacometric outputs: η-shrinkage, VPC, simulation of patients and regimens, plots.

Numbers are checked against exact answers: shrinkage of constructed random effects, VPC
calibration by exchangeability, simulated regimens against the closed-form one-compartment
solution, individual predictions against direct batched solves."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from bayesbio.errors import DataError, ModelError, OptionError
from bayesbio.population import (
    IndividualFits,
    bolus,
    dense_events,
    eta_shrinkage,
    individual_fits,
    infusion,
    patient,
    plot_individual_fits,
    plot_regimen,
    plot_vpc,
    repeat,
    shrinkage,
    simulate,
    simulate_regimen,
    solve_population_with_status,
    vpc,
    vpc_from_model,
    with_events,
)


@pytest.fixture(scope="module")
def theo():
    from bayesbio.models import theophylline

    return theophylline


def truth_draws(th, n_draws, n_patients=12, *, omega_scale=1.0, seed=0):
    """Posterior-shaped draws that all equal the simulation truth (random effects drawn)."""
    draws = {k: np.full(n_draws, v * (omega_scale if k.startswith("omega") else 1.0)) for k, v in th.TRUTH.items()}
    draws["eta_z"] = np.random.default_rng(seed).normal(size=(n_draws, n_patients, 3))
    return draws


# ----------------------------------------------------------------------------- shrinkage


def test_eta_shrinkage_exact_values():
    rng = np.random.default_rng(1)
    omega = np.array([0.7, 0.3])
    z = rng.normal(size=(40, 2))
    z = (z - z.mean(0)) / z.std(0, ddof=1)  # sample mean 0, sample SD exactly 1
    eta = z * omega
    # posterior means equal to random effects whose sample SD is omega: no shrinkage (exact up to rounding)
    np.testing.assert_allclose(eta_shrinkage(eta, omega), [0.0, 0.0], atol=1e-12)
    # estimates pulled halfway to zero: shrinkage 0.5; all at zero: 1
    np.testing.assert_allclose(eta_shrinkage(0.5 * eta, omega), [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(eta_shrinkage(np.zeros((40, 2)), omega), [1.0, 1.0])
    with pytest.raises(DataError, match="'omega' must have shape"):
        eta_shrinkage(eta, [0.1])
    with pytest.raises(DataError, match="positive"):
        eta_shrinkage(eta, [0.1, 0.0])


def test_shrinkage_of_an_inference_data():
    rng = np.random.default_rng(2)
    omega = np.array([0.6, 0.25, 0.1])
    z = rng.normal(size=(12, 3))
    z = (z - z.mean(0)) / z.std(0, ddof=1)
    centre = 0.8 * z * omega  # the posterior means: 20% shrinkage by construction
    # two chains x 50 draws scattered around the means with draws that cancel exactly
    noise = rng.normal(size=(1, 50, 12, 3))
    draws = centre + np.concatenate([noise, -noise], axis=0)
    idata = az.from_dict(
        posterior={"eta": draws, "omega_ka": np.full((2, 50), omega[0]), "omega_cl": np.full((2, 50), omega[1]),
                   "omega_v": np.full((2, 50), omega[2])},
        coords={"patient": np.arange(12), "random_effect": ["ka", "cl", "v"]},
        dims={"eta": ["patient", "random_effect"]},
    )
    s = shrinkage(idata)
    assert list(s.index) == ["ka", "cl", "v"]
    np.testing.assert_allclose(s.values, 0.2, atol=1e-12)
    np.testing.assert_allclose(shrinkage(idata, omega={"ka": 1.2, "cl": 0.5, "v": 0.2}).values, 0.6, atol=1e-12)
    with pytest.raises(DataError, match="no variable 'theta'"):
        shrinkage(idata, random_effects="theta")


# ----------------------------------------------------------------------------- VPC (pure)


def _toy_replicates(n_rep, rng, k_scale=1.0):
    """Replicate data sets of a log-normal decay population: 30 patients x 8 times."""
    t = np.tile(np.array([0.5, 1, 2, 3, 4, 6, 8, 12.0]), (30, 1))
    k = 0.2 * k_scale * np.exp(0.3 * rng.normal(size=(n_rep, 30, 1)))
    y = 10 * np.exp(-k * t) * np.exp(0.1 * rng.normal(size=(n_rep, 30, 8)))
    return t, y


def test_vpc_is_calibrated_for_data_from_the_model_and_detects_misspecification():
    rng = np.random.default_rng(3)
    t, sims = _toy_replicates(201, rng)
    # exchangeability: a data set from the model itself is one more replicate, so each observed
    # percentile falls inside the central 90% of the others with probability ~0.9 (0.9 * 200/201
    # + discreteness); averaged over 20 held-out replicates x 24 statistics the coverage has an
    # SD of about sqrt(0.09 / 480) ~ 0.014 (less independence than that: allow 0.06, > 4 SD)
    coverages = []
    for r in range(20):
        others = np.delete(sims, r, axis=0)
        coverages.append(vpc(t, sims[r], others).coverage)
    assert abs(np.mean(coverages) - 0.9) < 0.06, np.mean(coverages)
    # observations from a population eliminating twice as fast: most late percentiles fall outside
    _, wrong = _toy_replicates(1, rng, k_scale=2.0)
    result = vpc(t, wrong[0], sims[1:])
    assert result.coverage < 0.5, result.coverage
    assert result.time.tolist() == [0.5, 1, 2, 3, 4, 6, 8, 12]  # one bin per distinct time
    frame = result.to_frame()
    assert len(frame) == 8 * 3 and set(frame["percentile"]) == {5.0, 50.0, 95.0}


def test_vpc_binning_masks_and_errors():
    rng = np.random.default_rng(4)
    t = rng.uniform(0, 24, size=(20, 10))
    y = np.where(rng.uniform(size=(20, 10)) < 0.2, np.nan, rng.normal(size=(20, 10)))
    sims = rng.normal(size=(50, 20, 10))
    result = vpc(t, y, sims, bins=4)
    assert result.edges.size == 5 and int(result.count.sum()) == int(np.isfinite(y).sum())
    # the observed percentiles ignore the missing records exactly
    b0 = (t >= result.edges[0]) & (t < result.edges[1]) & np.isfinite(y)
    np.testing.assert_allclose(result.observed[0], np.percentile(y[b0], [5, 50, 95]))
    with pytest.raises(DataError, match="replicates"):
        vpc(t, y, sims[:1])
    with pytest.raises(OptionError, match="interval"):
        vpc(t, y, sims, interval=1.5)
    with pytest.raises(OptionError, match="increasing edges"):
        vpc(t, y, sims, bins=[3.0, 1.0])


# ----------------------------------------------------------------------------- simulation


def central_closed_form(t, ka, cl, v, oral, infusions):
    """Central amount of the linear one-compartment model: oral doses (t_d, D) into the depot
    and infusions (t_s, rate, duration) into the central compartment, by superposition."""
    k = cl / v
    out = np.zeros_like(t)
    for td, d in oral:
        tau = t - td
        out += np.where(tau >= 0, d * ka / (ka - k) * (np.exp(-k * tau) - np.exp(-ka * tau)), 0.0)
    for ts, rate, dur in infusions:
        tau = t - ts
        during = rate / k * (1 - np.exp(-k * tau))
        after = rate / k * (1 - np.exp(-k * dur)) * np.exp(-k * (tau - dur))
        out += np.where(tau < 0, 0.0, np.where(tau <= dur, during, after))
    return out


def test_regimen_with_omega_to_zero_equals_the_deterministic_solution(theo):
    # a new regimen: 3 oral doses every 12 h plus a 2-h infusion into the central compartment
    times = np.linspace(0.25, 48.0, 40)
    doses = repeat(bolus(0.0, 300.0, 0), every=12.0, count=3) + [infusion(30.0, 100.0, 1, duration=2.0)]
    new = [patient(doses, times, obs_compartment=1), patient([bolus(0.0, 500.0, 0)], times, obs_compartment=1)]
    draws = truth_draws(theo, 8, omega_scale=1e-12)
    frame = simulate_regimen("theophylline", draws, new, site="conc", quantiles=(0.05, 0.5, 0.95))
    assert frame.attrs["failed_draws"] == 0 and frame.attrs["n_draws"] == 8
    tr = theo.TRUTH
    exact = [
        central_closed_form(times, tr["ka_pop"], tr["cl_pop"], tr["v_pop"], [(0, 300), (12, 300), (24, 300)],
                            [(30.0, 50.0, 2.0)]) / tr["v_pop"],
        central_closed_form(times, tr["ka_pop"], tr["cl_pop"], tr["v_pop"], [(0, 500)], []) / tr["v_pop"],
    ]
    for i in range(2):
        rows = frame[frame["patient"] == i]
        np.testing.assert_allclose(rows["time"], times)
        # the model solves at rtol 1e-6, atol 1e-6 (amounts in mg): a few 1e-6 relative
        for col in ("q05", "q50", "q95", "mean"):
            np.testing.assert_allclose(rows[col], exact[i], rtol=2e-5, atol=1e-6)


def test_simulate_modes_against_direct_solves(theo):
    data = theo.load_data()
    draws = truth_draws(theo, 6)
    ind = simulate("theophylline", draws, mode="individual", seed=1)
    typ = simulate("theophylline", draws, mode="typical", seed=1)
    assert ind.prediction["conc"].shape == (6, 12, 11) and not ind.failed.any()
    # individual predictions = batched solve with each draw's per-patient parameters
    tr = theo.TRUTH
    omega = np.array([tr["omega_ka"], tr["omega_cl"], tr["omega_v"]])
    for s in (0, 5):
        eta = draws["eta_z"][s] * omega
        p = {"ka": tr["ka_pop"] * np.exp(eta[:, 0]), "cl": tr["cl_pop"] * np.exp(eta[:, 1]),
             "v": tr["v_pop"] * np.exp(eta[:, 2])}
        sol = solve_population_with_status(theo.rhs, p, data["events"], solver="analytic")
        conc = np.asarray(sol.ys[..., 1]) / p["v"][:, None]
        np.testing.assert_allclose(ind.prediction["conc"][s], conc, rtol=1e-10)  # same solver, same arithmetic
    # typical predictions do not depend on the random effects: identical across draws
    np.testing.assert_allclose(typ.prediction["conc"][0], typ.prediction["conc"][5], rtol=1e-12)
    # simulated observations = prediction + N(0, sigma) noise: standardised residuals ~ N(0, 1)
    resid = (ind.observation["conc"] - ind.prediction["conc"]) / tr["sigma"]
    assert abs(resid.mean()) < 0.25 and abs(resid.std() - 1) < 0.15  # 792 values: SEs 0.036 and 0.025
    # new patients: a design with another number of patients is fine; 'individual' is not
    big = with_events(data, dense_events(data["events"], num_times=5).patient(0))
    new = simulate("theophylline", draws, big, mode="new")
    assert new.prediction["conc"].shape == (6, 1, 5)
    with pytest.raises(ModelError, match="mode='new'"):
        simulate("theophylline", draws, big, mode="individual")
    with pytest.raises(OptionError, match="'mode'"):
        simulate("theophylline", draws, mode="posterior")
    with pytest.raises(ModelError, match="unknown observed site"):
        simulate("theophylline", draws, sites="pca")
    with pytest.raises(ModelError, match="random_effects"):
        simulate("theophylline", draws, mode="new", random_effects="bsv")


def test_vpc_of_data_simulated_from_the_model_is_covered(theo):
    data = theo.load_data()
    draws = truth_draws(theo, 100, seed=5)
    # "observed" data: one more replicate of the model with the true parameters
    fake = simulate("theophylline", truth_draws(theo, 1, seed=6), mode="new", seed=7).observation["conc"][0]
    ev = dict(data["events"])
    ev["obs_value"] = np.where(np.asarray(ev["obs_valid"]), fake, np.nan)
    result = vpc_from_model("theophylline", draws, dict(data, events=ev), site="conc", num_replicates=100, bins=6)
    # 6 bins x 3 percentiles, each inside its 90% interval with probability ~0.9; at most 5 misses
    # (Binomial(18, 0.1): P(X >= 6) = 0.6%)
    misses = int((~result.covered).sum())
    assert misses <= 5, result.to_frame()
    assert result.simulated.shape == (100, 6, 3)


def test_individual_fits_and_plots(theo):
    draws = truth_draws(theo, 10)
    fits = individual_fits("theophylline", draws, num_draws=10, num_times=30)
    assert isinstance(fits, IndividualFits) and fits.site == "conc"
    assert fits.ipred.shape == (3, 12, 30) and fits.pred.shape == (3, 12, 30)
    assert np.all(fits.ipred[0] <= fits.ipred[2] + 1e-12)
    # all draws share the typical values: the population band has zero width
    np.testing.assert_allclose(fits.pred[0], fits.pred[2], rtol=1e-10, atol=1e-12)
    # the observations are the bundled data (132 values, 0 at t = 0 for most subjects)
    assert int(np.isfinite(fits.obs_value).sum()) == 132
    fig = plot_individual_fits(fits, patients=[0, 1, 2], ncols=2)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3 and visible[0].get_title() == "patient 1"  # the Theoph subject label, from the model coords
    assert len(visible[0].lines) == 3  # PRED, IPRED, observations
    rng = np.random.default_rng(0)
    t, sims = _toy_replicates(20, rng)
    fig = plot_vpc(vpc(t, sims[0], sims[1:]))
    ax = fig.axes[0]
    assert len(ax.collections) == 3  # one shaded interval per percentile
    with pytest.raises(OptionError, match="outside"):
        plot_individual_fits(fits, patients=[12])
    import pandas as pd

    frame = pd.DataFrame({"patient": [0, 0, 0], "time": [0.0, 1.0, 2.0], "q05": [0, 1, 2.0], "q50": [1, 2, 3.0],
                          "q95": [2, 3, 4.0]})
    fig = plot_regimen(frame, label="regimen A")
    assert fig.axes[0].lines[0].get_ydata().tolist() == [1, 2, 3]
