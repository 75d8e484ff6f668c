"""Failure-safe sampling: a model whose solution blows up for part of its prior samples to
completion; the failed solves are counted per chain and surfaced by the report's verdict and
chain table (what the HTML report renders; its rendering of them is tested in test_report.py)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import bayesbio as bb

# y' = k y^2, y(0) = 1  =>  y(t) = 1 / (1 - k t): finite-time blow-up at t = 1/k. The solve runs
# to t = 2, so every k > 0.5 fails; near k = 0.5 the step budget (max_steps) runs out first.
TS = np.array([0.5, 1.0, 2.0])
K_BOUND = 0.5


def blowup_model(data):
    # a wide prior: P(k > 0.5) = 1 - Phi(log(0.5 / 0.3) / 1) = 0.31 of it blows up
    k = numpyro.sample("k", dist.LogNormal(jnp.log(0.3), 1.0))
    y = bb.solve(lambda t, y, k: k * y**2, jnp.array([1.0]), data["ts"], k, max_steps=200)
    # one weakly informative observation at t = 0.5: the posterior keeps the prior's mass up to
    # the blow-up boundary, so sampling (not only warm-up) keeps running into failing solves
    bb.observe("y", bb.NormalNoise(y[:1, 0], 0.5), obs=data["y"])


def test_blowup_model_samples_to_completion_and_the_report_counts_failures():
    from bayesbio.report.diagnostics import analyse
    from bayesbio.report.tables import chain_health

    data = {"ts": TS, "y": np.array([1.15])}
    idata = bb.sample_nuts(blowup_model, data, chains=2, warmup=150, samples=150, seed=5,
                           chain_method="sequential", progress=False)
    k = idata.posterior["k"].values
    assert k.shape == (2, 150) and np.all(np.isfinite(k))
    assert np.all(k < K_BOUND)  # a failed solve has log density -inf: never a kept draw

    failures = idata.sample_stats["solver_failures"]
    assert failures.dims == ("chain", "draw")
    per_chain = failures.values.sum(axis=1)
    assert np.all(per_chain > 0), per_chain  # both chains met the boundary while sampling
    assert idata.sample_stats["warmup_solver_failures"].shape == (2,)

    findings = {f.check: f for f in analyse(idata, loo=False).findings}
    solver = findings["ODE solver failures"]
    assert solver.severity == "fail"
    assert f"chain 0: {per_chain[0]}" in solver.message and f"chain 1: {per_chain[1]}" in solver.message
    table = chain_health(idata)
    np.testing.assert_array_equal(table["solver failures"].to_numpy(), per_chain)

