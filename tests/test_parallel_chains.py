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
from bayesbio.infer import _driver, nuts

RUN = dict(chains=4, warmup=40, samples=40, seed=7, chunk_size=10, progress=False)


# ------------------------------------------------------------------------------------------
# the driver, with a stand-in chunk: state = iterations done; draw i of a chain = 1000 c + i


def counting_call(seconds=0.0, threads=None):
    def call(worker, state, g, n):
        if threads is not None:
            threads.add(threading.current_thread().name)
        time.sleep(seconds)
        rows = []
        for c, s in zip(g, state):
            rows.append([1000 * c + s + i for i in range(n)])
        return state + n, {"z": np.asarray(rows, dtype=np.int64)}

    return call


def drive(**kwargs):
    groups = [np.array([c]) for c in range(4)]
    options = dict(groups=groups, call=counting_call(), initial_state=lambda gi: np.zeros(1, np.int64),
                   warmup=5, total=15, chunk_size=4, n_chains=4)
    options.update(kwargs)
    return _driver.run_groups(**options)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_driver_keeps_every_groups_sampling_draws_in_order(workers):
    result = drive(workers=workers)
    draws = np.concatenate([k["z"] for k in result.kept], axis=0)
    # warm-up iterations 0-4 are not kept; sampling iterations 5-14 are, chain by chain
    expected = np.array([[1000 * c + i for i in range(5, 15)] for c in range(4)])
    np.testing.assert_array_equal(draws, expected)


def test_driver_runs_groups_on_several_threads_and_reports_the_slowest_worker():
    threads = set()
    # 4 groups of 4 chunks (2 warm-up: 4 + 1 iterations; 3 sampling: 4 + 4 + 2), 20 ms a chunk
    result = drive(workers=2, call=counting_call(seconds=0.02, threads=threads))
    assert len(threads) == 2
    # one worker would report the sum over the 4 groups (warm-up 4 x 2 x 20 ms = 160 ms, sampling
    # 4 x 3 x 20 ms = 240 ms); two workers of two groups each report half of it (80 / 120 ms). The
    # upper bounds leave room for sleep overshoot and for a worker that gets 3 of the 4 groups
    # (120 / 180 ms), and still fail if the times were summed over workers
    assert 0.08 <= result.warmup_seconds < 0.15
    assert 0.12 <= result.sampling_seconds < 0.23


def test_driver_reraises_a_workers_error_and_stops_the_others():
    calls = []

    def failing(worker, state, g, n):
        calls.append(int(g[0]))
        if int(g[0]) == 1:
            raise RuntimeError("chunk failed")
        time.sleep(0.01)
        return state + n, {"z": np.zeros((1, n))}

    with pytest.raises(RuntimeError, match="chunk failed"):
        drive(workers=2, call=failing)
    # the groups after the failure never started (chains 2 and 3 are not in the calls)
    assert set(calls) <= {0, 1}


def test_driver_resumes_from_its_checkpoint_to_the_same_draws(tmp_path, monkeypatch):
    ckpt = tmp_path / "run.ckpt"
    full = drive(workers=2)

    class Stop(Exception):
        pass

    saved = _driver.save_checkpoint

    def save_then_stop(path, payload):  # a run killed right after its first checkpoint
        saved(path, payload)
        raise Stop

    monkeypatch.setattr(_driver, "save_checkpoint", save_then_stop)
    with pytest.raises(Stop):
        drive(workers=2, checkpoint=str(ckpt), checkpoint_every=8, identity={"seed": 1})
    monkeypatch.setattr(_driver, "save_checkpoint", saved)
    with open(ckpt, "rb") as fh:
        payload = pickle.load(fh)
    assert payload["seed"] == 1 and sum(g["done"] for g in payload["groups"].values()) >= 8
    resumed = drive(workers=2, resumed=payload)
    for a, b in zip(full.kept, resumed.kept):
        np.testing.assert_array_equal(a["z"], b["z"])


# ------------------------------------------------------------------------------------------
# end to end


@pytest.fixture()
def two_workers(monkeypatch):
    # two threads even where the machine has one core (the draws must not depend on it)
    monkeypatch.setattr(nuts, "parallel_workers", lambda: 2)


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

    class Stop(Exception):
        pass

    saved = _driver.save_checkpoint

    def save_then_stop(path, payload):
        saved(path, payload)
        raise Stop

    monkeypatch.setattr(_driver, "save_checkpoint", save_then_stop)
    with pytest.raises(Stop):
        bb.sample_nuts(decay_model, DATA, chain_method="parallel", checkpoint=str(ckpt), checkpoint_every=20, **RUN)
    monkeypatch.setattr(_driver, "save_checkpoint", saved)
    resumed = bb.sample_nuts(decay_model, DATA, chain_method="parallel", checkpoint=str(ckpt), resume=True, **RUN)
    for var in ("k", "sigma"):
        np.testing.assert_array_equal(full.posterior[var].values, resumed.posterior[var].values, err_msg=var)
    np.testing.assert_array_equal(full.sample_stats["lp"].values, resumed.sample_stats["lp"].values)


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
from bayesbio.infer import nuts
sys.path.insert(0, sys.argv[1])
from test_inference import DECAY_DATA, decay_model
assert jax.local_device_count() == 2
kwargs = dict(chains=4, warmup=30, samples=30, seed=7, chunk_size=10, progress=False)
a = bb.sample_nuts(decay_model, DECAY_DATA, chain_method="sequential", **kwargs)
# the accelerator path: one device per worker, a program compiled for each
nuts.parallel_workers = lambda: 2
nuts._worker_devices = lambda workers: list(jax.local_devices()[:workers])
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
