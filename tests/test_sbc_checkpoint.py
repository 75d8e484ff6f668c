"""SBC checkpoint and resume: the finished fits are kept after every batch, a killed SBC run
resumes where it stopped, and the resumed result is bit-identical to an uninterrupted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesbio as bb
import bayesbio.sbc.run as sbc_run
from bayesbio.errors import OptionError
from bayesbio.sbc.checkpoint import CHECKPOINT_NAME, load_progress, save_progress
from bayesbio.sbc.fit import FitResult
from conftest import sigkill_once_written


def normal_model(data):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.LogNormal(0.0, 0.5))
    bb.observe("y", bb.NormalNoise(jnp.full(data["y"].shape, mu), sigma), obs=data["y"])


DATA = {"y": np.array([0.3, -0.2, 0.8, 0.1])}
SETTINGS = dict(reps=10, warmup=60, draws=9, thin=2, batch=4, bins=5, seed=3)  # last batch: 2 of 4


class Killed(BaseException):
    """Stands in for SIGKILL inside the process: raised right after a checkpoint is written."""


def test_resumed_sbc_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    ckpt = tmp_path / CHECKPOINT_NAME
    full = bb.run_sbc(normal_model, DATA, **SETTINGS)

    calls = []

    def save_then_die(*args, **kwargs):
        save_progress(*args, **kwargs)
        calls.append(len(args[2].divergences))
        raise Killed

    monkeypatch.setattr(sbc_run, "save_progress", save_then_die)
    with pytest.raises(Killed):
        bb.run_sbc(normal_model, DATA, checkpoint=ckpt, **SETTINGS)
    monkeypatch.undo()
    assert calls == [4]  # one batch of 4 was saved before the "kill"
    kept, seconds_kept = load_progress(ckpt, _identity_of(ckpt))
    assert len(kept.divergences) == 4 and seconds_kept > 0

    resumed = bb.run_sbc(normal_model, DATA, checkpoint=ckpt, resume=True, **SETTINGS)
    assert resumed.timings["resumed_after_replications"] == 4
    assert resumed.timings["fit_seconds"] > seconds_kept  # the killed run's fitting time is counted
    _assert_same(resumed, full)
    # the checkpoint was updated after every batch of the resumed run, the short last one included
    assert len(load_progress(ckpt, _identity_of(ckpt))[0].divergences) == 10
    # resuming from a complete checkpoint fits nothing and gives the same result again
    again = bb.run_sbc(normal_model, DATA, checkpoint=ckpt, resume=True, **SETTINGS)
    assert again.timings["resumed_after_replications"] == 10
    _assert_same(again, full)
    # a checkpoint is not replaced by a new run unless asked to
    with pytest.raises(OptionError, match="checkpoint: .*resume=True.*force=True"):
        bb.run_sbc(normal_model, DATA, checkpoint=ckpt, **SETTINGS)


def _assert_same(a, b):  # same machine, same seed: bit for bit
    for k in b.ranks:
        np.testing.assert_array_equal(a.ranks[k], b.ranks[k], err_msg=k)
    np.testing.assert_array_equal(a.divergences, b.divergences)
    np.testing.assert_array_equal(a.mean_steps, b.mean_steps)
    assert a.p_holm == b.p_holm


def _identity_of(path):
    with np.load(path) as f:
        saved = json.loads(str(f["identity"]))
    saved.pop("format")
    return saved


def _fits(n):
    return FitResult(draws={"mu": np.arange(n * 3.0).reshape(n, 3)}, divergences=np.zeros(n, int),
                     mean_steps=np.ones(n), init_ok=np.ones(n, bool))


IDENTITY = {"model": "m", "model_code": "c0de", "settings": {"reps": 8, "batch": 4}, "seed": 0,
            "data_fingerprint": "abc", "x64": True, "backend": "cpu", "versions": {"jax": "0.10.0"}}


def test_checkpoint_round_trip_is_exact(tmp_path):
    path = tmp_path / "c.npz"
    save_progress(path, IDENTITY, _fits(4), 12.5)
    fits, seconds = load_progress(path, IDENTITY)
    np.testing.assert_array_equal(fits.draws["mu"], _fits(4).draws["mu"])
    assert fits.init_ok.dtype == bool and seconds == 12.5
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left behind


@pytest.mark.parametrize("field, value, named", [
    ("seed", 1, "seed"), ("data_fingerprint", "xyz", "data_fingerprint"), ("model", "other", "model"),
    ("model_code", "edited", "model_code"), ("settings", {"reps": 8, "batch": 2}, "settings.batch"),
    ("x64", False, "x64"), ("backend", "gpu", "backend"), ("versions", {"jax": "0.10.1"}, "versions.jax"),
])
def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, field, value, named):
    path = tmp_path / "c.npz"
    save_progress(path, IDENTITY, _fits(4), 1.0)
    with pytest.raises(OptionError, match=f"resume: .*different SBC run \\({named}: checkpoint") as err:
        load_progress(path, dict(IDENTITY, **{field: value}))
    assert str(err.value).count(": checkpoint ") == 1  # only the field that differs is named


def _truncated(path):
    save_progress(path, IDENTITY, _fits(4), 1.0)
    path.write_bytes(path.read_bytes()[:100])


def _not_a_mapping(path):
    with open(path, "wb") as fh:
        np.savez(fh, identity=np.asarray("[1, 2]"))


@pytest.mark.parametrize("spoil", [
    lambda p: p.write_bytes(b"not a checkpoint"), lambda p: p.write_bytes(b""), _truncated, _not_a_mapping,
    lambda p: None,  # missing
], ids=["junk", "empty", "truncated", "identity-not-a-mapping", "missing"])
def test_resume_refuses_an_unreadable_checkpoint(tmp_path, spoil):
    path = tmp_path / "c.npz"
    spoil(path)
    with pytest.raises(OptionError, match="not a readable SBC checkpoint"):
        load_progress(path, IDENTITY)


def test_a_checkpoint_of_the_first_format_is_read_as_the_first_fits(tmp_path):
    # format 1 (before 2026-12-05): no replication numbers; the fits are replications 0 .. n - 1
    path = tmp_path / "c.npz"
    fits = _fits(4)
    with open(path, "wb") as fh:
        np.savez(fh, **{"draw:mu": fits.draws["mu"]}, divergences=fits.divergences, mean_steps=fits.mean_steps,
                 init_ok=fits.init_ok, fit_seconds=np.asarray(3.0),
                 identity=np.asarray(json.dumps(dict(IDENTITY, format=1), sort_keys=True)))
    loaded, seconds = load_progress(path, IDENTITY)
    assert loaded.indices().tolist() == [0, 1, 2, 3] and seconds == 3.0
    np.testing.assert_array_equal(loaded.draws["mu"], fits.draws["mu"])


def test_resume_refuses_a_checkpoint_of_an_unknown_format_or_with_unordered_replications(tmp_path):
    path = tmp_path / "c.npz"
    save_progress(path, IDENTITY, _fits(2), 1.0)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["identity"] = np.asarray(json.dumps(dict(IDENTITY, format=99), sort_keys=True))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(OptionError, match="format 99"):
        load_progress(path, IDENTITY)
    fits = _fits(2)
    save_progress(path, IDENTITY, FitResult(fits.draws, fits.divergences, fits.mean_steps, fits.init_ok,
                                            replications=np.array([5, 1])), 1.0)
    with pytest.raises(OptionError, match="not increasing"):
        load_progress(path, IDENTITY)


def test_resume_refuses_draws_of_other_sites_or_shapes(tmp_path):
    from bayesbio.sbc.checkpoint import check_draws

    fits = _fits(4)  # draws of "mu": (4, 3)
    check_draws(tmp_path, fits, {"mu": (3,)})
    with pytest.raises(OptionError, match="holds draws of \\['mu'\\]"):
        check_draws(tmp_path, fits, {"mu": (3,), "sigma": (3,)})
    with pytest.raises(OptionError, match="draws of 'mu' have shape"):
        check_draws(tmp_path, fits, {"mu": (5,)})


def test_resume_needs_a_checkpoint_path():
    with pytest.raises(OptionError, match="resume"):
        bb.run_sbc(normal_model, DATA, resume=True, **SETTINGS)


def test_fit_refuses_finished_replications_that_are_not_whole_batches():
    from bayesbio.infer._common import prepare
    from bayesbio.sbc.fit import BatchFitter
    from bayesbio.sbc.settings import resolve_settings

    prepared = prepare(normal_model, DATA)
    s = resolve_settings(None, {"reps": 8, "batch": 4, "warmup": 0, "draws": 1, "thin": 1})
    fitter = BatchFitter(prepared, ["y"], ["mu"], s, {"y": DATA["y"]})
    keys = np.zeros((8, 2), np.uint32)
    with pytest.raises(ValueError, match="whole batches"):
        fitter.fit(keys, {"y": np.zeros((8, 4))}, done=_fits(3))  # raised before anything is compiled


# ------------------------------------------------------------------------------------------
# command line

SCRIPT = (
    "import jax.numpy as jnp, numpy as np, numpyro, numpyro.distributions as dist\n"
    "import bayesbio as bb\n"
    # 64 batches of one fit of ~1,500 iterations: long enough after the first checkpoint to be killed mid-run
    "sbc = {'reps': 64, 'warmup': 500, 'draws': 19, 'thin': 50, 'batch': 1, 'bins': 5}\n"
    "def load_data(path=None):\n    return {'y': np.array([0.1, 0.4, -0.3])}\n"
    "def model(data):\n"
    "    mu = numpyro.sample('mu', dist.Normal(0.0, 1.0))\n"
    "    bb.observe('y', bb.NormalNoise(jnp.full(3, mu), 0.5), obs=data['y'])\n"
)


def _cli(*args, cwd, **kwargs):
    env = dict(os.environ, CI="true", BAYESBIO_CACHE_DIR="off")
    return subprocess.Popen([sys.executable, "-m", "bayesbio.cli", *args], cwd=cwd, env=env, **kwargs)


def test_cli_resume_without_checkpoint_and_unfinished_run_are_clear_errors(tmp_path):
    (tmp_path / "normal.py").write_text(SCRIPT)
    proc = _cli("sbc", "normal.py", "--out", "res", "--resume", cwd=tmp_path, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and err.decode().startswith("error: --resume"), err.decode()
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / CHECKPOINT_NAME).write_bytes(b"x")
    proc = _cli("sbc", "normal.py", "--out", "res", cwd=tmp_path, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "unfinished SBC run" in err.decode() and "--resume" in err.decode()
    assert (tmp_path / "res" / CHECKPOINT_NAME).read_bytes() == b"x"  # left as it was
    # resuming from a spoilt checkpoint is a one-line error; a killed write's temporary file is cleared
    stale = tmp_path / "res" / f".{CHECKPOINT_NAME}.x1y2.tmp"
    stale.write_bytes(b"partial")
    proc = _cli("sbc", "normal.py", "--out", "res", "--resume", cwd=tmp_path, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=300)
    err = err.decode().strip()
    assert proc.returncode == 2 and err.startswith("error: resume:") and len(err.splitlines()) == 1, err
    assert "not a readable SBC checkpoint" in err and not stale.exists()


@pytest.mark.slow  # three sampler compilations in fresh processes (~1-2 min on a busy 2-core machine)
def test_cli_sbc_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    (tmp_path / "normal.py").write_text(SCRIPT)
    full = _cli("sbc", "normal.py", "--out", "full", "--no-progress", cwd=tmp_path,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert full.wait(600) in (0, 1), full.stderr.read().decode()[-2000:]

    ckpt = tmp_path / "part" / CHECKPOINT_NAME
    proc = _cli("sbc", "normal.py", "--out", "part", "--no-progress", cwd=tmp_path,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sigkill_once_written(proc, ckpt)
    assert not (tmp_path / "part" / "sbc.json").exists()

    resumed = _cli("sbc", "normal.py", "--out", "part", "--resume", "--no-progress", cwd=tmp_path,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode in (0, 1), err.decode()[-2000:]
    assert not ckpt.exists(), "the checkpoint is removed once the results are written"
    a = json.loads((tmp_path / "full" / "sbc.json").read_text())
    b = json.loads((tmp_path / "part" / "sbc.json").read_text())
    assert 0 < b["timings"]["resumed_after_replications"] < 64
    assert a["ranks"] == b["ranks"] and a["fits"] == b["fits"] and a["parameters"] == b["parameters"]
