"""Function-space priors and field inference (bayesbio.fields) and the bundled inverse problems.

Oracles: dense multivariate-normal densities and covariances of the same discretisation, the
continuum Matérn correlation, the closed form of a stable (Cauchy) increment, and the exact
linear-Gaussian posterior. The slow tier checks the issue's acceptance numbers with NUTS and
the coverage of credible bands over 50 simulated data sets.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from bayesbio.models import backward_heat
from numpyro import handlers
from scipy.stats import multivariate_normal

import bayesbio as bb
from bayesbio.errors import DataError, OptionError
from bayesbio.fields import (
    EdgePreserving,
    FieldGrid,
    GMRFSmoothness,
    MaternKL,
    MaternSPDE,
    band_coverage,
    compare_fields,
    heat_semigroup,
    interpolation_matrix,
    laplace_field,
    linear_gaussian_posterior,
    matern_correlation,
    summarize_field,
)
from bayesbio.fields._spectral import discrete_basis, neg_laplacian_apply
from bayesbio.pde import Grid1D, Grid2D, diffusion_matrix


# -- priors: exactness of the discretisation ------------------------------------------------
@pytest.mark.parametrize("boundary", ["neumann", "dirichlet", "periodic"])
def test_spectral_basis_diagonalises_the_stencil(boundary):
    grid = FieldGrid((6, 5), (0.0, 0.0), (1.0, 2.0))
    basis = discrete_basis(grid, boundary)
    b = basis.matrix()  # columns: eigenvectors scaled by h^(-d/2)
    lap = np.stack([np.asarray(neg_laplacian_apply(jnp.asarray(col.reshape(6, 5)), grid, boundary)).ravel()
                    for col in b.T], axis=1)
    # -Laplacian_h B = B diag(lambda) to rounding (eigh of a 30x30 matrix: ~1e-12 relative)
    assert np.allclose(lap, b * basis.eigenvalues[None, :], atol=1e-9 * np.abs(lap).max())
    # orthonormal in the discrete L2 inner product sum(u v) h^d
    assert np.allclose(b.T @ b * grid.cell_volume, np.eye(30), atol=1e-10)


def test_neumann_stencil_is_the_pde_no_flux_operator():
    # the prior's Laplacian and bayesbio.pde's finite-volume diffusion are the same operator
    g = Grid1D(9, length=2.0)
    u = jnp.asarray(np.random.default_rng(1).normal(size=9))
    fg = FieldGrid((9,), (0.0,), (2.0,))
    assert np.allclose(neg_laplacian_apply(u, fg, "neumann"), -np.asarray(diffusion_matrix(g, 1.0, "no-flux")) @ u)


@pytest.mark.parametrize("shape", [(48,), (12, 10)])
def test_matern_spde_precision_density_and_covariance_agree(shape):
    grid = FieldGrid(shape, (0.0,) * len(shape), (1.0,) * len(shape))
    prior = MaternSPDE(grid, sigma=1.3, length_scale=0.3, margin=0.0)
    cov = prior.covariance()
    q = prior.precision_matrix()
    # sparse precision is the inverse of the spectral covariance (double precision, cond ~1e6)
    assert np.allclose(q @ cov, np.eye(grid.size), atol=1e-8)
    # and sparse: (2 alpha + 1) bands in 1-D, the 13-point stencil in 2-D
    assert q.nnz <= 13 * grid.size
    u = np.random.default_rng(0).normal(size=shape)
    lp = float(prior.distribution().log_prob(jnp.asarray(u)))
    ref = multivariate_normal(np.zeros(grid.size), cov).logpdf(u.ravel())
    assert lp == pytest.approx(ref, rel=1e-9)  # same density, two routes: rounding only


@pytest.mark.parametrize("kind", ["spde", "kl"])
def test_matern_discretisation_consistency(kind):
    """Refining the grid keeps the pointwise sd and the correlation at one range (interior point)."""
    out = []
    for n in (64, 128, 256):
        prior = (MaternSPDE(n, sigma=1.0, length_scale=0.2) if kind == "spde"
                 else MaternKL(n, n_modes=64, sigma=1.0, length_scale=0.2))
        cov = prior.covariance()
        i = n // 4
        j = i + int(round(0.2 * n))
        sd = np.sqrt(np.diag(cov))
        out.append((sd[i], cov[i, j] / (sd[i] * sd[j])))
        # the margin removes the boundary distortion: sd within 1.5% of sigma everywhere
        assert np.all(np.abs(prior.pointwise_sd() - 1.0) < 0.015)
    out = np.array(out)
    # 64 -> 256 cells change the sd and correlation by < 1% (measured 0.4% for SPDE (O(h)), 0.1% KL)
    assert np.ptp(out[:, 0]) < 0.01 and np.ptp(out[:, 1]) < 0.01
    # and match the continuum Matérn(3/2) correlation at distance rho (0.14) within 0.01
    assert abs(out[-1, 1] - matern_correlation(0.2, 0.2, 1.5)) < 0.01


def test_matern_2d_variance_converges_to_sigma():
    sds = [MaternSPDE(FieldGrid((n, n), (0, 0), (1, 1)), sigma=1.0, length_scale=0.3).pointwise_sd()[n // 2, n // 2]
           for n in (32, 64)]
    # O(h) convergence to sigma^2 = 1 (measured 1.020, 1.007)
    assert abs(sds[1] - 1.0) < 0.01 and abs(sds[1] - 1.0) < abs(sds[0] - 1.0)


def test_gmrf_smoothness_increments_and_boundaries():
    for n in (50, 200):
        prior = GMRFSmoothness(n, sigma=2.0, order=1, boundary="neumann", mean_sd=1.0)
        cov = prior.covariance()
        d = np.diff(np.eye(n), axis=0)
        incr_var = np.diag(d @ cov @ d.T)
        # random walk: Var(u_{i+1} - u_i) = sigma^2 h in the interior (Brownian increments), <5%
        # (the Neumann constraint correlates increments near the walls)
        mid = incr_var[n // 4 : 3 * n // 4]
        assert np.allclose(mid, 4.0 / n, rtol=0.05)
        # the field average has sd mean_sd exactly
        w = np.full(n, 1.0 / n)
        assert w @ cov @ w == pytest.approx(1.0, rel=1e-8)
    pinned = GMRFSmoothness(64, sigma=1.0, order=2, boundary="dirichlet")
    sd = pinned.pointwise_sd()
    assert sd[0] < 0.1 * sd[32]  # pinned to the mean at the walls
    # centred density == dense MVN (rank-one term of the average included)
    free = GMRFSmoothness(20, sigma=0.7, order=2, boundary="periodic", mean_sd=0.5)
    u = np.random.default_rng(2).normal(size=20)
    ref = multivariate_normal(np.zeros(20), free.covariance()).logpdf(u)
    assert float(free.distribution().log_prob(jnp.asarray(u))) == pytest.approx(ref, rel=1e-8)


def test_cauchy_differences_are_discretisation_invariant():
    """u(0.75) - u(0.25) ~ Cauchy(0, scale * distance) on every grid (stable law)."""
    for n in (32, 128):
        prior = EdgePreserving(n, scale=3.0, kind="cauchy")
        u = prior.draw(jax.random.PRNGKey(n), 4000)
        x = Grid1D(n).x
        i, j = np.searchsorted(x, 0.25), np.searchsorted(x, 0.75)
        expected = 3.0 * (x[j] - x[i])
        # median |Cauchy(s)| = s; sampling sd of the median ~ 1.6 s / sqrt(4000) = 2.5%: allow 10%
        assert np.median(np.abs(u[:, j] - u[:, i])) == pytest.approx(expected, rel=0.10)


def test_laplace_differences_keep_variance_per_length_and_densities_match():
    prior = EdgePreserving(64, scale=2.0, kind="laplace", start_sd=0.5)
    u = prior.draw(jax.random.PRNGKey(0), 4000)
    # Var(u_end - u_start) = scale^2 * (L - h): 4 * 63/64; MC rel. sd of a variance of a
    # near-Gaussian sum ~ sqrt(2/4000) = 2.2%: allow 8%
    assert np.var(u[:, -1] - u[:, 0]) == pytest.approx(4.0 * 63 / 64, rel=0.08)
    # whitened and centred parameterisations give the same density of the field (change of
    # variables with a unit-triangular Jacobian scaled by the step)
    v = jnp.asarray(u[0])
    d = prior.distribution()
    s = float(prior.step_scale(2.0, 1 / 64))
    manual = (dist.Laplace(0, s).log_prob(jnp.diff(v)).sum() + dist.Normal(0, 0.5).log_prob(v[0]))
    assert float(d.log_prob(v)) == pytest.approx(float(manual), rel=1e-12)


def test_hyperpriors_become_sites_and_whitened_draws_match_the_covariance():
    prior = MaternSPDE(Grid1D(32), sigma=dist.LogNormal(0.0, 0.3), length_scale=dist.LogNormal(-1.5, 0.2))

    def model():
        prior.sample("u")

    tr = handlers.trace(handlers.seed(model, 0)).get_trace()
    assert {"u_sigma", "u_length_scale", "u_white", "u"} <= set(tr)
    assert tr["u"]["type"] == "deterministic" and tr["u"]["value"].shape == (32,)
    fixed = MaternKL(Grid1D(32), n_modes=20, sigma=0.5, length_scale=0.2)
    draws = fixed.draw(jax.random.PRNGKey(1), 6000)
    # sample covariance vs exact: entries have MC sd ~ var * sqrt(2/6000) = 1.8%; allow 8% of the variance
    assert np.abs(np.cov(draws.T) - fixed.covariance()).max() < 0.08 * 0.25
    with pytest.raises(OptionError, match="hyperprior"):
        prior.covariance()
    assert prior.covariance(sigma=1.0, length_scale=0.2).shape == (32, 32)


def test_bad_prior_input_names_the_field():
    with pytest.raises(OptionError, match="'length_scale'"):
        MaternSPDE(32, length_scale=-1.0)
    with pytest.raises(OptionError, match="'boundary'"):
        MaternSPDE(32, boundary="robin")
    with pytest.raises(OptionError, match="'order'"):
        GMRFSmoothness(32, order=3)
    with pytest.raises(OptionError, match="'kind'"):
        EdgePreserving(32, kind="huber")
    with pytest.raises(OptionError, match="'grid'"):
        MaternSPDE("fine")
    with pytest.raises(OptionError, match="uniform"):
        MaternSPDE(Grid1D.from_edges([0.0, 0.1, 0.5, 1.0]))
    with pytest.raises(OptionError, match="'preconditioner'"):
        def m():
            MaternSPDE(8).sample("u", preconditioner=(np.zeros(3), np.eye(3)))
        handlers.seed(m, 0)()


def test_priors_accept_pde_grids():
    g2 = Grid2D(6, 4, lx=2.0, ly=1.0)
    prior = MaternSPDE(g2, sigma=1.0, length_scale=0.5)
    assert prior.grid.shape == (6, 4)
    assert np.allclose(prior.grid.centres[0], g2.X) and np.allclose(prior.grid.centres[1], g2.Y)


# -- exact posterior, Laplace, summaries ----------------------------------------------------
def test_heat_semigroup_apply_is_the_matrix_product():
    from bayesbio.fields import heat_semigroup_apply

    g = Grid1D(40)
    u = np.random.default_rng(1).standard_normal(40)
    dense = np.asarray(heat_semigroup(g, 0.01, 0.7)) @ u
    # the same eigendecomposition on both sides: they differ by rounding only (~1e-15 |u|)
    assert np.allclose(heat_semigroup_apply(g, u, 0.01, 0.7), dense, rtol=0, atol=1e-12)


def test_exact_posterior_matches_dense_formula():
    rng = np.random.default_rng(3)
    prior = MaternSPDE(24, sigma=1.0, length_scale=0.3, mean=0.2)
    a = rng.normal(size=(10, 24))
    y = rng.normal(size=10)
    y[3] = np.nan  # missing
    post = linear_gaussian_posterior(prior, a, y, 0.3)
    keep = np.isfinite(y)
    c = prior.covariance()
    s = a[keep] @ c @ a[keep].T + 0.09 * np.eye(keep.sum())
    gain = c @ a[keep].T @ np.linalg.inv(s)
    mean = 0.2 + gain @ (y[keep] - a[keep] @ np.full(24, 0.2))
    cov = c - gain @ a[keep] @ c
    # Kalman-gain form vs whitened-Cholesky form: rounding only
    assert np.allclose(post.mean, mean, atol=1e-10) and np.allclose(post.covariance, cov, atol=1e-10)
    with pytest.raises(DataError, match="'y'"):
        linear_gaussian_posterior(prior, a, y[:5], 0.3)


def test_posterior_is_discretisation_invariant():
    """Posterior mean/sd at fixed physical locations for 64, 128 and 256 cells.

    The prior is a Karhunen–Loève Matérn field: its 32 coefficients mean the same on every
    grid, so the posterior is evaluated exactly at the same points (the 64-grid centres) from
    every grid's posterior of the coefficients — no interpolation of rough fields. Only the
    forward operator (finite-volume heat semigroup, 40 sensors) changes with the grid. Data
    simulated on a 1024-cell grid, T = 0.002 as the bundled problem. Measured: max change
    of the mean 1.7% / 0.5% / 2.1% and of the sd 0.7% / 0.2% / 0.9% of the prior sd for
    64<->128 / 128<->256 / 64<->256 (the 64-cell heat operator's O(h^2) error dominates).
    """
    T = 0.002
    sens = (np.arange(40) + 0.5) / 40
    gf = Grid1D(1024)
    truth = backward_heat.true_initial_temperature
    y = interpolation_matrix(gf, sens) @ np.asarray(heat_semigroup(gf, T)) @ truth(gf.x)
    y = y + 0.01 * np.random.default_rng(1).standard_normal(40)
    kl = dict(n_modes=32, sigma=1.0, length_scale=0.1)  # modes resolved on every grid (<= n/2)
    at = MaternKL(Grid1D(64), **kl).whitening_matrix()  # the fixed locations: 64-grid centres
    prior_sd = np.sqrt(np.sum(at**2, axis=1))
    res = {}
    for n in (64, 128, 256):
        g = Grid1D(n)
        op = interpolation_matrix(g, sens) @ np.asarray(heat_semigroup(g, T))
        post = linear_gaussian_posterior(MaternKL(g, **kl), op, y, 0.01)
        f = at @ post.info["white_factor"]
        res[n] = (at @ post.info["white_mean"], np.sqrt(np.sum(f**2, axis=1)))
    worst = {}
    for a, b in [(64, 128), (128, 256), (64, 256)]:
        worst[(a, b)] = (np.max(np.abs(res[a][0] - res[b][0]) / prior_sd), np.max(np.abs(res[a][1] - res[b][1]) / prior_sd))
    # acceptance: < 3% of the prior sd between 64, 128 and 256 grid points
    assert all(dm < 0.03 and ds < 0.03 for dm, ds in worst.values()), worst


def test_laplace_lowrank_matches_exact_backward_heat():
    from bayesbio.models import backward_heat as bh

    data = bh.load_data()
    prior = bh.prior(128)
    exact = linear_gaussian_posterior(prior, bh.forward_matrix(data), data["y"], data["noise_sd"])
    lap = laplace_field("backward_heat", field="u0", rank=60)
    m = compare_fields(lap, exact, prior.pointwise_sd())
    # a quadratic potential: the Laplace approximation is exact; the rank-60 truncation drops
    # misfit eigenvalues < 1e-10 (info), so only optimiser tolerance and rounding remain
    assert lap.info["smallest_kept_eigenvalue"] < 1e-6
    assert m["max_mean_error_prior_sd"] < 1e-4 and m["max_sd_rel_error"] < 1e-6
    s = summarize_field(exact, prob=0.95)
    assert np.all(s.lower < s.mean) and s.samples.shape == (5, 128)
    # the bundled truth (not a prior draw: plateau with edges) is inside the 95% band at most points
    assert band_coverage(exact, data["u0_true"]) > 0.9


def test_newton_mode_is_the_exact_posterior_mean_in_one_step():
    from bayesbio.models import deconvolution as dc

    data = dc.load_data()
    prior = dc.prior(data["y"].size)
    exact = linear_gaussian_posterior(prior, dc.forward_matrix(data), data["y"], data["noise_sd"])
    lap = laplace_field("deconvolution", field="u")  # mode="auto": Newton for 128 + margin latents
    assert lap.info["mode_method"] == "newton"
    # a quadratic potential: one Newton step from any start is the mode; the second iteration
    # only confirms it (Newton decrement below 1e-12)
    assert lap.info["optimizer_iterations"] == 1 and lap.info["newton_shifted_iterations"] == 0
    m = compare_fields(lap, exact, prior.pointwise_sd())
    # only rounding remains: a Cholesky solve with the whitened Hessian (condition number
    # ~1e5 here) loses ~5 of 16 digits, so 1e-8 of the prior sd is a wide margin; the dense
    # Hessian is exact for a quadratic, so the sd agrees to rounding as well
    assert m["max_mean_error_prior_sd"] < 1e-8 and m["max_sd_rel_error"] < 1e-8


def _exp_sensor_model(n=24):
    """A small nonlinear field problem: y = exp(u) at every third cell plus noise."""
    prior = MaternSPDE(Grid1D(n), sigma=0.8, length_scale=0.3)
    idx = np.arange(1, n, 3)
    truth = 0.6 * np.sin(2 * np.pi * Grid1D(n).x)
    y = np.exp(truth[idx]) + 0.05 * np.random.default_rng(3).standard_normal(idx.size)

    def model(data):
        u = prior.sample("u")
        numpyro.sample("y", dist.Normal(jnp.exp(u[idx]), 0.05), obs=data["y"])

    return model, {"y": y}


def test_newton_converges_to_the_lbfgs_mode_on_a_nonlinear_model():
    model, data = _exp_sensor_model()
    newton = laplace_field(model, data, field="u", mode="newton")
    lbfgs = laplace_field(model, data, field="u", mode="lbfgs")
    assert newton.info["mode_method"] == "newton" and lbfgs.info["mode_method"] == "lbfgs"
    assert 1 < newton.info["optimizer_iterations"] < 50
    # L-BFGS stops at max |gradient| <= 1e-8; in whitened coordinates the Hessian's eigenvalues
    # are >= 1 (prior identity plus a PSD misfit near the mode), so its mode is within
    # ~1e-8 * sqrt(n) of the exact one: 1e-6 bounds both the means and the sds' difference
    assert np.max(np.abs(newton.mean - lbfgs.mean)) < 1e-6
    assert np.max(np.abs(newton.sd / lbfgs.sd - 1)) < 1e-6


def test_newton_shifts_an_indefinite_hessian_and_reports_saddles():
    from bayesbio.fields._newton import newton_mode

    def double_well(x):  # minima at x0 = +-1; Hessian indefinite for |x0| < 1/sqrt(3)
        return (x[0] ** 2 - 1.0) ** 2 + 0.5 * x[1] ** 2

    r = newton_mode(double_well, jnp.array([0.1, 2.0]))
    assert r.converged and r.shifted >= 1
    # Newton's quadratic convergence ends far below the stopping decrement 1e-12
    assert np.allclose(r.x, [1.0, 0.0], atol=1e-8)
    flat = newton_mode(lambda x: x[0] ** 2 + 0.0 * x[1], jnp.array([1.0, 1.0]))
    assert not flat.converged and "not positive definite" in flat.reason and "flat direction" in flat.reason
    unbounded = newton_mode(lambda x: x[0] ** 2 - x[1] ** 2, jnp.array([1.0, 1.0]), max_iter=20)
    assert not unbounded.converged and "no convergence" in unbounded.reason
    nan = newton_mode(lambda x: jnp.sum(jnp.log(x)), jnp.array([-1.0, 1.0]))
    assert not nan.converged and "non-finite" in nan.reason


def test_newton_failure_falls_back_to_lbfgs(monkeypatch):
    import bayesbio.fields.laplace as fl
    from bayesbio.fields._newton import newton_mode

    def model(data):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        numpyro.factor("well", -10.0 * (z[0] ** 2 - 4.0) ** 2)  # modes near z0 = +-2
        numpyro.sample("y", dist.Normal(z[1], 1.0), obs=data["y"])
        numpyro.deterministic("f", z)

    data = {"y": np.zeros(1)}
    # Newton without the shift stops at the indefinite Hessian of the start (z0 near 0)
    monkeypatch.setattr(fl, "newton_mode", lambda *a, **k: newton_mode(*a, shift_indefinite=False, **k))
    lap = laplace_field(model, data, field="f", mode="newton", max_iter=300)
    assert lap.info["mode_method"] == "lbfgs"
    assert "not positive definite" in lap.info["newton_failure"]
    assert abs(abs(lap.mean[0]) - 2.0) < 0.05  # a well's minimum: 4 z0 (z0^2 - 4) * 10 = -z0


def test_a_flat_direction_fails_with_both_searches_named():
    from bayesbio.infer.laplace import LaplaceError

    data = {"y": np.zeros(1)}

    def flat_model(data):  # a direction no term of the potential depends on
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        free = numpyro.sample("free", dist.Normal(0.0, 1.0))
        numpyro.factor("cancel", 0.5 * free**2)  # cancels free's prior density: a flat potential
        numpyro.sample("y", dist.Normal(z[1], 1.0), obs=data["y"])
        numpyro.deterministic("f", z)

    with pytest.raises(LaplaceError, match="not positive definite.*Newton search"):
        laplace_field(flat_model, data, field="f", max_iter=300)
    with pytest.raises(OptionError, match="'mode'"):
        laplace_field(flat_model, data, field="f", mode="bfgs")


def test_summaries_from_draws_and_plots():
    import matplotlib

    matplotlib.use("Agg")
    from bayesbio.fields import plot_field

    draws = np.random.default_rng(0).normal(size=(4000, 16)) * 2.0 + 1.0
    s = summarize_field(draws, prob=0.9)
    # quantile band of N(1, 4): 1 +- 1.645 * 2; MC error of a 5% quantile ~ 0.06 with 4000 draws
    assert np.allclose(s.lower, 1 - 3.29, atol=0.25) and np.allclose(s.upper, 1 + 3.29, atol=0.25)
    assert band_coverage(s, np.ones(16)) == 1.0
    fig = plot_field([s], truth=np.ones(16))
    assert len(fig.axes[0].lines) >= 2
    with pytest.raises(DataError, match="'truth'"):
        band_coverage(s, np.ones(3))


# -- slow tier: the acceptance numbers ------------------------------------------------------
def _nuts_vs_exact(module, site, field_name):
    data = module.load_data()
    n = data["y"].size
    prior = module.prior(n)
    exact = linear_gaussian_posterior(prior, module.forward_matrix(data), data["y"], data["noise_sd"])
    pre = bb.fields.laplace_preconditioner(module.__name__.split(".")[-1], site=site)
    spec = bb.ModelSpec(field_name, module.make_model(preconditioner=pre), module.load_data, module.dims)
    idata = bb.sample_nuts(spec, chains=4, warmup=500, samples=2500, progress=False)
    return compare_fields(summarize_field(idata, field_name), exact, prior.pointwise_sd()), idata


@pytest.mark.slow
@pytest.mark.parametrize("name,site,field_name", [("backward_heat", "u0_white", "u0"), ("deconvolution", "u_white", "u")])
def test_nuts_and_laplace_match_exact_posterior_at_128_points(name, site, field_name):
    import importlib

    module = importlib.import_module(f"bayesbio.models.{name}")
    m, idata = _nuts_vs_exact(module, site, field_name)
    # acceptance: mean error < 2% of the prior sd, pointwise sd within 5%
    assert m["max_mean_error_prior_sd"] < 0.02, m
    assert m["max_sd_rel_error"] < 0.05, m
    data = module.load_data()
    exact = linear_gaussian_posterior(module.prior(128), module.forward_matrix(data), data["y"], data["noise_sd"])
    lap = laplace_field(name, field=field_name)  # dense Hessian
    ml = compare_fields(lap, exact, module.prior(128).pointwise_sd())
    assert ml["max_mean_error_prior_sd"] < 0.02 and ml["max_sd_rel_error"] < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("name", ["backward_heat", "deconvolution"])
def test_credible_band_coverage_over_50_simulated_data_sets(name):
    """Truth drawn from the prior, data simulated, exact 95% bands: coverage consistent with 95%."""
    import importlib

    module = importlib.import_module(f"bayesbio.models.{name}")
    prior = module.prior(128)
    truths = prior.draw(jax.random.PRNGKey(7), 50)
    fractions = []
    for k, truth in enumerate(truths):
        field = "u0" if name == "backward_heat" else "u"
        data = module.simulate(seed=1000 + k, **{field: truth})
        post = linear_gaussian_posterior(prior, module.forward_matrix(data), data["y"], data["noise_sd"])
        fractions.append(band_coverage(post, truth))
    fractions = np.array(fractions)
    se = fractions.std(ddof=1) / np.sqrt(fractions.size)
    # the per-data-set fractions are independent: the mean is within 3 standard errors of 0.95
    assert abs(fractions.mean() - 0.95) < 3 * se + 1e-3, (fractions.mean(), se)


@pytest.mark.slow
def test_diffusivity_field_nuts_converges_and_covers_truth():
    from bayesbio.models import diffusivity_field as df

    pre = bb.fields.laplace_preconditioner("diffusivity_field", site="log_kappa_white")
    spec = bb.ModelSpec("diffusivity_field", df.make_model(preconditioner=pre), df.load_data, df.dims)
    idata = bb.sample_nuts(spec, chains=4, warmup=1000, samples=1000, progress=False)
    import arviz as az

    rhat = az.rhat(idata, var_names=["log_kappa"])["log_kappa"].values
    assert rhat.max() < 1.01
    cover = band_coverage(summarize_field(idata, "log_kappa"), df.load_data()["log_kappa_true"])
    assert cover >= 0.90
