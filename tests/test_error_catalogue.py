"""Catalogue of malformed inputs: each gives a bayesbio error that names the offending field.

Every row of :data:`CASES` is a :class:`Case`: a call with one malformed input, the *exact*
exception type expected (a :mod:`bayesbio.errors` type, so a ``ValueError``), and words the
message must contain (the field's name, the column, the option). Every row of
:data:`CLI_CASES` is a command line that must end with exit status 2 and a one-line
``error: ...`` message naming the option.

To extend the catalogue, append rows (a ``Case(id, call, error, fields)``; ``call`` receives
a temporary folder) to ``CASES`` or ``CLI_CASES`` in the section of your area, e.g.::

    CASES += [
        Case("pop-negative-dose", lambda tmp: ..., DataError, ("AMT",)),
    ]
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

import bayesbio as bb
from bayesbio.errors import BayesbioError, DataError, ModelError, OptionError, SolverError
from bayesbio.ode import solve_with_status


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[Path], Any]
    error: type
    fields: tuple[str, ...]


CASES: list[Case] = []
#: (id, argv, words in the one-line error message); ``argv`` may contain ``{tmp}``.
CLI_CASES: list[tuple[str, list[str], tuple[str, ...]]] = []


# ------------------------------------------------------------------------------------------
# helpers


def lv_data(**changes):
    data = {k: np.array(v, dtype=float) for k, v in bb.load_model("lotka_volterra").load_data(None).items()}
    data.update(changes)
    return data


def nuts(model="lotka_volterra", data=None, **options):
    """sample_nuts with tiny settings: every case must fail before anything is compiled."""
    settings = dict(chains=1, warmup=1, samples=1, progress=False)
    settings.update(options)
    return bb.sample_nuts(model, data, **settings)


def lv_with(**changes):
    return lambda tmp: nuts(data=lv_data(**changes))


def in_model(fn):
    """Run ``fn()`` inside a seeded NumPyro trace, as a model would call it."""

    def call(tmp):
        with handlers.trace(), handlers.seed(rng_seed=0):
            return fn()

    return call


def decay(t, y, k):
    return -k * y


def solve(**changes):
    args = dict(rhs=decay, y0=jnp.array([1.0]), ts=jnp.array([0.5, 1.0]), params=0.3)
    args.update(changes)
    rhs, y0, ts, params = args.pop("rhs"), args.pop("y0"), args.pop("ts"), args.pop("params")
    return lambda tmp: solve_with_status(rhs, y0, ts, params, **args)


LV_CSV_HEADER = "year,hare_pelts_thousands,lynx_pelts_thousands"
LV_CSV_ROWS = ["1900,30,4", "1901,47.2,6.1", "1902,70.2,9.8", "1903,77.4,35.2"]


def lv_csv(rows=None, header=LV_CSV_HEADER, *, via="nuts"):
    """Write a lynx–hare CSV and give it to the model (through sample_nuts, or load_data)."""

    def call(tmp):
        path = tmp / "pelts.csv"
        path.write_text("\n".join([header, *(LV_CSV_ROWS if rows is None else rows)]) + "\n")
        if via == "load_data":
            return bb.load_model("lotka_volterra").load_data(str(path))
        return nuts(data=str(path))

    return call


def model_with_prior(prior):
    def model(data):
        theta = numpyro.sample("theta", prior())
        bb.observe("y", bb.NormalNoise(jnp.full(3, theta), 1.0), obs=data["y"])

    return lambda tmp: nuts(model, {"y": np.zeros(3)})


# ------------------------------------------------------------------------------------------
# model data dicts (validate_data, bb.solve and bb.observe checks through the runners)

CASES += [
    Case("data-not-a-dict", lambda tmp: nuts(data=[1.0, 2.0]), DataError, ("data", "dict")),
    Case("data-empty-dict", lambda tmp: nuts(data={}), DataError, ("empty",)),
    Case("data-field-text", lv_with(y=np.array(["a"] * 40).reshape(20, 2)), DataError, ("'y'", "numeric")),
    Case("data-field-empty", lv_with(ts=np.array([])), DataError, ("'ts'", "empty")),
    Case("data-field-object", lv_with(ts=np.array([1.0, "x"], dtype=object)), DataError, ("'ts'",)),
    Case("data-missing-field", lambda tmp: nuts(data={k: v for k, v in lv_data().items() if k != "y"}),
         DataError, ("'y'", "no field")),
    Case("data-ts-nan", lv_with(ts=np.r_[np.nan, np.arange(2.0, 21.0)]), SolverError, ("'ts'", "NaN")),
    Case("data-ts-inf", lv_with(ts=np.r_[np.arange(1.0, 20.0), np.inf]), SolverError, ("'ts'",)),
    Case("data-ts-unsorted", lv_with(ts=np.r_[2.0, 1.0, np.arange(3.0, 21.0)]), SolverError, ("'ts'", "sorted")),
    Case("data-ts-2d", lv_with(ts=np.arange(1.0, 21.0).reshape(4, 5)), SolverError, ("'ts'", "1-D")),
    Case("data-y-negative", lv_with(y=-np.ones((20, 2))), DataError, ("'y'", "non-positive")),
    Case("data-y-zero", lv_with(y=np.zeros((20, 2))), DataError, ("'y'", "non-positive")),
    Case("data-y-wrong-shape", lv_with(y=np.ones((20, 3))), DataError, ("'y'", "shape")),
    Case("data-y-inf", lv_with(y=np.full((20, 2), np.inf)), DataError, ("'y'", "inf")),
    Case("data-y-all-nan", lv_with(y=np.full((20, 2), np.nan)), DataError, ("'y'", "NaN")),
    Case("data-y-init-negative", lv_with(y_init=np.array([-1.0, 4.0])), DataError, ("'y_init'",)),
    Case("data-nested-text", lambda tmp: nuts(data=dict(lv_data(), extra={"x": np.array(["a"])})),
         DataError, ("'x'",)),
]

# ------------------------------------------------------------------------------------------
# bb.solve / solve_with_status arguments

CASES += [
    Case("solve-ts-text", solve(ts=["a", "b"]), SolverError, ("'ts'", "numeric")),
    Case("solve-y0-text", solve(y0=["x"]), SolverError, ("'y0'", "numeric")),
    Case("solve-y0-empty", solve(y0=jnp.zeros(0)), SolverError, ("'y0'",)),
    Case("solve-y0-2d", solve(y0=jnp.ones((2, 2))), SolverError, ("'y0'", "1-D")),
    Case("solve-y0-inf", solve(y0=jnp.array([jnp.inf])), SolverError, ("'y0'", "inf")),
    Case("solve-ts-empty", solve(ts=jnp.zeros(0)), SolverError, ("'ts'",)),
    Case("solve-ts-before-t0", solve(ts=jnp.array([0.5, 1.0]), t0=1.0), SolverError, ("t0",)),
    Case("solve-t0-nan", solve(t0=math.nan), SolverError, ("'t0'",)),
    Case("solve-rtol-nan", solve(rtol=math.nan), OptionError, ("'rtol'",)),
    Case("solve-rtol-text", solve(rtol="1e-6"), OptionError, ("'rtol'",)),
    Case("solve-atol-bool", solve(atol=True), OptionError, ("'atol'",)),
    Case("solve-max-steps-float", solve(max_steps=100.5), OptionError, ("'max_steps'",)),
    Case("solve-max-steps-negative", solve(max_steps=-5), OptionError, ("'max_steps'",)),
    Case("solve-solver-wrong-type", solve(solver=3), OptionError, ("'solver'",)),
    Case("solve-solver-unknown", solve(solver="euler9"), OptionError, ("'solver'",)),
    Case("solve-sensitivity-unknown", solve(sensitivity="reverse"), OptionError, ("'sensitivity'",)),
    Case("solve-rhs-not-callable", solve(rhs=3.0), SolverError, ("'rhs'",)),
    Case("solve-rhs-raises", solve(rhs=lambda t, y, k: y @ jnp.ones((3, 3))), SolverError, ("rhs",)),
    Case("solve-params-text", solve(params={"k": "fast"}), SolverError, ("params['k']",)),
]

# ------------------------------------------------------------------------------------------
# observation (noise) models and bb.observe

PRED = jnp.ones(3)
CASES += [
    Case("noise-normal-negative-sigma", lambda tmp: bb.NormalNoise(PRED, -1.0), ModelError, ("'sigma'",)),
    Case("noise-normal-zero-sigma", lambda tmp: bb.NormalNoise(PRED, 0.0), ModelError, ("'sigma'",)),
    Case("noise-lognormal-nan-sigma", lambda tmp: bb.LogNormalNoise(PRED, math.nan), ModelError, ("'sigma'",)),
    Case("noise-studentt-zero-df", lambda tmp: bb.StudentTNoise(PRED, 1.0, df=0.0), ModelError, ("'df'",)),
    Case("noise-combined-negative-a", lambda tmp: bb.CombinedNoise(PRED, -0.1, 0.2), ModelError, ("'a'",)),
    Case("noise-proportional-text-b", lambda tmp: bb.ProportionalNoise(PRED, "x"), ModelError, ("'b'",)),
    Case("noise-censored-bad-base", lambda tmp: bb.LeftCensored(PRED, 0.1, False),
         DataError, ("'base'",)),
    Case("observe-shape-mismatch", in_model(lambda: bb.observe("conc", bb.NormalNoise(PRED, 1.0), obs=np.ones(4))),
         DataError, ("'conc'", "shape")),
    Case("observe-text", in_model(lambda: bb.observe("conc", bb.NormalNoise(PRED, 1.0), obs=["a", "b", "c"])),
         DataError, ("'conc'", "numeric")),
    Case("observe-lognormal-negative",
         in_model(lambda: bb.observe("conc", bb.LogNormalNoise(PRED, 0.1), obs=np.array([1.0, -2.0, 3.0]))),
         DataError, ("'conc'", "non-positive")),
    Case("observe-inf", in_model(lambda: bb.observe("conc", bb.NormalNoise(PRED, 1.0), obs=np.array([1, np.inf, 2]))),
         DataError, ("'conc'", "inf")),
    Case("observe-noise-not-distribution", in_model(lambda: bb.observe("conc", PRED, obs=np.ones(3))),
         ModelError, ("'noise'",)),
    Case("observe-name-not-text", in_model(lambda: bb.observe(3, bb.NormalNoise(PRED, 1.0), obs=np.ones(3))),
         ModelError, ("'name'",)),
    Case("observe-lloq-nan",
         in_model(lambda: bb.observe("conc", bb.NormalNoise(PRED, 1.0), obs=np.ones(3), lloq=math.nan)),
         DataError, ("'lloq'",)),
]

# ------------------------------------------------------------------------------------------
# priors' hyperparameters (NumPyro's argument checks, reported with the model's line)

CASES += [
    Case("prior-negative-scale", model_with_prior(lambda: dist.Normal(0.0, -1.0)), ModelError, ("scale", "line")),
    Case("prior-lognormal-zero-scale", model_with_prior(lambda: dist.LogNormal(0.0, 0.0)), ModelError, ("scale",)),
    Case("prior-gamma-negative-rate", model_with_prior(lambda: dist.Gamma(2.0, -1.0)), ModelError, ("rate",)),
]

# ------------------------------------------------------------------------------------------
# bundled model data files (the Lotka–Volterra CSV through sample_nuts / load_data)

CASES += [
    Case("csv-missing-column", lv_csv(header="year,hare_pelts_thousands,lynx",
                                      rows=["1900,30,4", "1901,47,6"]), DataError, ("lynx_pelts_thousands",)),
    Case("csv-header-only", lv_csv(rows=[]), DataError, ("no rows",)),
    Case("csv-one-row", lv_csv(rows=LV_CSV_ROWS[:1]), DataError, ("at least 2 rows",)),
    Case("csv-year-nan", lv_csv(rows=["1900,30,4", ",47,6", "1902,70,9"]), DataError, ("'year'", "row 1")),
    Case("csv-year-unsorted", lv_csv(rows=["1901,30,4", "1900,47,6", "1902,70,9"]), DataError, ("'year'", "increasing")),
    Case("csv-year-duplicate", lv_csv(rows=["1900,30,4", "1901,47,6", "1901,70,9"]), DataError, ("'year'", "duplicates")),
    Case("csv-year-boolean", lv_csv(rows=["True,30,4", "False,47,6"]), DataError, ("'year'",)),
    Case("csv-negative-count", lv_csv(rows=["1900,30,4", "1901,-47,6"]), DataError, ("'hare_pelts_thousands'", "positive")),
    Case("csv-zero-count", lv_csv(rows=["1900,30,4", "1901,47,0"]), DataError, ("'lynx_pelts_thousands'",)),
    Case("csv-text-count", lv_csv(rows=["1900,30,4", "1901,many,6"]), DataError, ("'hare_pelts_thousands'", "many")),
    Case("csv-inf-count", lv_csv(rows=["1900,30,4", "1901,inf,6"]), DataError, ("'hare_pelts_thousands'", "finite")),
    Case("csv-load-data-direct", lv_csv(rows=["1901,30,4", "1900,47,6"], via="load_data"), DataError, ("'year'",)),
    Case("csv-file-missing", lambda tmp: nuts(data=str(tmp / "nope.csv")), DataError, ("nope.csv", "does not exist")),
    Case("csv-file-empty", lambda tmp: (tmp / "empty.csv").touch() or nuts(data=str(tmp / "empty.csv")),
         DataError, ("empty.csv",)),
    Case("dataset-unknown", lambda tmp: bb.datasets.load("lynx_hares"), DataError, ("lynx_hares",)),
]

# ------------------------------------------------------------------------------------------
# runner options (sample_nuts, fit_svi, fit_laplace, run_sbc) and model loading

CASES += [
    Case("nuts-chains-zero", lambda tmp: nuts(chains=0), OptionError, ("'chains'",)),
    Case("nuts-chains-float", lambda tmp: nuts(chains=1.5), OptionError, ("'chains'",)),
    Case("nuts-warmup-negative", lambda tmp: nuts(warmup=-1), OptionError, ("'warmup'",)),
    Case("nuts-samples-zero", lambda tmp: nuts(samples=0), OptionError, ("'samples'",)),
    Case("nuts-seed-negative", lambda tmp: nuts(seed=-1), OptionError, ("'seed'",)),
    Case("nuts-seed-text", lambda tmp: nuts(seed="0"), OptionError, ("'seed'",)),
    Case("nuts-target-accept-one", lambda tmp: nuts(target_accept=1.0), OptionError, ("'target_accept'",)),
    Case("nuts-target-accept-nan", lambda tmp: nuts(target_accept=math.nan), OptionError, ("'target_accept'",)),
    Case("nuts-max-tree-depth-zero", lambda tmp: nuts(max_tree_depth=0), OptionError, ("'max_tree_depth'",)),
    Case("nuts-chain-method-unknown", lambda tmp: nuts(chain_method="gpu"), OptionError, ("'chain_method'",)),
    Case("nuts-dense-mass-text", lambda tmp: nuts(dense_mass="yes"), OptionError, ("'dense_mass'",)),
    Case("nuts-chunk-size-zero", lambda tmp: nuts(chunk_size=0), OptionError, ("'chunk_size'",)),
    Case("nuts-checkpoint-every-alone", lambda tmp: nuts(checkpoint_every=10), OptionError, ("'checkpoint'",)),
    Case("nuts-dims-not-dict", lambda tmp: nuts(dims="theta"), OptionError, ("'dims'",)),
    Case("nuts-dims-value-text", lambda tmp: nuts(dims={"theta": "parameter"}), OptionError, ("'dims'", "theta")),
    Case("svi-guide-unknown", lambda tmp: bb.fit_svi("lotka_volterra", guide="flows"), OptionError, ("'guide'",)),
    Case("svi-steps-zero", lambda tmp: bb.fit_svi("lotka_volterra", steps=0), OptionError, ("'steps'",)),
    Case("svi-learning-rate-zero", lambda tmp: bb.fit_svi("lotka_volterra", learning_rate=0.0), OptionError,
         ("'learning_rate'",)),
    Case("svi-particles-zero", lambda tmp: bb.fit_svi("lotka_volterra", num_particles=0), OptionError,
         ("'num_particles'",)),
    Case("svi-starts-zero", lambda tmp: bb.fit_svi("lotka_volterra", starts=0), OptionError, ("'starts'",)),
    Case("laplace-samples-zero", lambda tmp: bb.fit_laplace("lotka_volterra", samples=0), OptionError, ("'samples'",)),
    Case("laplace-max-iter-zero", lambda tmp: bb.fit_laplace("lotka_volterra", max_iter=0), OptionError,
         ("'max_iter'",)),
    Case("laplace-starts-negative", lambda tmp: bb.fit_laplace("lotka_volterra", starts=-2), OptionError,
         ("'starts'",)),
    Case("laplace-seed-bool", lambda tmp: bb.fit_laplace("lotka_volterra", seed=True), OptionError, ("'seed'",)),
    Case("sbc-reps-zero", lambda tmp: bb.run_sbc("lotka_volterra", reps=0), OptionError, ("'reps'",)),
    Case("sbc-parallel-unknown", lambda tmp: bb.run_sbc("lotka_volterra", workers=2, parallel="fork"), OptionError,
         ("parallel",)),
    Case("sbc-bins-one", lambda tmp: bb.run_sbc("lotka_volterra", bins=1), OptionError, ("'bins'",)),
    Case("sbc-unknown-setting", lambda tmp: bb.run_sbc("lotka_volterra", repetitions=10), OptionError,
         ("'repetitions'",)),
    Case("model-unknown-name", lambda tmp: bb.load_model("lotka_voltera"), ModelError, ("lotka_voltera",)),
    Case("model-script-missing", lambda tmp: bb.load_model(str(tmp / "mine.py")), ModelError, ("mine.py",)),
    Case("model-script-bad-sbc", lambda tmp: (tmp / "m.py").write_text(
        "sbc = 3\ndef model(data): pass\ndef load_data(path=None): return {}\n") and bb.load_model(str(tmp / "m.py")),
         ModelError, ("'sbc'",)),
    Case("model-not-callable", lambda tmp: nuts(model=42), ModelError, ("model",)),
]

# ------------------------------------------------------------------------------------------
# command line: exit status 2 and one line "error: ..." naming the option

CLI_CASES += [
    ("fit-chains-zero", ["fit", "lotka_volterra", "--chains", "0"], ("--chains",)),
    ("fit-chains-text", ["fit", "lotka_volterra", "--chains", "four"], ("--chains", "four")),
    ("fit-chains-float", ["fit", "lotka_volterra", "--chains", "1.5"], ("--chains",)),
    ("fit-warmup-negative", ["fit", "lotka_volterra", "--warmup", "-1"], ("--warmup",)),
    ("fit-samples-zero", ["fit", "lotka_volterra", "--samples", "0"], ("--samples",)),
    ("fit-seed-negative", ["fit", "lotka_volterra", "--seed", "-2"], ("--seed",)),
    ("fit-target-accept-high", ["fit", "lotka_volterra", "--target-accept", "1.5"], ("--target-accept",)),
    ("fit-target-accept-nan", ["fit", "lotka_volterra", "--target-accept", "nan"], ("--target-accept",)),
    ("fit-steps-zero", ["fit", "lotka_volterra", "--method", "svi", "--steps", "0"], ("--steps",)),
    ("fit-checkpoint-every-zero", ["fit", "lotka_volterra", "--checkpoint-every", "0"], ("--checkpoint-every",)),
    ("fit-method-unknown", ["fit", "lotka_volterra", "--method", "hmc"], ("--method",)),
    ("fit-chain-method-unknown", ["fit", "lotka_volterra", "--chain-method", "gpu"], ("--chain-method",)),
    ("fit-guide-unknown", ["fit", "lotka_volterra", "--method", "svi", "--guide", "iaf"], ("--guide",)),
    ("fit-unknown-model", ["fit", "no_such_model"], ("no_such_model",)),
    ("fit-data-missing", ["fit", "lotka_volterra", "--data", "{tmp}/missing.csv"], ("missing.csv",)),
    ("fit-data-unsorted-years", ["fit", "lotka_volterra", "--data", "{tmp}/unsorted.csv"], ("'year'",)),
    ("fit-resume-without-checkpoint", ["fit", "lotka_volterra", "--resume"], ("--resume",)),
    ("fit-checkpoint-with-svi", ["fit", "lotka_volterra", "--method", "svi", "--checkpoint-every", "5"],
     ("--checkpoint-every",)),
    ("cli-sbc-reps-zero", ["sbc", "lotka_volterra", "--reps", "0"], ("--reps",)),
    ("cli-sbc-thin-zero", ["sbc", "lotka_volterra", "--thin", "0"], ("--thin",)),
    ("cli-sbc-unknown-model", ["sbc", "no_such_model", "--reps", "2"], ("no_such_model",)),
    ("cli-sbc-parallel-unknown", ["sbc", "lotka_volterra", "--parallel", "fork"], ("--parallel",)),
    ("report-missing-file", ["report", "{tmp}/none.nc"], ("none.nc",)),
    ("no-command", [], ("COMMAND",)),
]


# ------------------------------------------------------------------------------------------
# the tests


def test_catalogue_is_large_and_ids_are_unique():
    ids = [c.id for c in CASES] + [c[0] for c in CLI_CASES]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    assert len(ids) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input_raises_named_error(case, tmp_path):
    assert issubclass(case.error, BayesbioError) and issubclass(case.error, (ValueError, TypeError))
    with pytest.raises(BayesbioError) as info:
        case.call(tmp_path)
    assert type(info.value) is case.error, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    for word in case.fields:
        assert word in message, message


@pytest.mark.parametrize("argv, words", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_exits_2_with_one_line(argv, words, tmp_path, monkeypatch, capsys):
    from bayesbio.cli import main

    (tmp_path / "unsorted.csv").write_text("\n".join([LV_CSV_HEADER, "1901,30,4", "1900,47,6"]) + "\n")
    monkeypatch.chdir(tmp_path)  # default outputs land here (and are never written)
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))  # main() may set it; restored after
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for word in words:
        assert word in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unsorted.csv"]  # nothing written
