"""Chains side by side (``chain_method="parallel"``): worker threads run the sequential program.

The driver (:mod:`bayesbio.infer._driver`) is checked with a counting stand-in for the compiled
chunk (exact expected draws, timings and checkpoints), then end to end with a small ODE model:
the parallel draws must equal the sequential ones bit for bit, also across a stop after a
checkpoint and a resume.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_inference import DECAY_DATA as DATA
from test_inference import decay_model

import bayesbio as bb
from bayesbio.errors import OptionError
from bayesbio.infer import _driver

RUN = dict(chains=4, warmup=40, samples=40, seed=7, chunk_size=10, progress=False)


# ------------------------------------------------------------------------------------------
# the driver, with a stand-in chunk: state = iterations done; draw i of chain c = 1000 c + i;
# every warm-up iteration "fails" once (in-graph tally), and each chunk adds chain + 1 failures
# to patient 0 (per-patient tally)


class Clock:
    """A clock per thread that only the stand-in chunk advances: timings become exact."""

    def __init__(self):
        self.local = threading.local()

    def perf_counter(self):
        return getattr(self.local, "now", 0.0)

    def advance(self, seconds):
        self.local.now = self.perf_counter() + seconds


def counting_call(sleep=0.0, clock=None, log=None):
    def call(worker, state, g, n):
        if log is not None:
            log.append((threading.current_thread().name, int(g[0])))
        time.sleep(sleep)
        if clock is not None:
            clock.advance(0.02)
        rows = [[1000 * c + s + i for i in range(n)] for c, s in zip(g, state)]
        out = {"z": np.asarray(rows, dtype=np.int64), "failures": np.ones((len(g), n), np.int64),
               "patient_failures": np.asarray([[c + 1, 0] for c in g], np.int64)}
        return state + n, out

    return call


def drive(**kwargs):
    groups = [np.array([c]) for c in range(4)]
    options = dict(groups=groups, call=counting_call(), initial_state=lambda gi: np.zeros(1, np.int64),
                   warmup=5, total=15, chunk_size=4, n_chains=4, n_patients=2)
    options.update(kwargs)
    return _driver.run_groups(**options)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_driver_keeps_every_groups_draws_and_tallies(workers):
    result = drive(workers=workers)
    draws = np.concatenate([k["z"] for k in result.kept], axis=0)
    # warm-up iterations 0-4 are not kept; sampling iterations 5-14 are, chain by chain
    expected = np.array([[1000 * c + i for i in range(5, 15)] for c in range(4)])
    np.testing.assert_array_equal(draws, expected)
    np.testing.assert_array_equal(result.warmup_failures, [5, 5, 5, 5])  # one per warm-up iteration
    # warm-up: 2 chunks (4 + 1 iterations), sampling: 3 chunks (4 + 4 + 2), each adding c + 1
    np.testing.assert_array_equal(result.patient_failures["warmup"][:, 0], 2 * np.arange(1, 5))
    np.testing.assert_array_equal(result.patient_failures["sampling"][:, 0], 3 * np.arange(1, 5))


def test_driver_reports_the_phase_times_of_its_slowest_worker(monkeypatch):
    clock, log = Clock(), []
    monkeypatch.setattr(_driver, "time", clock)
    # 20 ms of (fake) time per chunk; 2 warm-up and 3 sampling chunks per group
    result = drive(workers=2, call=counting_call(sleep=0.02, clock=clock, log=log))
    groups_of = {}
    for thread, group in log:
        groups_of.setdefault(thread, set()).add(group)
    assert len(groups_of) == 2, groups_of  # both workers ran groups
    most = max(len(g) for g in groups_of.values())
    # the slowest worker's sums (one worker would report the sum over all 4 groups)
    assert result.warmup_seconds == pytest.approx(most * 2 * 0.02)
    assert result.sampling_seconds == pytest.approx(most * 3 * 0.02)
    assert most < 4


def test_driver_reraises_a_workers_error_and_stops_the_others():
    calls = []

    def failing(worker, state, g, n):
        calls.append(int(g[0]))
        if int(g[0]) == 1:
            raise RuntimeError("chunk failed")
        time.sleep(0.05)
        return state + n, {"z": np.zeros((1, n))}

    with pytest.raises(RuntimeError, match="chunk failed"):
        drive(workers=2, call=failing)
    # group 0 stopped after its running chunk (it has 5: 250 ms), and groups 2 and 3 never started
    assert calls.count(0) < 5 and set(calls) <= {0, 1}, calls


class Stop(Exception):
    pass


def stop_at_save(monkeypatch, after=1, saves=None):
    """Make the driver's checkpoint writer save, then raise Stop (a run killed right after it)."""
    real = _driver.save_checkpoint

    def save(path, payload):
        real(path, payload)
        if saves is not None:  # the group in progress and its iterations (sequential runs)
            saves.append([(gi, g["done"]) for gi, g in payload["groups"].items() if g["state"] is not None])
        if saves is None or len(saves) == after:
            raise Stop

    monkeypatch.setattr(_driver, "save_checkpoint", save)
    return real


