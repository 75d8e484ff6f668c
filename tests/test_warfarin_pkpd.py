"""Bundled warfarin PK/PD model: data, exact limits of the model, a tiny NUTS smoke run, and
in the slow tier the `bayesbio fit warfarin_pkpd` defaults with their convergence checks."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from numpyro import handlers

import bayesbio as bb
from bayesbio.errors import DataError
from bayesbio.population import output_values, simulate

POPULATION = ["ka_pop", "cl_pop", "v_pop", "e0_pop", "ic50_pop", "kout", "imax", "omega_ka", "omega_cl",
              "omega_v", "omega_e0", "omega_ic50", "a_conc", "b_conc", "sigma_pca"]


@pytest.fixture(scope="module")
def wf():
    from bayesbio.models import warfarin_pkpd

    return warfarin_pkpd


def test_data_records_and_outputs(wf):
    data = wf.load_data()
    ev = bb.population.as_batch(data["events"])
    assert ev.n_patients == 32 and ev.n_states == 3
    conc = output_values(ev, wf.CMT_CONC - 1)
    pca = output_values(ev, wf.CMT_PCA - 1)
    # the file's counts (PROVENANCE.md): 251 concentrations, 232 PCA values, 32 oral doses
    assert int(np.isfinite(conc).sum()) == 251 and int(np.isfinite(pca).sum()) == 232
    assert int(ev.dose_valid.sum()) == 32 and np.all(ev.dose_cmt[ev.dose_valid] == 0)
    table = bb.datasets.load("warfarin_pkpd")
    np.testing.assert_allclose(np.sort(ev.dose_amount[ev.dose_valid]), np.sort(table["amt_mg"][table["evid"] == 1]))
    np.testing.assert_allclose(np.nansum(pca), table["dv"][table["dvid"] == "pca"].sum())
    with pytest.raises(DataError, match="dvid"):
        wf.nonmem_table(table.assign(dvid="inr"))
    with pytest.raises(DataError, match="compartment"):
        output_values(ev, -1)


def test_model_sites_and_exact_limits(wf):
    data = wf.load_data()
    tr = handlers.trace(handlers.seed(wf.model, 0)).get_trace(data)
    for name in POPULATION:
        assert tr[name]["value"].shape == ()
    assert tr["eta"]["value"].shape == (32, 5) and tr["conc"]["value"].shape == (32, 25)
    # with imax -> 0 nothing inhibits PCA synthesis: PCA stays at e0 exactly, and the
    # concentration is the closed-form one-compartment oral solution (Gibaldi & Perrier)
    point = {"ka_pop": 0.9, "cl_pop": 0.13, "v_pop": 8.0, "e0_pop": 97.0, "ic50_pop": 1.0, "kout": 0.055,
             "a_conc": 0.3, "b_conc": 0.1, "sigma_pca": 4.0,
             **{f"omega_{k}": 0.2 for k in wf.RANDOM}}
    draws = {k: np.full(2, v) for k, v in point.items()}
    draws["imax"] = np.array([1e-12, 0.97])  # draw 0: no inhibition; draw 1: the published Emax
    draws["eta_z"] = np.random.default_rng(0).normal(size=(2, 32, 5))
    sim = simulate(wf.model, draws, data, mode="typical")
    ev = bb.population.as_batch(data["events"])
    valid = ev.obs_valid
    np.testing.assert_allclose(sim.prediction["pca"][0][valid], 97.0, rtol=1e-9)
    wt = data["weight"][:, None]
    cl, v, ka = 0.13 * (wt / 70) ** 0.75, 8.0 * (wt / 70), 0.9
    k = cl / v
    t = ev.obs_time
    dose = ev.dose_amount[:, :1]
    exact = dose * ka / (ka - k) * (np.exp(-k * t) - np.exp(-ka * t)) / v
    # both closed forms of the same expression (the model's avoids the 0/0 at ka == k): they agree
    # to rounding, amplified at most ~1e3 by the difference quotient's cancellation in this one
    np.testing.assert_allclose(sim.prediction["conc"][0][valid], exact[valid], rtol=1e-10, atol=1e-12)
    # with inhibition PCA falls well below baseline once the drug is absorbed, never above it
    pca = np.where(valid, sim.prediction["pca"][1], np.nan)
    assert np.nanmin(pca) < 0.6 * 97.0 and np.nanmax(pca) <= 97.0 + 1e-9


def test_tiny_nuts_run(wf):
    # tree depth <= 4 (at most 15 gradients per iteration): the first warm-up iterations, before
    # the step size adapts, otherwise run 1023-step trajectories (minutes for a smoke test)
    idata = bb.sample_nuts("warfarin_pkpd", chains=1, warmup=15, samples=10, seed=2, progress=False,
                           max_tree_depth=4)
    post = idata.posterior
    for name in POPULATION:
        assert post[name].dims == ("chain", "draw")
    assert post["cl"].dims == ("chain", "draw", "patient") and post.sizes["patient"] == 32
    assert set(idata.observed_data.data_vars) == {"conc", "pca"}
    assert np.all(np.isfinite(idata.sample_stats["lp"].values))


@pytest.mark.slow
def test_cli_defaults_converge(tmp_path):
    """`bayesbio fit warfarin_pkpd` with defaults (4 chains x 1000 warm-up + 1000 draws):
    R-hat < 1.01 for every population parameter, no divergences, and the PK and PD typical
    values in the range of published warfarin models (PROVENANCE.md, a sanity check only:
    CL 0.13 L/h, V 7.9 L, kout 0.055 /h, E0 97, within a factor 1.5; this model has no
    absorption lag or transit compartments, so ka and IC50 are not compared)."""
    import arviz as az

    out = tmp_path / "warfarin.nc"
    env = dict(os.environ, CI="true", BAYESBIO_CACHE_DIR="off")
    proc = subprocess.run(
        [sys.executable, "-m", "bayesbio.cli", "fit", "warfarin_pkpd", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=14400,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    idata = az.from_netcdf(out)
    rhat = {k: float(v) for k, v in az.rhat(idata, var_names=POPULATION).items()}
    ess = {k: float(v) for k, v in az.ess(idata, var_names=POPULATION).items()}
    print("R-hat", rhat, "\nbulk ESS", ess, "\nsettings", idata.posterior.attrs.get("sampling_seconds"))
    assert max(rhat.values()) < 1.01, rhat
    assert int(idata.sample_stats["diverging"].sum()) == 0
    for name, ref in {"cl_pop": 0.13, "v_pop": 7.9, "kout": 0.055, "e0_pop": 97.0}.items():
        median = float(idata.posterior[name].median())
        assert ref / 1.5 < median < ref * 1.5, (name, median, ref)


# --- the closed-form PK + quadrature PD against the three-state ODE --------------------------------

TIGHT = dict(rtol=1e-10, atol=1e-12, max_steps=200_000)


def _parameters(n, seed, *, ka_equals_k=False):
    rng = np.random.default_rng(seed)
    p = {"ka": np.exp(rng.normal(0.0, 1.0, n)), "cl": 0.15 * np.exp(rng.normal(0.0, 0.5, n)),
         "v": 8.0 * np.exp(rng.normal(0.0, 0.3, n)), "e0": np.full(n, 100.0),
         "ic50": 1.5 * np.exp(rng.normal(0.0, 0.5, n))}
    if ka_equals_k:  # the textbook formula's 0/0: the closed form must stay exact there
        p["ka"][0] = p["cl"][0] / p["v"][0]
    return {k: np.asarray(v) for k, v in p.items()}


def _three_state(wf, p, kout, imax, events):
    states = bb.population.solve_population_with_status(
        wf.rhs, p, events, shared={"kout": kout, "imax": imax}, y0=np.array([0.0, 0.0, 1.0]), **TIGHT
    ).ys
    return states[..., 1] / p["v"][:, None], states[..., 2]


@pytest.mark.parametrize("seed, kout", [(0, 0.06), (1, 0.06), (2, 2.5)])
def test_closed_form_pk_matches_three_state_ode(wf, monkeypatch, seed, kout):
    # the ODE at rtol 1e-10, the quadrature's error <= ~2e-9 at the prior's kout
    # (test_quadrature_error_on_prior_draws): 1e-7 leaves room for the ODE's tolerance-proportional
    # error. kout = 2.5 /h is just inside the guard on the 144 h segments (2.5 x 4.5 h = 11.25 of
    # the 12 allowed): the 8-node rule's relative error on the weight alone is ~1e-7 there, and r
    # sums a few such sub-intervals' worth of it, so 1e-6 absolute
    monkeypatch.setattr(wf, "SOLVER", TIGHT)
    data = wf.load_data()
    events = data["events"]
    p = _parameters(32, seed, ka_equals_k=seed == 0)
    conc, r = wf.predictions(p, kout, 0.9, events)
    conc_ref, r_ref = _three_state(wf, p, kout, 0.9, events)
    valid = np.asarray(events["obs_valid"])
    np.testing.assert_allclose(np.asarray(conc)[valid], np.asarray(conc_ref)[valid], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(np.asarray(r)[valid], np.asarray(r_ref)[valid], rtol=1e-7,
                               atol=1e-10 if kout < 1 else 1e-6)
    assert np.min(np.asarray(r)[valid]) < 0.7  # the drug does act: a comparison of two flat lines proves nothing


def test_chain_central_at_and_near_equal_rates(wf):
    """The central amount and its gradient at ka == k exactly (the textbook formula's 0/0) equal
    their limits, and away from it the textbook formula."""
    import jax
    import jax.numpy as jnp

    def central(ka, k, s=3.0):
        return wf.chain_central(s, jnp.array([1.0, 0.0]), jnp.zeros(2), ka, k)

    grad = jax.grad(central, argnums=(0, 1))
    # limit of (e^{-ks} - e^{-ka s}) ka / (ka - k) as ka -> k: ka s e^{-ks}
    np.testing.assert_allclose(float(central(0.2, 0.2)), 0.2 * 3.0 * np.exp(-0.6), rtol=1e-14)
    # gradients: the tie against points 1e-7 away, where the gradient moves by ~1e-7 relative
    for side in (1e-7, -1e-7):
        np.testing.assert_allclose(np.array(grad(0.2, 0.2)), np.array(grad(0.2 + side, 0.2)), rtol=1e-6)
    ka, k, s = 1.3, 0.2, 5.0  # far apart: the textbook formula, to rounding
    np.testing.assert_allclose(float(central(ka, k, s)), ka / (ka - k) * (np.exp(-k * s) - np.exp(-ka * s)),
                               rtol=1e-13)


def _regimens():
    from bayesbio.population import bolus, infusion, reset

    return {
        "three oral doses": [bolus(0.0, 100.0, 0), bolus(24.0, 50.0, 0), bolus(48.0, 75.0, 0)],
        "oral dose, then an infusion into the central compartment": [
            bolus(0.0, 100.0, 0), infusion(20.0, 60.0, 1, duration=6.0)],
        "infusion into the depot, a dose into the PCA state": [
            infusion(0.0, 100.0, 0, duration=3.0), bolus(30.0, 0.2, 2)],
        "oral dose, then an IV bolus into the central compartment (the concentration jumps)": [
            bolus(0.0, 100.0, 0), bolus(24.0, 40.0, 1)],
        "oral dose, a reset (EVID 4) with a new dose": [
            bolus(0.0, 100.0, 0), reset(24.0), bolus(24.0, 80.0, 0)],
    }


@pytest.mark.parametrize("name", list(_regimens()))
def test_closed_form_pk_regimens_and_gradient(wf, monkeypatch, name):
    """Regimens beyond the bundled data's single oral dose (several doses, infusions into either PK
    compartment, a dose into the PCA state, an IV bolus, a later reset), values and the gradient
    with respect to every parameter, against the three-state ODE."""
    import jax
    import jax.numpy as jnp

    from bayesbio.population import make_batch, patient

    monkeypatch.setattr(wf, "SOLVER", TIGHT)
    regimen = _regimens()[name]
    times = np.array([0.5, 2.0, 12.0, 22.0, 24.0, 26.0, 30.0, 48.0, 60.0, 96.0])
    batch = make_batch([patient(regimen, times), patient(regimen[:1], times)], n_states=3).to_dict()
    p = {key: np.repeat(value, 2) for key, value in _parameters(1, 3).items()}  # the same subject twice

    def total(p, shared, closed_form):
        conc, r = (wf.predictions(p, shared["kout"], shared["imax"], batch) if closed_form
                   else _three_state(wf, p, shared["kout"], shared["imax"], batch))
        return jnp.sum(conc) + 100.0 * jnp.sum(r), (conc, r)

    shared = {"kout": 0.05, "imax": 0.8}
    (v1, (c1, r1)), g1 = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(p, shared, True)
    (v3, (c3, r3)), g3 = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(p, shared, False)
    np.testing.assert_allclose(np.asarray(c1), np.asarray(c3), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(np.asarray(r1), np.asarray(r3), rtol=1e-7, atol=1e-10)
    # the later events matter: the same subject with the whole regimen (row 0) and with its first
    # event only (row 1) differ in concentration or, for a dose into the PCA state, in r
    c1, r1 = np.asarray(c1), np.asarray(r1)
    assert (np.max(np.abs(c1[0] - c1[1])) > 0.1 * np.max(c1)) or (np.max(np.abs(r1[0] - r1[1])) > 0.05)
    # ODE forward sensitivities at rtol 1e-10; the quadrature differentiated exactly (its error in
    # the gradient is of the order of its error in the value): they agree to ~1e-8 relative
    for key in ("ka", "cl", "v", "ic50"):
        np.testing.assert_allclose(np.asarray(g1[0][key]), np.asarray(g3[0][key]), rtol=1e-6, atol=1e-8,
                                   err_msg=key)
    for key in ("kout", "imax"):
        np.testing.assert_allclose(float(g1[1][key]), float(g3[1][key]), rtol=1e-6, err_msg=key)


def test_pre_dose_record_reads_the_state_before_the_dose(wf, monkeypatch):
    """A record at a dose time flagged pre-dose reads the segment that ends there (the state before
    the dose); the same record without the flag sees the dose. Both against the three-state ODE."""
    from bayesbio.population import bolus, make_batch, patient

    monkeypatch.setattr(wf, "SOLVER", TIGHT)
    doses = [bolus(0.0, 100.0, 0), bolus(24.0, 60.0, 1)]  # the second one IV: C jumps at 24 h
    times = np.array([2.0, 24.0, 24.0, 30.0])
    batch = make_batch([patient(doses, times, pre_dose=[False, True, False, False])], n_states=3).to_dict()
    p = _parameters(1, 6)
    conc, r = wf.predictions(p, 0.05, 0.8, batch)
    conc_ref, r_ref = _three_state(wf, p, 0.05, 0.8, batch)
    np.testing.assert_allclose(np.asarray(conc), np.asarray(conc_ref), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(np.asarray(r), np.asarray(r_ref), rtol=1e-7, atol=1e-10)
    before, after = float(conc[0, 1]), float(conc[0, 2])
    np.testing.assert_allclose(after - before, 60.0 / p["v"][0], rtol=1e-9)  # the jump is the IV dose / V


def test_quadrature_error_on_prior_draws(wf, monkeypatch):
    """``r`` by the bundled quadrature against a much finer one (ratio 1.5, 45 levels, 128 uniform
    parts, 14 nodes; itself within 2e-11 of the three-state ODE at rtol 1e-11 where checked) at 200
    draws of the model's prior on the bundled data: the largest difference seen when the settings
    were chosen was 2.2e-9 (kout up to 1.6 /h among the draws); 1e-8 bounds it with room for
    rounding across platforms, and stays far below the PCA noise (sigma_pca ~ 5 %)."""
    import jax
    from numpyro.infer import Predictive

    data = wf.load_data()
    events = data["events"]
    prior = Predictive(wf.model, num_samples=200)(jax.random.PRNGKey(7), data)
    valid = np.asarray(events["obs_valid"])

    def all_draws():
        f = jax.jit(lambda p, kout, imax: wf.predictions(p, kout, imax, events)[1])
        return np.stack([np.asarray(f({n: prior[n][i] for n in ("ka", "cl", "v", "ic50")}, prior["kout"][i],
                                      prior["imax"][i])) for i in range(200)])

    bundled = all_draws()
    monkeypatch.setattr(wf, "QUADRATURE", dict(ratio=1.5, levels=45, uniform=128, nodes=14))
    fine = all_draws()
    assert np.all(np.isfinite(bundled[:, valid]))  # no draw is refused (kout > 2.7 /h)
    assert float(np.max(np.abs(bundled - fine)[:, valid])) < 1e-8
    assert float(np.min(bundled[:, valid])) < 0.1  # draws where the drug acts strongly are among them


def test_too_fast_kout_or_non_finite_predictions_fail_like_a_failed_solve(wf):
    """Where kout is too fast for the quadrature's mesh, or a prediction is not finite, the subject's
    predictions are NaN, the log density is -inf, and simulate() marks the draw failed: never a
    silently inaccurate value."""
    import jax
    from numpyro.infer.util import log_density

    data = dict(wf.load_data())
    events = data["events"]
    p = _parameters(32, 4)
    # segments of 144 h (13 subjects) and 120 h (19): sub-intervals of 4.5 h and 3.75 h
    length = np.asarray(events["seg_end"] - events["seg_start"])[:, 0]
    conc, r = wf.predictions(p, 3.0, 0.8, events)  # 3 /h x 4.5 h > MAX_DECAY_PER_SUBINTERVAL (12) >= 3 x 3.75 h
    failed = np.all(np.isnan(np.asarray(r)), axis=1)
    assert np.array_equal(failed, length > 140) and np.all(np.isnan(np.asarray(conc))[failed])
    assert np.all(np.isfinite(np.asarray(r))[~failed])
    conc, r = wf.predictions(p, 2.0, 0.8, events)  # 2 /h: accepted everywhere
    assert np.all(np.isfinite(np.asarray(r)))
    point = {"ka_pop": 0.9, "cl_pop": 0.13, "v_pop": 8.0, "e0_pop": 97.0, "ic50_pop": 1.0, "kout": 0.055,
             "imax": 0.9, "a_conc": 0.3, "b_conc": 0.1, "sigma_pca": 4.0,
             **{f"omega_{k}": 0.2 for k in wf.RANDOM}, "eta_z": np.zeros((32, 5))}
    seg_bolus = np.array(events["seg_bolus"])
    seg_bolus[3, 0, 0] = np.inf  # subject 4: a dose no prediction survives

    def lp(events):
        return log_density(wf.model, (dict(data, events=events),), {}, point)[0]

    assert np.isfinite(float(jax.jit(lp)(events)))
    assert float(jax.jit(lp)(dict(events, seg_bolus=seg_bolus))) == -np.inf
    draws = {k: np.asarray(v)[None] for k, v in point.items()}
    sim = simulate(wf.model, draws, dict(data, events=dict(events, seg_bolus=seg_bolus)), mode="typical")
    assert sim.failed.all()
    assert not simulate(wf.model, draws, data, mode="typical").failed.any()
    fast = dict(draws, kout=np.array([3.0]))
    assert simulate(wf.model, fast, data, mode="typical").failed.all()


def test_unknown_pk_form_is_refused(wf):
    from bayesbio.errors import ModelError

    with pytest.raises(ModelError, match="pk must be"):
        wf.make_model(pk="stiff")
    with pytest.raises(ModelError, match="pk must be"):
        wf.predictions(_parameters(1, 0), 0.05, 0.8, wf.load_data()["events"], pk="rk4")


def test_sampling_takes_the_closed_form(wf, monkeypatch):
    """The runners pass the data into jit (traced): the closed-form path must still be the one taken."""
    traced = []

    def forbidden(*args):
        raise AssertionError("the three-state ODE was solved")

    def spy(*args):
        traced.append(1)
        return subject_predictions(*args)

    subject_predictions = wf.subject_predictions
    monkeypatch.setattr(wf, "rhs", forbidden)
    monkeypatch.setattr(wf, "subject_predictions", spy)
    idata = bb.sample_nuts("warfarin_pkpd", chains=1, warmup=5, samples=3, seed=3, progress=False,
                           max_tree_depth=3)
    assert traced and np.all(np.isfinite(idata.sample_stats["lp"].values))
