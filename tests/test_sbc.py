"""Simulation-based calibration: rank statistics, prior simulation, a tiny SBC run, the CLI, and
(slow tier) SBC of every bundled model that declares its SBC settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesbio as bb
from bayesbio.errors import ModelError, OptionError
from bayesbio.infer._common import prepare
from bayesbio.sbc import stats
from bayesbio.sbc.settings import SBCSettings, resolve_settings
from bayesbio.sbc.simulate import simulate

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------
# rank statistics (pure functions)


def test_ranks_count_draws_below_the_truth():
    draws = np.array([[0.1, 0.5, 0.9], [2.0, 3.0, 4.0]])
    np.testing.assert_array_equal(stats.ranks(np.array([0.6, 1.0]), draws), [2, 0])


def test_bins_have_exact_uniform_probabilities():
    counts, probs = stats.bin_ranks(np.arange(100), 99, 10)  # every rank once
    np.testing.assert_array_equal(counts, np.full(10, 10))
    np.testing.assert_allclose(probs, 0.1)
    _, probs = stats.bin_ranks(np.arange(7), 6, 3)  # 7 rank values over 3 bins: 3, 2, 2
    np.testing.assert_allclose(probs, np.array([3, 2, 2]) / 7)


def test_holm_matches_hand_computation():
    # sorted p: 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04)
    np.testing.assert_allclose(stats.holm([0.04, 0.01, 0.02]), [0.04, 0.03, 0.04])
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])


def exact_posterior_ranks(rng, reps, n_draws, *, sd_factor=1.0):
    """Normal-normal model mu ~ N(0, 1), y_i ~ N(mu, 1), i = 1..5: ranks from exact posterior
    draws (sd_factor = 1) or an overconfident 'posterior' (sd_factor < 1)."""
    mu = rng.standard_normal(reps)
    y = mu[:, None] + rng.standard_normal((reps, 5))
    post_mean = y.sum(axis=1) / 6.0
    post_sd = np.sqrt(1.0 / 6.0) * sd_factor
    draws = post_mean[:, None] + post_sd * rng.standard_normal((reps, n_draws))
    return stats.ranks(mu, draws)


def test_chi_square_accepts_exact_posteriors_and_rejects_overconfident_ones():
    rng = np.random.default_rng(1)
    p_exact = [stats.chi_square_uniformity(exact_posterior_ranks(rng, 200, 99), 99, 10)[2] for _ in range(20)]
    # under uniformity p ~ U(0, 1): 20 p-values all above 0.001 fails with probability ~2 %
    assert min(p_exact) > 0.001, p_exact
    # a posterior half as wide as it should be piles ranks at both ends (Talts et al. Fig. 4)
    p_narrow = stats.chi_square_uniformity(exact_posterior_ranks(rng, 200, 99, sd_factor=0.5), 99, 10)[2]
    assert p_narrow < 1e-6


def test_ecdf_band_has_its_simultaneous_coverage():
    band = stats.ecdf_band(100, 49, level=0.95, seed=3)
    rng = np.random.default_rng(7)
    inside = np.mean([stats.ecdf_in_band(rng.integers(0, 50, 100), 49, band) for _ in range(1000)])
    # binomial standard error of a 0.95 coverage from 1000 trials ~ 0.007; 0.03 is > 4 of them
    assert abs(inside - 0.95) < 0.03, inside
    assert 0 < band.gamma < 0.05  # adjusted pointwise level is below the simultaneous one


# ------------------------------------------------------------------------------------------
# settings


def test_settings_precedence_and_validation():
    s = resolve_settings({"reps": 50, "thin": 2}, {"reps": 7, "thin": None}, model_name="m")
    assert (s.reps, s.thin, s.warmup) == (7, 2, SBCSettings().warmup)
    with pytest.raises(ModelError, match="'rep'"):
        resolve_settings({"rep": 5}, None, model_name="m")
    with pytest.raises(OptionError, match="'draws'"):
        resolve_settings(None, {"draws": 0})
    with pytest.raises(OptionError, match="'alpha'"):
        resolve_settings(None, {"alpha": 1.5})


# ------------------------------------------------------------------------------------------
# prior simulation: draws whose solve fails are outside the model's support


def blowup_model(data):
    # y' = k y^2, y(0) = 1 blows up at t = 1/k; the solve to t = 2 fails for k > 0.5
    k = numpyro.sample("k", dist.LogNormal(jnp.log(0.3), 1.0))
    y = bb.solve(lambda t, y, k: k * y**2, jnp.array([1.0]), data["ts"], k, max_steps=256)
    bb.observe("y", bb.NormalNoise(y[:, 0], 0.2), obs=data["y"])


BLOWUP_DATA = {"ts": np.array([0.5, 1.0, 1.5, 2.0]), "y": np.array([1.2, 1.4, 1.8, 2.5])}


def test_simulation_rejects_prior_draws_whose_solve_fails():
    import jax

    prepared = prepare(blowup_model, BLOWUP_DATA)
    sim = simulate(prepared, jax.random.PRNGKey(0), 40, params=["k"])
    k = sim.params["k"]
    assert k.shape == (40,) and sim.observations["y"].shape == (40, 4)
    # P(k > 0.5) under LogNormal(log 0.3, 1) = 1 - Phi(log(0.5/0.3)) = 0.31: some draws are rejected
    assert sim.rejected > 0 and sim.attempts == 40 + sim.rejected
    assert np.all(k < 0.5 + 1e-9)
    assert np.all(np.isfinite(sim.observations["y"]))


def test_model_with_only_failing_prior_draws_is_a_clear_error():
    def always_fails(data):
        k = numpyro.sample("k", dist.LogNormal(jnp.log(5.0), 0.01))  # blows up at t = 0.2 < 2
        y = bb.solve(lambda t, y, k: k * y**2, jnp.array([1.0]), data["ts"], k, max_steps=256)
        bb.observe("y", bb.NormalNoise(y[:, 0], 0.2), obs=data["y"])

    with pytest.raises(ModelError, match="max_prior_attempts"):
        bb.run_sbc(always_fails, BLOWUP_DATA, reps=4, max_prior_attempts=2)


def test_model_with_a_factor_term_is_refused():
    def with_factor(data):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.factor("soft", -(mu**2))
        bb.observe("y", bb.NormalNoise(mu, 1.0).expand([3]), obs=data["y"])

    with pytest.raises(ModelError, match="soft"):
        bb.run_sbc(with_factor, {"y": np.zeros(3)}, reps=4)


# ------------------------------------------------------------------------------------------
# a tiny SBC run (smoke test) and its files


def normal_model(data):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.LogNormal(0.0, 0.5))
    bb.observe("y", bb.NormalNoise(jnp.full(data["y"].shape, mu), sigma), obs=data["y"])


NORMAL_DATA = {"y": np.array([0.3, -0.2, np.nan, 0.8, 0.1])}  # the NaN record stays missing


@pytest.fixture(scope="module")
def tiny_sbc():
    return bb.run_sbc(normal_model, NORMAL_DATA, reps=24, warmup=100, draws=19, thin=2, batch=8, bins=5, seed=2)


def test_tiny_sbc_result(tiny_sbc):
    r = tiny_sbc
    assert list(r.ranks) == ["mu", "sigma"]
    for v in r.ranks.values():
        assert v.shape == (24,) and v.min() >= 0 and v.max() <= 19
    assert r.n_draws == 19 and r.dof == 4
    assert all(0.0 <= p <= 1.0 for p in r.p_values.values())
    assert all(r.p_holm[k] >= r.p_values[k] for k in r.ranks)
    assert r.init_failures == 0 and r.divergences.shape == (24,)
    # the ranks are not degenerate: 24 fits of a calibrated sampler spread over the rank range
    assert len(np.unique(r.ranks["mu"])) > 5
    assert r.table().shape == (2, 4)


@pytest.mark.slow  # a second compilation (~1 min on a busy 2-core machine)
def test_tiny_sbc_is_reproducible_and_independent_of_batching(tiny_sbc):
    again = bb.run_sbc(normal_model, NORMAL_DATA, reps=24, warmup=100, draws=19, thin=2, batch=3, bins=5, seed=2)
    for k in tiny_sbc.ranks:
        np.testing.assert_array_equal(again.ranks[k], tiny_sbc.ranks[k])


def test_sbc_writes_results_atomically_and_refuses_to_overwrite(tiny_sbc, tmp_path):
    out = tmp_path / "sbc"
    tiny_sbc.write(out, command="bayesbio sbc test")
    assert sorted(p.name for p in out.iterdir()) == ["ecdf_difference.png", "ranks.png", "sbc.json", "summary.md"]
    payload = json.loads((out / "sbc.json").read_text())
    assert payload["model"] == "normal_model" and payload["command"] == "bayesbio sbc test"
    assert payload["settings"]["reps"] == 24 and len(payload["ranks"]["mu"]) == 24
    assert {p["name"] for p in payload["parameters"]} == {"mu", "sigma"}
    assert (out / "ranks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| mu |" in (out / "summary.md").read_text()
    with pytest.raises(OptionError, match="force"):
        tiny_sbc.write(out)
    tiny_sbc.write(out, force=True)


def locked_model(data):
    # like a Gent law's locking stretch: the mean is undefined (NaN) for jm below 20, and every
    # start in the unconstrained (-2, 2) box has jm = exp(u) < 7.4
    jm = numpyro.sample("jm", dist.LogNormal(jnp.log(100.0), 0.2))
    mean = jnp.where(jm > 20.0, jnp.log(jm), jnp.nan)
    bb.observe("y", bb.NormalNoise(jnp.full(3, mean), 0.5), obs=data["y"])


@pytest.mark.slow  # compiles a sampler (~1 min on a busy 2-core machine)
def test_sbc_starts_from_a_prior_draw_where_the_uniform_box_has_no_valid_point():
    r = bb.run_sbc(locked_model, {"y": np.zeros(3)}, reps=4, warmup=50, draws=9, thin=1, batch=2, bins=2)
    assert r.init_failures == 0  # every fit found a finite start (a prior draw)
    assert np.all(r.mean_steps > 0)


def sharp_model(data):
    # a wide prior and a very informative likelihood: posterior sd 1e-3 around the truth, which is
    # typically ~8 prior units from any start in the unconstrained (-2, 2) box
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    bb.observe("y", bb.NormalNoise(jnp.full(4, mu), 2e-3), obs=data["y"])


def test_sbc_init_truth_starts_every_chain_at_its_replication_truth():
    from bayesbio.sbc.fit import BatchFitter

    prepared = prepare(sharp_model, {"y": np.zeros(4)})
    s = resolve_settings(None, {"reps": 4, "warmup": 0, "draws": 2, "thin": 1, "batch": 4, "init": "truth"})
    sim = simulate(prepared, jax.random.PRNGKey(3), 4, params=["mu"])
    fitter = BatchFitter(prepared, list(sim.observations), ["mu"], s, {k: v[0] for k, v in sim.observations.items()})
    fits = fitter.fit(jax.random.split(jax.random.PRNGKey(4), 4), sim.observations, truths=sim.params)
    truth = sim.params["mu"][:, None]
    # without warm-up NumPyro keeps its initial step size (1.0) against a posterior sd of 1e-3, so
    # every transition diverges and the chains stay at their start: draws within 0.05 of the truth
    # mean the chains started there (a start in the (-2, 2) box leaves them 1-8 units away)
    assert np.all(np.abs(fits.draws["mu"] - truth) < 0.05), (fits.draws["mu"], truth)
    with pytest.raises(OptionError, match="'init'"):
        resolve_settings(None, {"init": "prior"})


def test_sbc_rejects_unknown_parameter_names():
    with pytest.raises(OptionError, match="'params'"):
        bb.run_sbc(normal_model, NORMAL_DATA, reps=2, params=["tau"])


# ------------------------------------------------------------------------------------------
# command line


def run_cli(*args, cwd, timeout=3600, stderr=subprocess.PIPE):
    env = dict(os.environ, CI="true", BAYESBIO_CACHE_DIR="off")
    return subprocess.run([sys.executable, "-m", "bayesbio.cli", *args], check=False, cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=timeout)


# (bad numbers such as `bayesbio sbc MODEL --reps 0` are in tests/test_error_catalogue.py)


def test_cli_sbc_refuses_to_overwrite_results_before_running(tmp_path, monkeypatch, capsys):
    from bayesbio.cli import main

    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "sbc.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))  # main() may set it
    assert main(["sbc", "lotka_volterra", "--out", "res"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--force" in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "res" / "sbc.json").read_text() == "{}"


@pytest.mark.slow  # compiles a sampler in a fresh process (~1 min on a busy 2-core machine)
def test_cli_sbc_tiny_run_on_a_model_script(tmp_path):
    script = tmp_path / "normal.py"
    script.write_text(
        "import jax.numpy as jnp, numpy as np, numpyro, numpyro.distributions as dist\n"
        "import bayesbio as bb\n"
        "sbc = {'reps': 8, 'warmup': 60, 'draws': 9, 'thin': 2, 'batch': 4, 'bins': 5}\n"
        "def load_data(path=None):\n    return {'y': np.array([0.1, 0.4, -0.3])}\n"
        "def model(data):\n"
        "    mu = numpyro.sample('mu', dist.Normal(0.0, 1.0))\n"
        "    bb.observe('y', bb.NormalNoise(jnp.full(3, mu), 0.5), obs=data['y'])\n"
    )
    # two worker processes, each loading the script (the thread path is tested in-process)
    proc = run_cli("sbc", str(script), "--out", "res", "--no-progress", "--workers", "2", "--parallel", "processes",
                   cwd=tmp_path, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1 = calibration failed (8 reps: unlikely)
    payload = json.loads((tmp_path / "res" / "sbc.json").read_text())
    assert payload["settings"]["reps"] == 8 and payload["command"].startswith("bayesbio sbc")
    assert payload["workers"] == 2 and "--workers 2" in payload["command"]
    assert payload["parallel"] == "processes" and "--parallel processes" in payload["command"]
    again = run_cli("sbc", str(script), "--out", "res", cwd=tmp_path, timeout=600)
    assert again.returncode == 2 and "--force" in again.stderr, again.stderr


# ------------------------------------------------------------------------------------------
# slow tier: SBC of every bundled model with its own settings (``sbc = {...}`` in the script)

#: Fewest replications accepted per model; 200 unless a (large) model is registered here.
MIN_REPS: dict[str, int] = {}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(bb.bundled_models()))
def test_sbc_of_bundled_model_passes(name, tmp_path):
    """``bayesbio sbc NAME`` with the model's settings passes (every Holm-adjusted p >= 0.01).

    Set ``BAYESBIO_SBC_RESULTS=benchmarks/results/sbc`` to keep the results there (that is how
    the committed results were produced)."""
    spec = bb.load_model(name)
    if not spec.sbc:
        pytest.skip(f"model '{name}' defines no `sbc = {{...}}` settings yet; add them to run its SBC")
    keep = os.environ.get("BAYESBIO_SBC_RESULTS")
    out = (Path(keep) if keep else tmp_path) / name
    out_arg = os.path.relpath(out, REPO) if keep else str(out)
    # with BAYESBIO_SBC_RESULTS set, the progress bar goes to this process's stderr (pytest -s)
    progress = ["--progress"] if keep else ["--no-progress"]
    # one worker per core: the fits do not depend on the worker count (tests/test_sbc_workers.py)
    workers = ["--workers", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)]
    proc = run_cli("sbc", name, "--out", out_arg, "--force", *progress, *workers, cwd=REPO, timeout=4 * 3600,
                   stderr=None if keep else subprocess.PIPE)
    assert proc.returncode in (0, 1), (proc.stderr or "")[-3000:]
    payload = json.loads((out / "sbc.json").read_text())
    assert payload["settings"]["reps"] >= MIN_REPS.get(name, 200)
    table = "\n".join(f"{p['name']}: p={p['p_value']:.3f} holm={p['p_holm']:.3f}" for p in payload["parameters"])
    assert payload["passed"] and proc.returncode == 0, table
    assert min(p["p_holm"] for p in payload["parameters"]) >= 0.01, table
