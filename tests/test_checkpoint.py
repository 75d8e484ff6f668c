"""Checkpoint and resume: a run killed with SIGKILL resumes to bit-identical draws."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import sigkill_once_written

ARGS = [
    "fit", "lotka_volterra", "--chains", "2", "--warmup", "100", "--samples", "100",
    "--chain-method", "sequential", "--no-progress",
]


def _cli(*args, **kwargs):
    env = dict(os.environ, CI="true")
    return subprocess.Popen([sys.executable, "-m", "bayesbio.cli", *args], env=env, **kwargs)


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    import arviz as az

    full, part = tmp_path / "full.nc", tmp_path / "part.nc"
    ckpt = tmp_path / "part.nc.ckpt"
    assert _cli(*ARGS, "--out", str(full), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).wait(600) == 0

    proc = _cli(*ARGS, "--out", str(part), "--checkpoint-every", "50",
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sigkill_once_written(proc, ckpt)
    assert not part.exists(), "a killed run must leave no output file"

    resumed = _cli(*ARGS, "--out", str(part), "--checkpoint-every", "50", "--resume",
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err.decode()
    assert not ckpt.exists(), "the checkpoint is removed once the result is written"

    a, b = az.from_netcdf(full), az.from_netcdf(part)
    for name in a.posterior.data_vars:
        np.testing.assert_array_equal(a.posterior[name].values, b.posterior[name].values, err_msg=name)
    for name in ("diverging", "step_size", "n_steps", "energy", "lp"):
        np.testing.assert_array_equal(a.sample_stats[name].values, b.sample_stats[name].values, err_msg=name)


def test_resume_rejects_a_checkpoint_of_other_settings(tmp_path):
    import bayesbio as bb
    from bayesbio.errors import OptionError

    ckpt = tmp_path / "run.ckpt"
    bb.sample_nuts("lotka_volterra", chains=1, warmup=20, samples=20, chunk_size=10,
                   checkpoint=str(ckpt), checkpoint_every=10, progress=False)
    assert ckpt.exists()
    with pytest.raises(OptionError, match="seed"):
        bb.sample_nuts("lotka_volterra", chains=1, warmup=20, samples=20, chunk_size=10, seed=5,
                       checkpoint=str(ckpt), resume=True, progress=False)


def test_resume_without_checkpoint_file_is_a_clear_error(tmp_path):
    proc = _cli(*ARGS, "--out", str(tmp_path / "x.nc"), "--resume",
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert err.decode().startswith("error: --resume")
