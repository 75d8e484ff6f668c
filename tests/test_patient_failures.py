"""Solver failures of population models counted per patient (issue #9, item 2).

A three-patient model whose patients differ only in their dose: y' = k y^2 after a bolus of
``a_i`` at t = 0 blows up at t = 1 / (k a_i), and the solve runs to t = 2, so patient i fails
where k > 1 / (2 a_i) (the step budget runs out slightly earlier). With k ~ Uniform(0, 2):
patient 0 (a = 1e-3) can never fail (it would need k > 500), patient 1 (a = 1) fails for
k > ~0.5, patient 2 (a = 0.8) for k > ~0.625, so whenever patient 2 fails patient 1 fails too.

What is guaranteed (:mod:`bayesbio._patient_failures`): per chain and phase, with one population
solve and no other solve in the model, the chain's count is the number of evaluations in which
any patient failed, so  max over patients <= chain count <= sum over patients.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesbio as bb
from bayesbio.infer import _driver, nuts
from bayesbio.population import bolus, make_batch, patient, solve_population

TS = np.array([0.5, 1.0, 2.0])
AMOUNTS = np.array([1e-3, 1.0, 0.8])
Y_OBS = np.array([1e-3, 1.15, 0.9])  # at t = 0.5; patient 1 alone puts k near 0.26

MODEL_SCRIPT = '''
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import bayesbio as bb
from bayesbio.population import bolus, make_batch, patient, solve_population

description = "three patients, one of whom blows up for part of the prior"
dims = {"y": ["patient"]}
TS = np.array([0.5, 1.0, 2.0])
AMOUNTS = np.array([1e-3, 1.0, 0.8])


def coords(data):
    return {"patient": ["P-101", "P-102", "P-103"]}


def load_data(path=None):
    batch = make_batch([patient([bolus(0.0, float(a), 0)], TS) for a in AMOUNTS], n_states=1)
    return {"events": batch.to_dict(), "y": np.array([1e-3, 1.15, 0.9])}


def model(data):
    k = numpyro.sample("k", dist.Uniform(0.0, 2.0))
    n = np.shape(data["events"]["obs_time"])[0]
    y = solve_population(lambda t, y, p: p["k"] * y**2, {"k": jnp.full(n, k)}, data["events"], max_steps=200)
    bb.observe("y", bb.NormalNoise(y[:, 0, 0], 0.5), obs=data["y"])
'''

RUN = dict(chains=2, warmup=60, samples=60, seed=5, chain_method="sequential")


def blowup_data():
    batch = make_batch([patient([bolus(0.0, float(a), 0)], TS) for a in AMOUNTS], n_states=1)
    return {"events": batch.to_dict(), "y": Y_OBS}


def blowup_population(data):
    k = numpyro.sample("k", dist.Uniform(0.0, 2.0))
    n = np.shape(data["events"]["obs_time"])[0]
    y = solve_population(lambda t, y, p: p["k"] * y**2, {"k": jnp.full(n, k)}, data["events"], max_steps=200)
    bb.observe("y", bb.NormalNoise(y[:, 0, 0], 0.5), obs=data["y"])


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``bayesbio fit SCRIPT --report`` in this process: (InferenceData, printed text, report HTML)."""
    import contextlib
    import io

    import arviz as az

    from bayesbio.cli import main

    folder = tmp_path_factory.mktemp("patients")
    script = folder / "blowup_population.py"
    script.write_text(MODEL_SCRIPT)
    out, report = folder / "fit.nc", folder / "report.html"
    flags = os.environ.get("XLA_FLAGS")
    text = io.StringIO()
    try:
        with contextlib.redirect_stdout(text):
            code = main(["fit", str(script), "--chains", "2", "--warmup", "60", "--samples", "60",
                         "--seed", "5", "--chain-method", "sequential", "--no-progress",
                         "--out", str(out), "--report", str(report)])
    finally:  # the CLI sets XLA_FLAGS for its own process; later subprocesses get the old value
        if flags is None:
            os.environ.pop("XLA_FLAGS", None)
        else:
            os.environ["XLA_FLAGS"] = flags
    assert code == 0, text.getvalue()
    idata = az.from_netcdf(out)
    idata.load()
    return idata, text.getvalue(), report.read_text()


def _check_relations(per_patient, per_chain):
    """per_patient (chains, 3), per_chain (chains,): counts of one phase."""
    assert np.all(per_patient[:, 0] == 0), per_patient  # patient 0 cannot fail (k <= 2 < 500)
    # patient 2's failure region lies inside patient 1's: every failing evaluation has patient 1
    np.testing.assert_array_equal(per_patient[:, 1], per_chain)
    assert np.all(per_patient.max(axis=1) <= per_chain) and np.all(per_chain <= per_patient.sum(axis=1))


