"""Property-based tests (hypothesis): random, mostly malformed tables and arrays fed to the
data-facing entry points either succeed or raise a :mod:`bayesbio.errors` type; nothing ever
surfaces as an exception from inside JAX, NumPyro or pandas.

Examples are derandomised (the same ones on every run) and few, to keep the fast tier quick.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpyro import handlers

import bayesbio as bb
from bayesbio.errors import BayesbioError
from bayesbio.infer._common import prepare
from bayesbio.ode import solve_with_status

SETTINGS = dict(
    deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

LV_COLUMNS = ["year", "hare_pelts_thousands", "lynx_pelts_thousands"]

# cell values: ordinary numbers, the awkward ones, and text
cells = st.one_of(
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 1900.0, 1901.0]),
    st.integers(min_value=-5, max_value=2000),
    st.sampled_from(["", "abc", "1e400", "NaN", "True", " 12 "]),
)


@st.composite
def tables(draw):
    columns = draw(st.lists(st.sampled_from(LV_COLUMNS + ["other"]), min_size=0, max_size=4, unique=True))
    if draw(st.booleans()):  # often the right columns, so the checks past the header are reached
        columns = LV_COLUMNS + columns[:1]
    rows = draw(st.integers(min_value=0, max_value=6))
    table = {c: [draw(cells) for _ in range(rows)] for c in columns}
    if "year" in table and rows and draw(st.booleans()):
        table["year"] = [1900 + i for i in range(rows)]  # valid years: stress the counts instead
    return pd.DataFrame(table, columns=columns)


def only_bayesbio_errors(fn):
    """Run ``fn``; a bayesbio error is an accepted outcome, any other exception fails the test."""
    try:
        return fn()
    except BayesbioError:
        return None


@settings(max_examples=60, **SETTINGS)
@given(table=tables())
def test_random_lv_tables_give_data_or_a_data_error(table, tmp_path):
    path = tmp_path / "table.csv"
    table.to_csv(path, index=False)
    data = only_bayesbio_errors(lambda: bb.load_model("lotka_volterra").load_data(str(path)))
    if data is not None:  # accepted: then it is what the model needs
        assert np.all(np.diff(data["ts"]) > 0) and np.all(data["ts"] > 0)
        present = np.concatenate([data["y_init"], data["y"].ravel()])
        present = present[~np.isnan(present)]
        assert np.all(present > 0) and np.all(np.isfinite(present))


arrays = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=0, max_size=25).map(np.array),
    st.lists(st.lists(st.floats(min_value=-10, max_value=100), min_size=1, max_size=3), min_size=1, max_size=22)
    .filter(lambda rows: len({len(r) for r in rows}) == 1).map(np.array),
    st.lists(st.text(max_size=3), min_size=1, max_size=4).map(np.array),
    st.just(np.array([], dtype=float)),
    st.just(np.ones((20, 2))),
)


@settings(max_examples=30, **SETTINGS)
@given(field=st.sampled_from(["ts", "y_init", "y"]), value=arrays)
def test_random_lv_data_fields_are_accepted_or_rejected_by_bayesbio(field, value):
    data = {k: np.asarray(v, dtype=float) for k, v in bb.load_model("lotka_volterra").load_data(None).items()}
    data[field] = value
    only_bayesbio_errors(lambda: prepare("lotka_volterra", data))


NOISES = {
    "normal": lambda pred: bb.NormalNoise(pred, 0.5),
    "lognormal": lambda pred: bb.LogNormalNoise(pred, 0.5),
    "student": lambda pred: bb.StudentTNoise(pred, 0.5, df=3.0),
    "combined": lambda pred: bb.CombinedNoise(pred, 0.1, 0.2),
}


@settings(max_examples=40, **SETTINGS)
@given(noise=st.sampled_from(sorted(NOISES)), obs=arrays, lloq=st.sampled_from([None, 0.1, math.nan]))
def test_random_observations_are_accepted_or_rejected_by_bayesbio(noise, obs, lloq):
    def call():
        with handlers.trace() as tr, handlers.seed(rng_seed=0):
            bb.observe("y", NOISES[noise](jnp.ones(5)), obs=obs, lloq=lloq)
        return tr

    tr = only_bayesbio_errors(call)
    if tr is not None:
        value = tr["y"]["value"]
        assert value.shape == (5,)
        log_density = tr["y"]["fn"].log_prob(value)
        # accepted data never give a NaN log density (missing records are masked to 0)
        assert not np.any(np.isnan(np.asarray(log_density)))


@settings(max_examples=25, **SETTINGS)
@given(y0=arrays, ts=arrays, t0=st.sampled_from([0.0, -1.0, math.nan, 1e9]))
def test_random_solve_inputs_are_accepted_or_rejected_by_bayesbio(y0, ts, t0):
    def call():
        # traced, not compiled: validation runs on the concrete inputs; the shapes come back
        return jax.eval_shape(lambda: solve_with_status(lambda t, y, k: -k * y, y0, ts, 0.3, t0=t0).ys)

    out = only_bayesbio_errors(call)
    if out is not None:
        assert out.shape == (len(ts), len(y0))


bad_counts = st.one_of(st.integers(max_value=0), st.floats(), st.text(max_size=3), st.none(), st.booleans())


@settings(max_examples=30, **SETTINGS)
@given(option=st.sampled_from(["chains", "samples", "max_tree_depth", "chunk_size"]), value=bad_counts)
def test_bad_runner_counts_are_option_errors_naming_the_option(option, value):
    with pytest.raises(bb.errors.OptionError, match=f"'{option}'"):
        bb.sample_nuts("lotka_volterra", **{option: value})
