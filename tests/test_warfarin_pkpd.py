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
    # solver rtol 1e-6 / atol 1e-6 (mg, amounts ~100 mg): relative error a few 1e-6
    np.testing.assert_allclose(sim.prediction["conc"][0][valid], exact[valid], rtol=2e-5, atol=1e-6)
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