def test_cli_fit_counts_failures_per_patient_and_surfaces_them(cli_run):
    idata, text, page = cli_run
    stats = idata.sample_stats
    sampling, warmup = stats["patient_solver_failures"], stats["warmup_patient_solver_failures"]
    for var in (sampling, warmup):
        assert var.dims == ("chain", "patient")
        assert list(var["patient"].values) == ["P-101", "P-102", "P-103"]  # the model's coords
    _check_relations(sampling.values, stats["solver_failures"].values.sum(axis=1))
    _check_relations(warmup.values, stats["warmup_solver_failures"].values)
    # both chains meet patient 1's boundary (k ~ 0.5, inside the posterior's reach) while sampling
    assert np.all(sampling.values[:, 1] > 0), sampling.values
    totals = sampling.values.sum(axis=0) + warmup.values.sum(axis=0)
    # the summary printout names the patients that failed, worst first, with their totals
    assert f"solver failures per patient: {int((totals > 0).sum())} of 3 had failed solves" in text
    phases = f"sampling {sampling.values[:, 1].sum()}, warm-up {warmup.values[:, 1].sum()}"
    assert f"P-102: {totals[1]} ({phases})" in text
    assert "P-101" not in text.split("solver failures per patient")[1]
    # the report: a per-patient table in the sampler-health section and the patient in the verdict
    assert 'id="patient-failures"' in page and "Solver failures per patient" in page
    assert "<td class=\"label\">P-102</td>" in page and "<td class=\"label\">P-101</td>" not in page
    assert "Failed solves by patient, most first: P-102" in page


class _Stop(Exception):
    pass


def _interrupted_then_resumed(path, monkeypatch):
    """The run stopped right after its third checkpoint (chain 1 after 50 warm-up iterations,
    chain 0 done), then resumed from it."""
    real, saved = _driver.save_checkpoint, []

    def save_then_stop(file, payload):
        real(file, payload)
        # sequential chains: one group (chain) in progress, at a chunk boundary
        (running,) = [(gi, g["done"]) for gi, g in payload["groups"].items() if g["state"] is not None]
        saved.append(running)
        if len(saved) == 3:
            raise _Stop

    monkeypatch.setattr(_driver, "save_checkpoint", save_then_stop)
    options = dict(RUN, progress=False, checkpoint=str(path), checkpoint_every=50)
    with pytest.raises(_Stop):
        bb.sample_nuts(blowup_population, blowup_data(), **options)
    assert saved == [(0, 50), (0, 110), (1, 50)]
    monkeypatch.setattr(_driver, "save_checkpoint", real)
    return bb.sample_nuts(blowup_population, blowup_data(), resume=True, **options)


def test_in_graph_and_host_callback_counts_agree_and_survive_resume(cli_run, tmp_path, monkeypatch):
    """The uninterrupted CLI run (in-graph counters), the same run stopped and resumed, and the
    same again counted by host callbacks: identical draws and identical counts."""
    reference, _, _ = cli_run
    in_graph = _interrupted_then_resumed(tmp_path / "in_graph.ckpt", monkeypatch)
    monkeypatch.setattr(nuts, "_IN_GRAPH_FAILURES", False)  # the same run counted by host callbacks
    host = _interrupted_then_resumed(tmp_path / "host.ckpt", monkeypatch)
    for run in (in_graph, host):
        np.testing.assert_array_equal(run.posterior["k"].values, reference.posterior["k"].values)
        for name in ("solver_failures", "warmup_solver_failures", "patient_solver_failures",
                     "warmup_patient_solver_failures"):
            np.testing.assert_array_equal(run.sample_stats[name].values, reference.sample_stats[name].values,
                                          err_msg=name)
    # no patient coords in a bare model function: 0..P-1
    assert list(in_graph.sample_stats["patient_solver_failures"]["patient"].values) == [0, 1, 2]


def test_several_population_solves_add_up_per_patient():
    """Two solves over the same patients add per patient; one over other patients adds only per
    chain (the host tally, driven directly with a failure context as the NUTS runner sets it)."""
    from bayesbio.infer._common import FailureLog
    from bayesbio._failure_report import _failure_context, _FailureContext

    data = blowup_data()
    other = make_batch([patient([bolus(0.0, 1.0, 0)], TS)] * 2, n_states=1).to_dict()

    def model(k):
        def rhs(t, y, p):
            return p["k"] * y**2

        solve_population(rhs, {"k": jnp.full(3, k)}, data["events"], name="pk", max_steps=200)
        solve_population(rhs, {"k": jnp.full(3, k) * 1.2}, data["events"], name="pd", max_steps=200)
        solve_population(rhs, {"k": jnp.full(2, k)}, other, name="other", max_steps=200)

    log = FailureLog(warmup=10)
    context = _FailureContext(0, 12, log.record, n_patients=3, record_patients=log.record_patients)
    token = _failure_context.set(context)
    try:
        # k = 0.6: patient 1 fails in both 3-patient solves (k = 0.6 and 0.72 > 0.5), patient 2 only in
        # the second (0.72 > 0.625), patient 0 in neither
        jax.jit(model)(0.6)
    finally:
        _failure_context.reset(token)
    np.testing.assert_array_equal(log.per_patient(1, 3, "sampling"), [[0, 2, 1]])
    np.testing.assert_array_equal(log.per_patient(1, 3, "warmup"), [[0, 0, 0]])  # iteration 12 >= warmup 10
    assert log.total() == 3  # per chain: every failed call, the 2-patient one included