def test_driver_resumes_from_its_checkpoint_to_the_same_draws_and_tallies(tmp_path, monkeypatch):
    ckpt = tmp_path / "run.ckpt"
    full = drive(workers=2)
    real = stop_at_save(monkeypatch)

    def slow_extra(done):  # a slow host tally widens the window in which the other worker runs on
        time.sleep(0.05)
        return {}

    with pytest.raises(Stop):
        drive(workers=2, call=counting_call(sleep=0.01), checkpoint=str(ckpt), checkpoint_every=8,
              checkpoint_extra=slow_extra, identity={"seed": 1})
    monkeypatch.setattr(_driver, "save_checkpoint", real)
    with open(ckpt, "rb") as fh:
        payload = pickle.load(fh)
    assert payload["seed"] == 1 and sum(g["done"] for g in payload["groups"].values()) >= 8
    resumed = drive(workers=2, resumed=payload)
    for a, b in zip(full.kept, resumed.kept):
        np.testing.assert_array_equal(a["z"], b["z"])
    # the tallies in the checkpoint match its states: nothing counted twice after the resume
    np.testing.assert_array_equal(resumed.warmup_failures, full.warmup_failures)
    for phase in ("warmup", "sampling"):
        np.testing.assert_array_equal(resumed.patient_failures[phase], full.patient_failures[phase])


def test_driver_checkpoints_after_every_n_iterations_of_all_groups_together(tmp_path, monkeypatch):
    # sequential: 2 chains x 120 iterations in chunks of 10, a checkpoint every 50 iterations;
    # chain 0's last 20 unsaved iterations count towards the next checkpoint, taken 30 iterations
    # into chain 1, so a kill loses at most checkpoint_every - 1 + chunk_size iterations
    saves = []
    stop_at_save(monkeypatch, after=3, saves=saves)
    with pytest.raises(Stop):
        drive(groups=[np.array([0]), np.array([1])], n_chains=2, warmup=60, total=120, chunk_size=10,
              checkpoint=str(tmp_path / "run.ckpt"), checkpoint_every=50)
    assert saves == [[(0, 50)], [(0, 100)], [(1, 30)]]


# ------------------------------------------------------------------------------------------
# end to end


@pytest.fixture()
def two_workers(monkeypatch):
    # two threads even where the machine has one core (the draws must not depend on it)
    monkeypatch.setattr(_driver, "parallel_workers", lambda: 2)


def test_parallel_chains_draw_what_sequential_chains_draw(two_workers):
    a = bb.sample_nuts(decay_model, DATA, chain_method="sequential", **RUN)
    b = bb.sample_nuts(decay_model, DATA, chain_method="parallel", **RUN)
    assert (a.posterior.attrs["parallel_workers"], b.posterior.attrs["parallel_workers"]) == (1, 2)
    for var in ("k", "sigma"):
        np.testing.assert_array_equal(a.posterior[var].values, b.posterior[var].values, err_msg=var)
    for var in ("lp", "n_steps", "diverging", "solver_failures", "step_size"):
        np.testing.assert_array_equal(a.sample_stats[var].values, b.sample_stats[var].values, err_msg=var)


