"""Noise models against SciPy's closed forms, censoring, missing data and data validation.

The log densities are closed-form expressions evaluated in double precision, so they must
agree with SciPy to rounding error: rtol 1e-10 leaves a wide margin over the ~1e-15 relative
rounding of a handful of floating-point operations; the Student-t CDF goes through the
regularised incomplete beta function (SciPy uses a different algorithm), hence rtol 1e-8.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density
from scipy import stats

import bayesbio as bb
from bayesbio.errors import DataError

PRED = np.array([0.5, 1.0, 2.0, 7.5])
VALUES = np.array([0.3, 1.4, 1.1, 9.0])
SIGMA = 0.4
RTOL = 1e-10


def test_normal_noise_log_prob():
    got = bb.NormalNoise(PRED, SIGMA).log_prob(VALUES)
    np.testing.assert_allclose(got, stats.norm.logpdf(VALUES, PRED, SIGMA), rtol=RTOL)
    cdf = bb.NormalNoise(PRED, SIGMA).log_cdf(VALUES)
    np.testing.assert_allclose(cdf, stats.norm.logcdf(VALUES, PRED, SIGMA), rtol=RTOL)


def test_lognormal_noise_log_prob():
    # log y ~ N(log pred, sigma): scipy's lognorm with shape s = sigma and scale = pred (median)
    got = bb.LogNormalNoise(PRED, SIGMA).log_prob(VALUES)
    np.testing.assert_allclose(got, stats.lognorm.logpdf(VALUES, s=SIGMA, scale=PRED), rtol=RTOL)
    cdf = bb.LogNormalNoise(PRED, SIGMA).log_cdf(VALUES)
    np.testing.assert_allclose(cdf, stats.lognorm.logcdf(VALUES, s=SIGMA, scale=PRED), rtol=RTOL)


@pytest.mark.parametrize("df", [1.5, 4.0, 30.0])
def test_student_t_noise_log_prob_and_cdf(df):
    noise = bb.StudentTNoise(PRED, SIGMA, df)
    np.testing.assert_allclose(
        noise.log_prob(VALUES), stats.t.logpdf(VALUES, df, loc=PRED, scale=SIGMA), rtol=RTOL
    )
    # both tails of the CDF (values below and above the prediction)
    np.testing.assert_allclose(
        noise.log_cdf(VALUES), stats.t.logcdf(VALUES, df, loc=PRED, scale=SIGMA), rtol=1e-8
    )


def test_proportional_and_combined_noise_log_prob():
    b, a = 0.2, 0.3
    np.testing.assert_allclose(
        bb.ProportionalNoise(PRED, b).log_prob(VALUES),
        stats.norm.logpdf(VALUES, PRED, b * np.abs(PRED)),
        rtol=RTOL,
    )
    np.testing.assert_allclose(
        bb.CombinedNoise(PRED, a, b).log_prob(VALUES),
        stats.norm.logpdf(VALUES, PRED, np.sqrt(a**2 + b**2 * PRED**2)),
        rtol=RTOL,
    )


@pytest.mark.parametrize(
    "noise, logcdf",
    [
        (bb.NormalNoise(PRED, SIGMA), lambda x: stats.norm.logcdf(x, PRED, SIGMA)),
        (bb.LogNormalNoise(PRED, SIGMA), lambda x: stats.lognorm.logcdf(x, s=SIGMA, scale=PRED)),
    ],
    ids=["normal", "lognormal"],
)
def test_left_censored_uses_log_cdf_for_censored_entries(noise, logcdf):
    lloq = 1.2
    censored = np.array([True, False, True, False])
    got = np.asarray(bb.LeftCensored(noise, lloq, censored).log_prob(VALUES))
    expected = np.where(censored, logcdf(np.full_like(VALUES, lloq)), noise.log_prob(VALUES))
    np.testing.assert_allclose(got, expected, rtol=RTOL)


def _site_log_density(name, noise_fn, obs, **kwargs):
    def model():
        bb.observe(name, noise_fn(), obs=obs, **kwargs)

    value, _ = log_density(model, (), {}, {})
    return float(value)


def test_observe_lloq_censors_values_at_or_below_the_limit():
    lloq = 1.1
    obs = VALUES.copy()  # 0.3 and 1.1 are <= lloq: censored
    got = _site_log_density("y", lambda: bb.NormalNoise(PRED, SIGMA), obs, lloq=lloq)
    cens = obs <= lloq
    expected = stats.norm.logcdf(lloq, PRED[cens], SIGMA).sum() + stats.norm.logpdf(
        obs[~cens], PRED[~cens], SIGMA
    ).sum()
    np.testing.assert_allclose(got, expected, rtol=RTOL)


def test_observe_masks_nan_entries():
    pred = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    obs = np.array([[1.1, np.nan], [2.5, 4.2], [np.nan, np.nan]])
    got = _site_log_density("y", lambda: bb.NormalNoise(pred, SIGMA), obs)
    present = ~np.isnan(obs)
    expected = stats.norm.logpdf(obs[present], pred[present], SIGMA).sum()
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    # the same for a positive-support noise model (NaN must not reach log())
    got_ln = _site_log_density("y", lambda: bb.LogNormalNoise(pred, SIGMA), obs)
    expected_ln = stats.lognorm.logpdf(obs[present], s=SIGMA, scale=pred[present]).sum()
    np.testing.assert_allclose(got_ln, expected_ln, rtol=RTOL)


def test_observe_without_missing_values_is_the_plain_sum():
    got = _site_log_density("y", lambda: bb.NormalNoise(PRED, SIGMA), VALUES)
    np.testing.assert_allclose(got, stats.norm.logpdf(VALUES, PRED, SIGMA).sum(), rtol=RTOL)


def test_observe_without_data_simulates():
    def model():
        return bb.observe("y", bb.NormalNoise(PRED, SIGMA))

    with numpyro.handlers.seed(rng_seed=0):
        draw = model()
    assert np.shape(draw) == PRED.shape and np.all(np.isfinite(draw))


def _raises_naming_site(name, noise, obs, match):
    def model():
        bb.observe(name, noise, obs=obs)

    with pytest.raises(DataError) as info:
        log_density(model, (), {}, {})
    msg = str(info.value)
    assert f"'{name}'" in msg, msg
    assert match in msg, msg


def test_shape_mismatch_raises_data_error_naming_site():
    _raises_naming_site("pelts", bb.NormalNoise(PRED, SIGMA), VALUES[:3], "shape")


def test_shape_mismatch_transposed_raises():
    pred = np.ones((3, 2))
    _raises_naming_site("conc", bb.NormalNoise(pred, SIGMA), np.ones((2, 3)), "shape")


def test_negative_data_under_lognormal_raises_data_error_naming_site():
    obs = VALUES.copy()
    obs[1] = -1.0
    _raises_naming_site("titre", bb.LogNormalNoise(PRED, SIGMA), obs, "LogNormalNoise")


def test_all_nan_data_raises_data_error():
    _raises_naming_site("y", bb.NormalNoise(PRED, SIGMA), np.full(PRED.shape, np.nan), "NaN")


def test_inf_data_raises_data_error():
    obs = VALUES.copy()
    obs[0] = np.inf
    _raises_naming_site("y", bb.NormalNoise(PRED, SIGMA), obs, "inf")


def test_left_censored_requires_a_noise_model_with_log_cdf():
    with pytest.raises(DataError):
        bb.LeftCensored(dist.Exponential(jnp.ones(3)), 0.5, jnp.array([True, False, True]))
