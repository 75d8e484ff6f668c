"""Structured Laplace whitening (bayesbio.infer.whiten) and NUTS with ``prefit="laplace"``.

The reference is a Gaussian hierarchical posterior (normal likelihood, normal random effects
of known SD around a normal population mean): its potential is quadratic, so the Hessian is
the same everywhere and equal to ``jax.hessian`` of the potential, and its exact posterior
mean and covariance are ``H^-1 b`` and ``H^-1``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import initialize_model

import bayesbio as bb
from bayesbio.errors import OptionError
from bayesbio.infer import whiten as wh

P, K, M = 12, 2, 4  # patients, random effects per patient, observations per effect
RNG = np.random.default_rng(5)
NOISE = RNG.uniform(0.2, 2.0, size=(P, K, 1))  # per-patient noise: blocks of different scales
Y = 1.5 + RNG.normal(size=(P, K, 1)) + NOISE * RNG.normal(size=(P, K, M))


def hierarchy(data, couple=False):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0).expand([K]).to_event(1))
    c = numpyro.sample("c", dist.Normal(0.0, 3.0))
    theta = numpyro.sample("theta", dist.Normal(mu + c, 1.0).expand([P, K]).to_event(2))
    mean = theta + (0.5 * jnp.roll(theta, 1, axis=0) if couple else 0.0)
    numpyro.sample("y", dist.Normal(mean[..., None], data["noise"]), obs=data["y"])


DATA = {"y": jnp.asarray(Y), "noise": jnp.asarray(NOISE)}


def flat_potential(couple=False):
    model = (lambda d: hierarchy(d, couple=True)) if couple else hierarchy
    info, potential_gen, _, _ = initialize_model(jax.random.PRNGKey(0), model, dynamic_args=True, model_args=(DATA,))
    x0, unravel = ravel_pytree(info.z)
    potential = potential_gen(DATA)
    return (lambda x: potential(unravel(x))), x0, info.z


def test_layout_puts_per_patient_sites_first_and_inverts():
    _, x0, z = flat_potential()
    lay = wh.layout(z, P)
    # sorted sites: c (1), mu (K), theta (P, K)
    assert lay.local.shape == (P, K) and lay.glob.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(lay.local, 3 + np.arange(P * K).reshape(P, K))
    order = np.concatenate([lay.local.ravel(), lay.glob])
    np.testing.assert_array_equal(order[lay.inverse], np.arange(x0.size))
    # no patients: every coordinate is global
    assert wh.layout(z, None).local.shape == (0, 0) and wh.layout(z, None).glob.size == x0.size


def test_structured_hessian_equals_the_exact_hessian_of_a_quadratic_potential():
    u, x0, z = flat_potential()
    lay = wh.layout(z, P)
    a, b, d, error = wh.structured_hessian(jax.grad(u), x0, lay, jax.random.PRNGKey(1))
    exact = np.asarray(jax.hessian(u)(x0))
    # central differences of a linear gradient are exact up to rounding (~1e-16 / 1e-4 relative)
    np.testing.assert_allclose(np.asarray(d), exact[np.ix_(lay.glob, lay.glob)], rtol=1e-9, atol=1e-9)
    for i in range(P):
        np.testing.assert_allclose(np.asarray(a[i]), exact[np.ix_(lay.local[i], lay.local[i])], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(np.asarray(b[i]), exact[np.ix_(lay.local[i], lay.glob)], rtol=1e-9, atol=1e-9)
    assert float(error) < 1e-9


def test_probe_error_shows_coupled_patients():
    u, x0, z = flat_potential(couple=True)
    *_, error = wh.structured_hessian(jax.grad(u), x0, wh.layout(z, P), jax.random.PRNGKey(1))
    # patient i's mean involves patient i-1's effects: off-diagonal blocks the assembly leaves out
    assert float(error) > 0.05


def test_whitening_maps_the_gaussian_posterior_to_a_standard_normal():
    u, x0, z = flat_potential()
    lay = wh.layout(z, P)
    a, b, d, _ = wh.structured_hessian(jax.grad(u), x0, lay, jax.random.PRNGKey(1))
    arrays = wh.whiten(a, b, d, x0, lay)
    n = x0.size
    t = np.asarray(jax.vmap(lambda e: wh.to_x(arrays, e) - x0)(jnp.eye(n))).T  # columns T e_j
    cov = np.linalg.inv(np.asarray(jax.hessian(u)(x0)))
    # T T^T = H^-1: the whitened coordinates of this posterior have identity covariance
    np.testing.assert_allclose(t @ t.T, cov, rtol=1e-8, atol=1e-12)
    w = jax.random.normal(jax.random.PRNGKey(2), (n,))
    np.testing.assert_allclose(np.asarray(wh.to_w(arrays, wh.to_x(arrays, w))), np.asarray(w), rtol=1e-10, atol=1e-12)
    # the potential in w is 0.5 |w|^2 + const exactly (quadratic potential; centre = x0 is not
    # the mode, so a linear term remains: check the curvature through a symmetric difference)
    uw = lambda w: u(wh.to_x(arrays, w))  # noqa: E731
    second = uw(w) + uw(-w) - 2 * uw(jnp.zeros(n))
    np.testing.assert_allclose(float(second), float(w @ w), rtol=1e-8)


def test_positive_takes_absolute_eigenvalues():
    m = jnp.array([[[2.0, 0.0], [0.0, -0.5]]])
    np.testing.assert_allclose(np.asarray(wh._positive(m)), [[[2.0, 0.0], [0.0, 0.5]]], atol=1e-12)
    # a zero eigenvalue is raised to EIGEN_FLOOR times the largest
    z = np.asarray(wh._positive(jnp.array([[1.0, 0.0], [0.0, 0.0]])))
    assert z[1, 1] == pytest.approx(wh.EIGEN_FLOOR)


def exact_moments():
    u, x0, z = flat_potential()
    h = np.asarray(jax.hessian(u)(x0))
    grad0 = np.asarray(jax.grad(u)(x0))
    mean = np.asarray(x0) - np.linalg.solve(h, grad0)  # quadratic: one Newton step is exact
    return mean, np.linalg.inv(h), z


@pytest.fixture(scope="module")
def laplace_run():
    return bb.sample_nuts(hierarchy, DATA, chains=2, warmup=300, samples=500, seed=4, prefit="laplace",
                          progress=False, count_solver_failures=False)


def test_nuts_in_whitened_coordinates_samples_the_exact_posterior(laplace_run):
    mean, cov, z = exact_moments()
    _, unravel = ravel_pytree(z)
    exact_mean, exact_sd = unravel(jnp.asarray(mean)), unravel(jnp.asarray(np.sqrt(np.diag(cov))))
    post = laplace_run.posterior
    assert "Laplace-whitened" in post.attrs["metric"]
    assert post["theta"].shape == (2, 500, P, K)
    import arviz as az

    for name in ("mu", "c", "theta"):
        draws = post[name].values
        mcse = np.asarray(az.mcse(laplace_run, var_names=[name])[name])
        # 4.5 MCSE: a false alarm for any one of the 27 coordinates has probability ~1e-5
        np.testing.assert_array_less(np.abs(draws.mean(axis=(0, 1)) - np.asarray(exact_mean[name])), 4.5 * mcse)
        # posterior SDs to 15 %: 1,000 draws of high ESS give the SD to a few per cent
        np.testing.assert_allclose(draws.std(axis=(0, 1)), np.asarray(exact_sd[name]), rtol=0.15)
    assert int(laplace_run.sample_stats["diverging"].sum()) == 0


def test_nuts_with_laplace_prefit_is_reproducible(laplace_run):
    again = bb.sample_nuts(hierarchy, DATA, chains=2, warmup=300, samples=500, seed=4, prefit="laplace",
                           progress=False, count_solver_failures=False)
    np.testing.assert_array_equal(again.posterior["theta"].values, laplace_run.posterior["theta"].values)


def test_laplace_prefit_is_refused_under_a_device_mesh():
    with pytest.raises(OptionError, match="prefit='laplace'.*mesh"):
        bb.sample_nuts(hierarchy, DATA, chains=1, warmup=10, samples=10, prefit="laplace", devices=1, progress=False)


def test_laplace_prefit_whitens_per_patient_blocks_and_falls_back_when_patients_couple():
    from numpyro.infer import init_to_median

    from bayesbio.infer.prefit import laplace_prefit

    common = dict(init_strategy=init_to_median(), latent=["c", "mu", "theta"], n_patients=P)
    fit = laplace_prefit(hierarchy, DATA, jax.random.PRNGKey(0), 3, **common)
    assert fit.whitening is not None and fit.whitening["local"].shape == (P, K)
    assert fit.start["theta"].shape == (3, P, K) and fit.inverse_mass is None
    with pytest.warns(RuntimeWarning, match="per-patient structure does not hold"):
        fallback = laplace_prefit(lambda d: hierarchy(d, couple=True), DATA, jax.random.PRNGKey(0), 3, **common)
    # the plain mean-field pre-fit: diagonal inverse mass, no whitening
    assert fallback.whitening is None and fallback.inverse_mass is not None


def test_population_model_with_laplace_prefit_agrees_with_the_mean_field_prefit(tmp_path):
    """The theophylline model, centred, 30 simulated patients: the whitened run moves in
    per-patient blocks (its population solve gives the patient count) and agrees with the
    default pre-fit's run within Monte Carlo error."""
    import arviz as az

    import models.theophylline as th

    path = tmp_path / "sim.csv"
    th.simulate_table(30, seed=3).to_csv(path, index=False)
    data = th.load_data(path)
    spec = bb.ModelSpec(name="theo_centred", model=th.make_model("analytic", centered=True), load_data=th.load_data,
                        init_strategy=th.init_strategy, dims=th.dims, coords=th.coords)
    runs = {prefit: bb.sample_nuts(spec, data, chains=2, warmup=200, samples=300, seed=2, prefit=prefit,
                                   progress=False)
            for prefit in ("laplace", "svi")}
    assert "Laplace-whitened" in runs["laplace"].posterior.attrs["metric"]
    assert runs["svi"].posterior.attrs["metric"] == "diagonal"
    for name in ("ka_pop", "cl_pop", "v_pop", "omega_ka", "omega_cl", "omega_v", "sigma"):
        means = [float(r.posterior[name].mean()) for r in runs.values()]
        mcse = [float(az.mcse(r, var_names=[name])[name]) for r in runs.values()]
        # two independent estimates: their difference has SD sqrt(mcse_1^2 + mcse_2^2); 4.5 of
        # them is a false alarm for one of the 7 parameters with probability ~5e-5
        assert abs(means[0] - means[1]) < 4.5 * np.hypot(*mcse), (name, means, mcse)
    for r in runs.values():
        assert int(r.sample_stats["diverging"].sum()) == 0
