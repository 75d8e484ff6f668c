"""SBC with several workers: batches fitted at once on their own threads give bit-for-bit the
fits of one worker; they finish in any order, the checkpoint keeps every finished batch with its
replication numbers, and a run killed with several workers resumes (with any number of workers)
to the uninterrupted result."""

from __future__ import annotations

import os
import signal
import threading
import time

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesbio as bb
import bayesbio.sbc.run as sbc_run
from bayesbio.errors import OptionError
from bayesbio.sbc.checkpoint import CHECKPOINT_NAME, load_progress, save_progress
from bayesbio.sbc.fit import FitResult, _as_finished


def normal_model(data):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.LogNormal(0.0, 0.5))
    bb.observe("y", bb.NormalNoise(jnp.full(data["y"].shape, mu), sigma), obs=data["y"])


DATA = {"y": np.array([0.3, -0.2, 0.8, 0.1])}
SETTINGS = dict(reps=10, warmup=60, draws=9, thin=2, batch=2, bins=5, seed=4)  # 5 batches of 2


class Killed(BaseException):
    """Stands in for SIGKILL: raised right after a checkpoint is written."""


def _assert_same(a, b):  # same machine, same keys and data: bit for bit
    for k in b.ranks:
        np.testing.assert_array_equal(a.ranks[k], b.ranks[k], err_msg=k)
    np.testing.assert_array_equal(a.divergences, b.divergences)
    np.testing.assert_array_equal(a.mean_steps, b.mean_steps)
    assert a.p_holm == b.p_holm


def _killed_after_saves(n, ckpt, monkeypatch):
    """Run SETTINGS with two worker threads, "killed" right after the ``n``-th checkpoint is
    written; returns the replications each save held."""
    saved = []

    def save_then_die(*args, **kwargs):
        save_progress(*args, **kwargs)
        saved.append(args[2].indices().tolist())
        if len(saved) == n:
            raise Killed

    monkeypatch.setattr(sbc_run, "save_progress", save_then_die)
    with pytest.raises(Killed):
        bb.run_sbc(normal_model, DATA, checkpoint=ckpt, workers=2, **SETTINGS)
    monkeypatch.undo()
    return saved


def test_workers_give_the_fits_of_one_worker_and_a_killed_run_resumes(tmp_path, monkeypatch):
    one = bb.run_sbc(normal_model, DATA, **SETTINGS)
    three = bb.run_sbc(normal_model, DATA, workers=3, **SETTINGS)
    _assert_same(three, one)
    assert three.metadata["workers"] == 3 and one.metadata["workers"] == 1

    ckpt = tmp_path / CHECKPOINT_NAME
    saved = _killed_after_saves(2, ckpt, monkeypatch)
    # whole batches only, with their replication numbers: one batch, then two
    assert len(saved) == 2 and len(saved[0]) == 2 and len(saved[1]) == 4
    assert all(sorted(set(s)) == s and all(s[i] % 2 == 0 and s[i + 1] == s[i] + 1 for i in range(0, len(s), 2))
               for s in saved) and set(saved[0]) < set(saved[1])
    resumed = bb.run_sbc(normal_model, DATA, checkpoint=ckpt, resume=True, workers=1, **SETTINGS)
    assert resumed.timings["resumed_after_replications"] == 4
    _assert_same(resumed, one)


def test_worker_processes_give_the_fits_of_one_worker_and_resume_a_thread_run(tmp_path, monkeypatch):
    # each process loads the model and compiles its own copy of the program: same fits, bit for bit
    one = bb.run_sbc(normal_model, DATA, **SETTINGS)
    two = bb.run_sbc(normal_model, DATA, workers=2, parallel="processes", **SETTINGS)
    _assert_same(two, one)
    assert two.metadata["parallel"] == "processes" and two.metadata["workers"] == 2

    ckpt = tmp_path / CHECKPOINT_NAME
    saved = _killed_after_saves(1, ckpt, monkeypatch)
    resumed = bb.run_sbc(normal_model, DATA, checkpoint=ckpt, resume=True, workers=2, parallel="processes",
                         **SETTINGS)
    assert len(saved) == 1 and resumed.timings["resumed_after_replications"] == len(saved[0]) == 2
    _assert_same(resumed, one)