def test_parallel_run_stopped_after_a_checkpoint_resumes_bit_identically(two_workers, tmp_path, monkeypatch):
    ckpt = tmp_path / "run.ckpt"
    full = bb.sample_nuts(decay_model, DATA, chain_method="parallel", **RUN)
    real = stop_at_save(monkeypatch)
    with pytest.raises(Stop):
        bb.sample_nuts(decay_model, DATA, chain_method="parallel", checkpoint=str(ckpt), checkpoint_every=20, **RUN)
    monkeypatch.setattr(_driver, "save_checkpoint", real)
    resumed = bb.sample_nuts(decay_model, DATA, chain_method="parallel", checkpoint=str(ckpt), resume=True, **RUN)
    for var in ("k", "sigma"):
        np.testing.assert_array_equal(full.posterior[var].values, resumed.posterior[var].values, err_msg=var)
    for var in ("lp", "solver_failures"):
        np.testing.assert_array_equal(full.sample_stats[var].values, resumed.sample_stats[var].values)


def test_checkpoint_of_another_format_is_a_clear_error(tmp_path):
    ckpt = tmp_path / "old.ckpt"
    with open(ckpt, "wb") as fh:
        pickle.dump({"format": 3}, fh)
    with pytest.raises(OptionError, match="format 3.*run again without resume"):
        bb.sample_nuts(decay_model, DATA, chain_method="sequential", checkpoint=str(ckpt), resume=True, **RUN)


DEVICES_RUN = r"""
import sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
import bayesbio as bb
from bayesbio.infer import _driver
sys.path.insert(0, sys.argv[1])
from test_inference import DECAY_DATA, decay_model
assert jax.local_device_count() == 2
kwargs = dict(chains=4, warmup=30, samples=30, seed=7, chunk_size=10, progress=False)
a = bb.sample_nuts(decay_model, DECAY_DATA, chain_method="sequential", **kwargs)
# the accelerator path: one device per worker, a program compiled for each
_driver.parallel_workers = lambda: 2
_driver.worker_devices = lambda workers: list(jax.local_devices()[:workers])
b = bb.sample_nuts(decay_model, DECAY_DATA, chain_method="parallel", **kwargs)
for var in ("k", "sigma"):
    np.testing.assert_array_equal(a.posterior[var].values, b.posterior[var].values)
np.testing.assert_array_equal(a.sample_stats["lp"].values, b.sample_stats["lp"].values)
print("ok", b.posterior.attrs["parallel_workers"])
"""


def test_parallel_workers_on_their_own_devices_draw_what_sequential_chains_draw():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    tests = str(Path(__file__).resolve().parent)
    proc = subprocess.run([sys.executable, "-c", DEVICES_RUN, tests], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "ok 2"


def test_host_failure_tally_snapshot_holds_only_completed_iterations():
    from bayesbio.infer._common import FailureLog

    log = FailureLog(warmup=2)
    for chain, iteration in [(0, 0), (0, 1), (0, 3), (1, 0), (1, 2), (1, 2)]:
        log.record(chain, iteration, True)
        log.record_patients(chain, iteration, np.array([True, False]))
    snap = log.snapshot(np.array([3, 1]))  # chain 0 completed iterations 0-2, chain 1 iteration 0
    assert snap["failures"] == {(0, 0): 1, (0, 1): 1, (1, 0): 1}
    assert sorted(snap["patient_failures"]) == [(0, 0), (0, 1), (1, 0)]
    resumed = FailureLog(warmup=2)
    resumed.restore(snap)
    np.testing.assert_array_equal(resumed.per_patient(2, 2, "warmup"), [[2, 0], [1, 0]])
    np.testing.assert_array_equal(resumed.per_patient(2, 2, "sampling"), [[0, 0], [0, 0]])
    # the full log: iteration 3 of chain 0 and iteration 2 (twice) of chain 1 are sampling
    np.testing.assert_array_equal(log.per_patient(2, 2, "sampling"), [[1, 0], [2, 0]])
