"""Solver failures counted inside the compiled NUTS chunk (a ``jax.Ref`` per iteration, no host
callback) equal the host-callback tally, draw by draw; and the jitted initialisation reports a
model without any finite starting point as a ModelError."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from test_failure_safe import TS, blowup_model

import bayesbio as bb
from bayesbio.infer import nuts


def test_in_graph_failure_counts_equal_the_host_callback_counts(monkeypatch):
    data = {"ts": TS, "y": np.array([1.15])}
    kwargs = dict(chains=2, warmup=60, samples=60, seed=5, chain_method="sequential", progress=False)
    in_graph = bb.sample_nuts(blowup_model, data, **kwargs)
    monkeypatch.setattr(nuts, "_IN_GRAPH_FAILURES", False)  # the same run counted by host callbacks
    host = bb.sample_nuts(blowup_model, data, **kwargs)
    # the counter changes no numerics: same draws
    np.testing.assert_array_equal(in_graph.posterior["k"].values, host.posterior["k"].values)
    a, b = in_graph.sample_stats, host.sample_stats
    np.testing.assert_array_equal(a["solver_failures"].values, b["solver_failures"].values)
    np.testing.assert_array_equal(a["warmup_solver_failures"].values, b["warmup_solver_failures"].values)
    # both chains meet the blow-up boundary (31% of the prior) while sampling and in warm-up
    assert np.all(a["solver_failures"].values.sum(axis=1) > 0)
    assert np.all(a["warmup_solver_failures"].values > 0)
    assert in_graph.posterior.attrs["warmup_solver_failures"] == int(a["warmup_solver_failures"].sum())


def never_finite(data):
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    numpyro.factor("impossible", -jnp.inf)
    bb.observe("y", bb.NormalNoise(jnp.full(1, x), 1.0), obs=data["y"])


def test_no_finite_initial_point_is_a_model_error():
    with pytest.raises(bb.errors.ModelError, match=r"no initial point .* chain\(s\) \[0, 1\]"):
        bb.sample_nuts(never_finite, {"y": np.array([0.1])}, chains=2, warmup=5, samples=5,
                       chain_method="sequential", progress=False)