def test_worker_processes_pad_the_last_batch_and_start_at_the_truth_as_one_worker_does():
    settings = dict(SETTINGS, reps=5, init="truth")  # batches of 2: the last one padded
    # data as JAX float64 arrays: a worker that unpickled them before taking the parent's x64
    # setting would fit float32 data, and its ranks would differ
    data = {"y": jnp.asarray(DATA["y"])}
    assert data["y"].dtype == jnp.float64
    one = bb.run_sbc(normal_model, data, **settings)
    two = bb.run_sbc(normal_model, data, workers=2, parallel="processes", **settings)
    _assert_same(two, one)
    assert all(len(r) == 5 for r in two.ranks.values())


def test_worker_processes_report_a_model_they_cannot_receive():
    def local_model(data):  # a closure-free local function still cannot be pickled by reference
        normal_model(data)

    with pytest.raises(OptionError, match="parallel='processes': the model cannot be sent to a worker process"):
        bb.run_sbc(local_model, DATA, workers=2, parallel="processes", **SETTINGS)


def test_a_worker_refuses_data_or_model_code_other_than_the_runs():
    from bayesbio.errors import DataError, ModelError
    from bayesbio.sbc.processes import FitterRecipe
    from bayesbio.sbc.settings import SBCSettings

    def recipe(**identity):
        return FitterRecipe(normal_model, DATA, SBCSettings(**{k: v for k, v in SETTINGS.items() if k != "seed"}),
                            ["mu"], ["y"], {"y": DATA["y"]}, **identity)

    from bayesbio.infer._common import prepare
    from bayesbio.sbc.checkpoint import code_digest

    prepared, code = prepare(normal_model, DATA), code_digest(normal_model)
    assert recipe(fingerprint=prepared.fingerprint, model_code=code)() is not None
    with pytest.raises(DataError, match="data: a worker process loaded data with fingerprint"):
        recipe(fingerprint="0" * 16, model_code=code)()
    with pytest.raises(ModelError, match="model: a worker process loaded other code"):
        recipe(fingerprint=prepared.fingerprint, model_code="edited")()


def test_worker_processes_refuse_an_interactively_defined_model(monkeypatch):
    import sys
    import types

    def interactive_model(data):
        normal_model(data)

    interactive_model.__module__ = "__main__"
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))  # no __file__: a notebook
    with pytest.raises(OptionError, match="parallel='processes': the model is a function defined interactively"):
        bb.run_sbc(interactive_model, DATA, workers=2, parallel="processes", **SETTINGS)


def test_a_worker_process_error_is_raised_in_the_caller():
    from bayesbio.sbc.processes import as_finished_in_processes

    with pytest.raises(ZeroDivisionError):
        list(as_finished_in_processes(_divide_by_zero, lambda start: (start,), range(3), workers=2))


def _divide_by_zero():  # a recipe whose fitter cannot be built: the error reaches the caller
    return 1 / 0


class _FitterThatDies:
    def fit_batch(self, start):
        if start == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
        time.sleep(0.1)
        return start


class _UnpicklableError(Exception):
    def __init__(self, text):
        super().__init__(text)
        self.callback = lambda: None  # cannot be pickled back to the parent


class _FitterThatRaisesUnpicklable:
    def fit_batch(self, start):
        raise _UnpicklableError(f"solver exploded in batch {start}")


