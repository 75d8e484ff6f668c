"""Model discovery/loading and the command line (run as a subprocess, as a user would)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bayesbio as bb
from bayesbio.errors import ModelError

USER_MODEL = textwrap.dedent(
    '''
    """Exponential decay of a single species (test model)."""
    import jax.numpy as jnp
    import numpy as np
    import numpyro
    import numpyro.distributions as dist

    import bayesbio as bb

    dims = {"y": ["time"]}


    def coords(data):
        return {"time": np.asarray(data["ts"])}


    def load_data(path=None):
        ts = np.array([0.5, 1.0, 2.0, 4.0])
        return {"ts": ts, "y": 10.0 * np.exp(-0.4 * ts)}


    def model(data):
        k = numpyro.sample("k", dist.LogNormal(0.0, 1.0))
        y = bb.solve(lambda t, y, k: -k * y, jnp.array([10.0]), data["ts"], k)
        bb.observe("y", bb.LogNormalNoise(y[:, 0], 0.1), obs=data["y"])
    '''
)


def run_cli(*args, cwd, timeout=600):
    env = dict(os.environ, CI="true", BAYESBIO_CACHE_DIR="off")
    return subprocess.run(
        [sys.executable, "-m", "bayesbio.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def assert_usage_error(proc, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:"), proc.stderr
    for word in words:
        assert word in lines[0], proc.stderr


# ------------------------------------------------------------------------------------------
# models


def test_bundled_models_lists_lotka_volterra():
    models = bb.bundled_models()
    assert "lotka_volterra" in models
    assert models["lotka_volterra"]  # a one-line description


def test_load_bundled_model():
    spec = bb.load_model("lotka_volterra")
    data = spec.load_data(None)
    assert data["y"].shape == (20, 2) and data["ts"].shape == (20,)
    assert spec.dims["theta"] == ["parameter"]
    assert spec.coords_for(data)["parameter"] == ["alpha", "beta", "gamma", "delta"]


def test_load_unknown_model_raises_model_error():
    with pytest.raises(ModelError, match="no_such_model"):
        bb.load_model("no_such_model")


def test_load_missing_script_raises_model_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        bb.load_model(str(tmp_path / "missing.py"))


def test_user_model_script_loads_by_path(tmp_path):
    path = tmp_path / "decay.py"
    path.write_text(USER_MODEL)
    spec = bb.load_model(str(path))
    assert spec.name == "decay"
    assert spec.description.startswith("Exponential decay")
    data = spec.load_data()
    assert set(data) == {"ts", "y"}
    assert spec.coords_for(data)["time"] == [0.5, 1.0, 2.0, 4.0]


def test_data_argument_is_checked_as_a_file_unless_the_script_says_otherwise(tmp_path):
    from bayesbio.errors import DataError
    from bayesbio.infer._common import prepare

    path = tmp_path / "decay.py"
    path.write_text(USER_MODEL)
    with pytest.raises(DataError, match="'12' does not exist"):
        prepare(str(path), "12")
    # a script whose load_data takes a size, not a file: the string reaches load_data
    sized = USER_MODEL.replace("def load_data(path=None):\n", "def load_data(path=None):\n    n = 4 if path is None else int(path)\n")
    sized = sized.replace("ts = np.array([0.5, 1.0, 2.0, 4.0])", "ts = 0.5 * np.arange(1, n + 1)")
    path.write_text(sized + "\ndata_is_file = False\n")
    prepared = prepare(str(path), "12")
    assert prepared.data["ts"].shape == (12,)


def test_user_model_script_missing_functions_raises(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("def model(data):\n    pass\n")
    with pytest.raises(ModelError, match="load_data"):
        bb.load_model(str(path))


def test_user_model_script_import_error_raises_model_error(tmp_path):
    path = tmp_path / "bad_import.py"
    path.write_text("import no_such_module_xyz\n")
    with pytest.raises(ModelError, match="failed to import"):
        bb.load_model(str(path))


# ------------------------------------------------------------------------------------------
# command line


def test_cli_models_lists_lotka_volterra(tmp_path):
    proc = run_cli("models", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert any(line.startswith("lotka_volterra") for line in proc.stdout.splitlines()), proc.stdout


def test_cli_help(tmp_path):
    proc = run_cli("fit", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for option in ("--chains", "--warmup", "--samples", "--out", "--force", "--method"):
        assert option in proc.stdout


def test_cli_rejects_zero_chains(tmp_path):
    proc = run_cli("fit", "lotka_volterra", "--chains", "0", cwd=tmp_path)
    assert_usage_error(proc, "--chains")
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_rejects_unknown_dense_mass_choice(tmp_path):
    proc = run_cli("fit", "lotka_volterra", "--dense-mass", "maybe", cwd=tmp_path)
    assert_usage_error(proc, "--dense-mass", "maybe")


def test_cli_rejects_unknown_model(tmp_path):
    proc = run_cli("fit", "no_such_model", "--chains", "1", "--warmup", "1", "--samples", "1", cwd=tmp_path)
    assert_usage_error(proc, "no_such_model")
    assert not list(tmp_path.iterdir())


def test_cli_rejects_unknown_subcommand(tmp_path):
    proc = run_cli("sample", cwd=tmp_path)
    assert_usage_error(proc)


def test_cli_fit_writes_netcdf_and_refuses_to_overwrite(tmp_path):
    import arviz as az

    out = tmp_path / "tmp" / "lv.nc"
    args = ["fit", "lotka_volterra", "--chains", "2", "--warmup", "100", "--samples", "100",
            "--out", str(out)]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.is_file()
    assert f"wrote {out}" in proc.stdout
    idata = az.from_netcdf(out)
    theta = idata.posterior["theta"]
    assert theta.dims == ("chain", "draw", "parameter")
    assert theta.shape == (2, 100, 4)
    assert list(theta["parameter"].values) == ["alpha", "beta", "gamma", "delta"]
    assert idata.posterior.attrs["method"] == "nuts"
    assert idata.posterior.attrs["metric"] == "dense"  # --dense-mass auto: 8 parameters <= 32
    assert "solver_failures" in idata.sample_stats
    assert np.all(np.isfinite(theta.values))
    idata.close()
    # no temporary files left beside the output
    assert [p.name for p in out.parent.iterdir()] == ["lv.nc"]

    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    mtime = out.stat().st_mtime_ns
    again = run_cli(*args, cwd=tmp_path)
    assert_usage_error(again, "--force")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    assert out.stat().st_mtime_ns == mtime
