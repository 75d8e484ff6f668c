"""SBC with the NUTS pre-fit: the traced mean-field fit against an exact Gaussian posterior, and
SBC's pre-fit setting (a model's ``nuts_prefit`` is what SBC runs by default)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesbio as bb
from bayesbio.errors import OptionError
from bayesbio.infer._common import prepare
from bayesbio.infer.prefit import svi_fit_traced
from bayesbio.sbc.fit import BatchFitter
from bayesbio.sbc.settings import resolve_settings

PRIOR_SD = 10.0
N_OBS = 16


def gaussian_model(data, obs):
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=obs)


def exact_posterior(y):
    """Normal prior N(0, PRIOR_SD^2), unit-variance Normal likelihood: conjugate."""
    precision = 1.0 / PRIOR_SD**2 + y.size
    return y.sum() / precision, precision**-0.5


def test_traced_prefit_recovers_an_exact_gaussian_posterior_per_data_set():
    ys = np.stack([np.linspace(-1.0, 1.0, N_OBS) + 0.7, np.linspace(-1.0, 1.0, N_OBS) - 2.0])

    def fit(key, y):
        return svi_fit_traced(gaussian_model, (None, y), key, init_strategy=numpyro.infer.init_to_median,
                              latent=["mu"])

    # compiled and vmapped over two data sets, as SBC runs it
    mean, scale = jax.jit(jax.vmap(fit))(jax.random.split(jax.random.PRNGKey(0), 2), jnp.asarray(ys))
    for i, y in enumerate(ys):
        m, s = exact_posterior(y)
        # the mean-field family contains this posterior, but with Adam's fixed step (0.02) and a
        # single-particle ELBO gradient the final location keeps jittering: over 8 fits (4 keys x
        # these 2 data sets) the error reached 0.076 (0.3 posterior SD); 0.15 allows twice that,
        # and is 1.5 % of the prior SD, so a fit that did not move from the prior fails
        assert abs(float(mean["mu"][i]) - m) < 0.15
        # the scale (0.25) is noisy too: errors up to 0.03 over the same 8 fits; 0.08 allows ~2.5x
        assert abs(float(scale["mu"][i]) - s) < 0.08
    # each data set got its own fit (the exact means differ by 2.7 * 16 / 16.01)
    assert abs(float(mean["mu"][0] - mean["mu"][1]) - 2.7 * N_OBS / (N_OBS + PRIOR_SD**-2)) < 0.3


def test_sbc_prefit_point_starts_near_the_posterior_with_its_variances():
    prepared = prepare(lambda data: gaussian_model(data, data["y"]), {"y": np.zeros(N_OBS)})
    settings = resolve_settings(None, {"prefit": "svi"})
    y = np.linspace(-1.0, 1.0, N_OBS) + 3.0
    fitter = BatchFitter(prepared, ["y"], ["mu"], settings, {"y": y})
    found, _ = fitter._uniform_point(jax.random.PRNGKey(1), prepared.data, {"y": jnp.asarray(y)})
    info, ok, inverse_mass = jax.jit(fitter._prefit_point)(jax.random.PRNGKey(2), prepared.data,
                                                           {"y": jnp.asarray(y)}, found)
    m, s = exact_posterior(y)
    assert bool(ok)
    # a draw from the approximation: within 5 posterior SDs of the mean (probability 1 - 6e-7)
    assert abs(float(info.z["mu"]) - m) < 5 * s
    assert np.isfinite(float(info.potential_energy))
    # the inverse mass matrix is the approximation's variance (posterior variance 1/16.01)
    assert inverse_mass.shape == (1,)
    assert abs(float(inverse_mass[0]) ** 0.5 - s) < 0.08


def test_sbc_prefit_setting_is_validated_and_defaults_to_the_model_script():
    with pytest.raises(OptionError, match="'prefit'"):
        resolve_settings(None, {"prefit": "laplace"})
    assert resolve_settings(None, None).prefit is None  # resolved by run_sbc from the model
    assert bb.load_model("theophylline").prefit == "svi"


def test_sbc_refuses_a_model_scripts_laplace_prefit():
    """A model script may set ``nuts_prefit = "laplace"`` (a pre-fit of ``sample_nuts``), which
    SBC's compiled replications do not run: a clear error, not a silent run without it."""

    def normal_model(data):
        numpyro.sample("y", dist.Normal(numpyro.sample("mu", dist.Normal(0.0, 1.0)), 1.0), obs=data["y"])

    spec = bb.ModelSpec(name="laplace_script", model=normal_model, load_data=lambda path=None: {"y": np.zeros(3)},
                        prefit="laplace")
    with pytest.raises(OptionError, match="pre-fit 'laplace' does not run inside SBC"):
        bb.run_sbc(spec, {"y": np.zeros(3)}, reps=2, warmup=5, draws=3, thin=1, batch=2, bins=2)


@pytest.mark.slow  # one more compilation of a small SBC (about a minute on a busy 2-core machine)
def test_tiny_sbc_with_prefit_runs_and_records_it():
    def normal_model(data):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        sigma = numpyro.sample("sigma", dist.LogNormal(0.0, 0.5))
        numpyro.sample("y", dist.Normal(mu, sigma).expand(data["y"].shape), obs=data["y"])

    r = bb.run_sbc(normal_model, {"y": np.zeros(5)}, reps=8, warmup=50, draws=9, thin=1, batch=4, bins=5,
                   prefit="svi", seed=3)
    assert r.settings.prefit == "svi" and r.settings.as_dict()["prefit"] == "svi"
    assert r.init_failures == 0
    for v in r.ranks.values():
        assert v.shape == (8,) and v.min() >= 0 and v.max() <= 9