def test_a_killed_worker_process_is_reported_instead_of_waited_for():
    from bayesbio.sbc.processes import as_finished_in_processes

    got = []
    with pytest.raises(RuntimeError, match=r"died \(killed by signal 9 \(SIGKILL"):
        for item in as_finished_in_processes(_FitterThatDies, lambda start: (start,), range(6), workers=2,
                                             poll_seconds=0.2):
            got.append(item)
    assert (1, 1) not in got  # the killed batch is not reported as finished


def test_an_error_that_cannot_be_pickled_reaches_the_caller_as_its_text():
    from bayesbio.sbc.processes import as_finished_in_processes

    with pytest.raises(RuntimeError, match="_UnpicklableError: solver exploded in batch 0"):
        list(as_finished_in_processes(_FitterThatRaisesUnpicklable, lambda start: (start,), [0], workers=2))


def test_a_run_resumes_from_batches_that_finished_out_of_order(tmp_path):
    one = bb.run_sbc(normal_model, DATA, **SETTINGS)
    full, ckpt = _checkpoint_of(one, tmp_path)
    # batches 1 and 3 (replications 2, 3, 6, 7) finished; 0, 2 and 4 were in flight or waiting
    keep = np.array([2, 3, 6, 7])
    part = FitResult(draws={k: v[keep] for k, v in full.draws.items()}, divergences=full.divergences[keep],
                     mean_steps=full.mean_steps[keep], init_ok=full.init_ok[keep], replications=keep)
    save_progress(ckpt, _identity_of(ckpt), part, 1.0)
    resumed = bb.run_sbc(normal_model, DATA, checkpoint=ckpt, resume=True, workers=2, **SETTINGS)
    assert resumed.timings["resumed_after_replications"] == 4
    _assert_same(resumed, one)
    assert load_progress(ckpt, _identity_of(ckpt))[0].indices().tolist() == list(range(10))


def _checkpoint_of(result, tmp_path):
    """The fits of a complete run, from a checkpoint written by the same settings."""
    ckpt = tmp_path / CHECKPOINT_NAME
    bb.run_sbc(normal_model, DATA, checkpoint=ckpt, **SETTINGS)
    return load_progress(ckpt, _identity_of(ckpt))[0], ckpt


def _identity_of(path):
    import json

    with np.load(path) as f:
        saved = json.loads(str(f["identity"]))
    saved.pop("format")
    return saved


def test_as_finished_yields_each_batch_as_it_finishes():
    later_done = threading.Event()

    def fn(start):
        if start == 0:  # the first batch finishes only after batch 2 has finished
            assert later_done.wait(timeout=30)
        if start == 2:
            later_done.set()
        return start * 10

    got = list(_as_finished(fn, range(4), workers=3))
    assert sorted(got) == [(0, 0), (1, 10), (2, 20), (3, 30)]
    assert got.index((2, 20)) < got.index((0, 0))  # yielded as finished, not in order
    assert list(_as_finished(fn, range(4), workers=1)) == [(0, 0), (1, 10), (2, 20), (3, 30)]


def test_as_finished_raises_the_first_error_and_starts_nothing_more():
    started = []
    lock = threading.Lock()

    def fn(start):
        with lock:
            started.append(start)
        if start == 1:
            raise RuntimeError("solver blew up in batch 1")
        time.sleep(0.2)
        return start

    with pytest.raises(RuntimeError, match="batch 1"):
        for _ in _as_finished(fn, range(20), workers=2):
            pass
    time.sleep(0.5)  # let the other thread finish its call
    assert len(started) <= 4  # not all 20: the workers stopped taking batches


def test_parallel_must_be_threads_or_processes():
    with pytest.raises(OptionError, match="parallel: expected 'threads' or 'processes'; got 'fork'"):
        bb.run_sbc(normal_model, DATA, workers=2, parallel="fork", **SETTINGS)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_workers_must_be_a_positive_integer(bad):
    with pytest.raises(OptionError, match="workers: expected a positive integer"):
        bb.run_sbc(normal_model, DATA, workers=bad, **SETTINGS)
