"""PDE layer: finite-volume operators and the IMEX integrator against exact answers; scratch-assay model.

Exact references:
* heat equation on [0, 1] — eigenfunction expansions (sine modes for Dirichlet, cosine modes
  for no-flux boundaries);
* the semi-discrete heat equation ``u' = A u`` — the matrix exponential of the operator's
  matrix (isolates the time-integration error);
* a 2-D separable solution ``cos(πx) sin(2πy) exp(-5π² D t)`` (no flux in x, Dirichlet in y);
* Fisher–KPP and Porous-Fisher on a small grid — diffrax's Kvaerno5 at tight tolerances
  (a different, adaptive integrator) on the same method-of-lines system.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
import scipy.linalg

import bayesbio as bb
from bayesbio import pde
from bayesbio.errors import DataError, OptionError, SolverError


def heat_exact(x, t, bc):
    """Three modes of the eigen-expansion on [0, 1] with D = 1."""
    if bc == "dirichlet":
        return sum(np.exp(-(k * np.pi) ** 2 * t) * np.sin(k * np.pi * x) / k for k in (1, 2, 3))
    return 1.0 + sum(np.exp(-(k * np.pi) ** 2 * t) * np.cos(k * np.pi * x) / k for k in (1, 2, 3))


def observed_orders(errors):
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


# ------------------------------------------------------------------------------------------
# operators


def test_diffusion_stencil_and_matrix_agree():
    g = pde.Grid1D(4)
    assert pde.diffusion(jnp.array([0.0, 0.0, 1.0, 0.0]), g, 1.0).tolist() == [0.0, 16.0, -32.0, 16.0]
    bc = {"left": "dirichlet", "right": pde.Neumann(1.5), "bottom": "no-flux", "top": pde.Dirichlet(3.0)}
    g2 = pde.Grid2D(5, 4, lx=1.0, ly=2.0)
    u = np.random.default_rng(1).random(g2.shape)
    A = pde.diffusion_matrix(g2, 2.0, bc)
    b = pde.diffusion_source(g2, 2.0, bc)
    assert A.shape == (20, 20)
    # A u + b reproduces the matrix-free operator to rounding (entries ~ D/dx² ~ 100)
    np.testing.assert_allclose(A @ u.ravel() + b.ravel(), pde.diffusion(u, g2, 2.0, bc).ravel(), atol=1e-11)
    # uniform grid: the finite-volume operator is symmetric
    np.testing.assert_allclose(A, A.T, atol=1e-12)
    # 2-D ordering (C order, i * ny + j) is the Kronecker sum of the 1-D operators
    Ax = pde.diffusion_matrix(g2.gx, 2.0, ("dirichlet", "no-flux"))
    Ay = pde.diffusion_matrix(g2.gy, 2.0, ("no-flux", "dirichlet"))
    np.testing.assert_allclose(A, np.kron(Ax, np.eye(4)) + np.kron(np.eye(5), Ay), atol=1e-12)


def test_no_flux_columns_sum_to_zero_for_any_diffusivity():
    g = pde.Grid1D.from_edges(np.cumsum(np.r_[0.0, np.random.default_rng(2).uniform(0.5, 1.5, 12)]))
    D_cells = jnp.asarray(np.random.default_rng(3).uniform(0.2, 2.0, g.n))
    A = pde.diffusion_matrix(g, D_cells, "no-flux")
    # conservation: sum_i dx_i (A u)_i = 0 for every u  <=>  dx^T A = 0 (rounding of entries ~ 10)
    np.testing.assert_allclose(g.dx @ np.asarray(A), 0.0, atol=1e-12)


def test_linear_profile_is_steady_on_non_uniform_grid():
    g = pde.Grid1D.from_edges(np.array([0.0, 0.1, 0.3, 0.35, 0.6, 0.8, 1.0]))
    u = 2.0 + 3.0 * g.x
    bc = (pde.Dirichlet(2.0), pde.Dirichlet(5.0))
    # the scheme is exact for linear solutions (rounding of entries ~ 1/dx² ~ 400)
    np.testing.assert_allclose(pde.diffusion(u, g, 0.7, bc), 0.0, atol=1e-11)
    # ... and a Neumann gradient of 3 gives the same
    np.testing.assert_allclose(pde.diffusion(u, g, 0.7, (pde.Neumann(-3.0), pde.Neumann(3.0))), 0.0, atol=1e-11)


def test_heat_equation_second_order_in_space():
    """Semi-discrete solution (exact in time: matrix exponential) vs the eigen-expansion."""
    t = 0.05
    for bc in ("dirichlet", "no-flux"):
        errors = []
        for n in (20, 40, 80, 160):
            g = pde.Grid1D(n)
            A = np.asarray(pde.diffusion_matrix(g, 1.0, bc))
            u = scipy.linalg.expm(A * t) @ heat_exact(g.x, 0.0, bc)
            errors.append(np.abs(u - heat_exact(g.x, t, bc)).max())
        orders = observed_orders(errors)
        # acceptance: observed order within 0.1 of 2
        assert np.all(np.abs(orders - 2.0) < 0.1), (bc, errors, orders)


def test_heat_equation_full_discretisation_converges_at_second_order():
    """solve_pde with dt ∝ dx: space and time errors both O(h²)."""
    t = 0.05
    errors = []
    for n in (20, 40, 80):
        g = pde.Grid1D(n)
        heat = pde.ReactionDiffusion(g, diffusivity=1.0, bc="dirichlet")
        u = pde.solve_pde_with_status(heat, heat_exact(g.x, 0.0, "dirichlet"), [t], dt=0.1 / n).ys[0]
        errors.append(np.abs(np.asarray(u) - heat_exact(g.x, t, "dirichlet")).max())
    orders = observed_orders(errors)
    assert np.all(np.abs(orders - 2.0) < 0.1), (errors, orders)


def test_integrator_is_second_order_in_time():
    g = pde.Grid1D(40)
    A = np.asarray(pde.diffusion_matrix(g, 1.0, "dirichlet"))
    u0 = np.sin(np.pi * g.x) + 0.3 * np.sin(3 * np.pi * g.x)
    exact = scipy.linalg.expm(A * 0.2) @ u0
    heat = pde.ReactionDiffusion(g, diffusivity=lambda D: D, bc="dirichlet")
    errors = [
        np.abs(np.asarray(pde.solve_pde_with_status(heat, u0, [0.2], 1.0, dt=dt).ys[0]) - exact).max()
        for dt in (0.01, 0.005, 0.0025)
    ]
    orders = observed_orders(errors)
    # SBDF2 is second order (BDF2 for the linear part)
    assert np.all(np.abs(orders - 2.0) < 0.1), (errors, orders)


@pytest.mark.parametrize("m", [0.0, 1.0], ids=["fisher_kpp", "porous_fisher"])
def test_reaction_diffusion_matches_diffrax_and_is_second_order(m):
    g = pde.Grid1D(30)

    def diffusivity(p):
        return pde.porous_diffusivity(p["D"], 1.0, m=m) if m else p["D"]

    problem = pde.ReactionDiffusion(g, diffusivity=diffusivity, reaction=lambda u, p: pde.logistic(u, p["lam"], 1.0))
    params = {"D": 0.01, "lam": 2.0}
    u0 = np.exp(-(((g.x - 0.3) / 0.1) ** 2))
    ts = np.array([0.5, 1.0])
    ref = bb.solve_with_status(problem.rhs, jnp.asarray(u0), ts, params, solver="kvaerno5", rtol=1e-11, atol=1e-13)
    assert not bool(ref.failed)
    errors = []
    for dt in (0.02, 0.01, 0.005):
        sol = pde.solve_pde_with_status(problem, u0, ts, params, dt=dt)
        errors.append(np.abs(np.asarray(sol.ys) - np.asarray(ref.ys)).max())
    orders = observed_orders(errors)
    # IMEX BDF2 (explicit logistic, implicit and, for m=1, linearly-implicit diffusion): order 2
    assert np.all(np.abs(orders - 2.0) < 0.15), (errors, orders)
    assert errors[-1] < 1e-4


def test_traced_output_times_give_the_same_solution():
    g = pde.Grid1D(20)
    problem = pde.ReactionDiffusion(g, diffusivity=0.01, reaction=lambda u, p: pde.logistic(u, p, 1.0))
    u0 = np.exp(-(((g.x - 0.3) / 0.1) ** 2))
    ts = np.array([0.5, 1.0])
    direct = pde.solve_pde_with_status(problem, u0, ts, 1.0, steps_per_interval=25).ys
    traced = jax.jit(lambda t: pde.solve_pde_with_status(problem, u0, t, 1.0, steps_per_interval=25).ys)(ts)
    np.testing.assert_allclose(traced, direct, rtol=0, atol=1e-14)  # same arithmetic
    bad = jax.jit(lambda t: pde.solve_pde_with_status(problem, u0, t, 1.0, steps_per_interval=5).failed)
    assert bool(bad(jnp.array([0.5, 0.4])))  # decreasing times: a failed solve, not a NaN


def test_no_flux_conserves_mass_1d_and_2d():
    g = pde.Grid1D.from_edges(np.cumsum(np.r_[0.0, np.random.default_rng(4).uniform(0.5, 1.5, 40)]))
    u0 = np.exp(-(((g.x - 10.0) / 3.0) ** 2))
    porous = pde.ReactionDiffusion(g, diffusivity=pde.porous_diffusivity(2.0, 1.0))
    ys = np.asarray(pde.solve_pde_with_status(porous, u0, [5.0, 20.0], dt=0.1).ys)
    mass0 = g.dx @ u0
    # acceptance: relative mass drift below 1e-10 (rounding accumulates over 200 steps)
    assert np.abs(ys @ g.dx / mass0 - 1).max() < 1e-10
    assert np.ptp(ys[-1]) < np.ptp(u0)  # and it did diffuse

    g2 = pde.Grid2D(24, 20, lx=1.0, ly=0.8)
    v0 = np.exp(-((g2.X - 0.3) ** 2 + (g2.Y - 0.4) ** 2) / 0.02)
    for D in (0.05, pde.porous_diffusivity(0.05, 1.0)):  # fast diagonalisation; CG
        sol = pde.solve_pde_with_status(pde.ReactionDiffusion(g2, diffusivity=D), v0, [0.5, 1.0], dt=0.02)
        assert not bool(sol.failed)
        mass = np.asarray(sol.ys).reshape(2, -1).sum(1) / v0.sum()
        assert np.abs(mass - 1).max() < 1e-10, mass


def test_2d_separable_exact_solution():
    D, t = 0.1, 0.2
    bc = {"left": "no-flux", "right": "no-flux", "bottom": "dirichlet", "top": "dirichlet"}
    errors = []
    for n in (16, 32, 64):
        g = pde.Grid2D(n, n)
        u0 = np.cos(np.pi * g.X) * np.sin(2 * np.pi * g.Y)
        exact = u0 * np.exp(-5 * np.pi**2 * D * t)
        sol = pde.solve_pde_with_status(pde.ReactionDiffusion(g, diffusivity=D, bc=bc), u0, [t], dt=t / 200)
        errors.append(np.abs(np.asarray(sol.ys[0]) - exact).max())
    orders = observed_orders(errors)
    assert np.all(np.abs(orders - 2.0) < 0.1), (errors, orders)
    # the matrix-free CG path (cell-valued D) solves the same linear systems as the exact
    # fast diagonalisation: agreement to the CG tolerance (relative residual 1e-10)
    g = pde.Grid2D(16, 16)
    u0 = np.cos(np.pi * g.X) * np.sin(2 * np.pi * g.Y)
    fd = pde.solve_pde_with_status(pde.ReactionDiffusion(g, diffusivity=D, bc=bc), u0, [t], dt=t / 50).ys
    cg = pde.solve_pde_with_status(pde.ReactionDiffusion(g, diffusivity=jnp.full(g.shape, D), bc=bc), u0, [t], dt=t / 50)
    assert not bool(cg.failed)
    np.testing.assert_allclose(cg.ys, fd, atol=1e-9)


# ------------------------------------------------------------------------------------------
# gradients


def _central_difference(f, params, key, step):
    up = dict(params, **{key: params[key] + step})
    down = dict(params, **{key: params[key] - step})
    return (f(up) - f(down)) / (2 * step)


@pytest.mark.parametrize("case", ["1d_porous", "2d_constant", "2d_porous_cg"])
def test_gradients_match_finite_differences(case):
    if case == "1d_porous":
        g = pde.Grid1D(40)
        u0 = np.exp(-(((g.x - 0.3) / 0.1) ** 2))
        D = lambda p: pde.porous_diffusivity(p["D"], 1.0)  # noqa: E731
        dt = 0.02
    else:
        g = pde.Grid2D(12, 10)
        u0 = np.exp(-((g.X - 0.4) ** 2 + (g.Y - 0.5) ** 2) / 0.02)
        D = (lambda p: p["D"]) if case == "2d_constant" else (lambda p: pde.porous_diffusivity(p["D"], 1.0))
        dt = 0.1
    problem = pde.ReactionDiffusion(g, diffusivity=D, reaction=lambda u, p: pde.logistic(u, p["lam"], 1.0))
    target = np.asarray(pde.solve_pde_with_status(problem, u0, [0.5, 1.0], {"D": 0.012, "lam": 1.6}, dt=dt).ys)

    @jax.jit
    def loss(p):
        ys = pde.solve_pde_with_status(problem, u0, [0.5, 1.0], p, dt=dt).ys
        return jnp.sum((ys - target) ** 2)

    params = {"D": 0.01, "lam": 2.0}
    grad = jax.grad(loss)(params)
    for key in params:
        fd = float(_central_difference(loss, params, key, 1e-6 * params[key]))
        # central differences with a relative step 1e-6: truncation ~1e-12 relative, rounding
        # ~1e-16/1e-6 = 1e-10 relative to the loss; 1e-6 relative leaves ample room
        # (CG case: CG tolerance 1e-10 relative enters both sides)
        assert abs(float(grad[key]) - fd) <= 1e-6 * abs(fd) + 1e-9, (key, grad[key], fd)


def test_forward_and_adjoint_sensitivities_agree():
    g = pde.Grid1D(8)
    problem = pde.ReactionDiffusion(
        g, diffusivity=lambda p: pde.porous_diffusivity(p["D"], 1.0), reaction=lambda u, p: pde.logistic(u, p["lam"], 1.0)
    )

    def loss(params, u0, sensitivity):
        ys = pde.solve_pde_with_status(problem, u0, [0.5, 1.0], params, dt=0.01, sensitivity=sensitivity).ys
        return jnp.sum(ys**2)

    params = {"D": 0.01, "lam": 2.0}
    u0 = jnp.exp(-(((jnp.asarray(g.x) - 0.3) / 0.2) ** 2))
    fwd = jax.grad(loss, argnums=(0, 1))(params, u0, "forward")
    adj = jax.grad(loss, argnums=(0, 1))(params, u0, "adjoint")
    for a, b in zip(jax.tree_util.tree_leaves(fwd), jax.tree_util.tree_leaves(adj)):
        np.testing.assert_allclose(a, b, rtol=1e-10)  # both exact derivatives of the same scheme
    # and "auto" picks forward mode of the parameters alone under jit(grad) (u0 is not differentiated)
    auto = jax.jit(jax.grad(loss), static_argnums=2)(params, u0, "auto")
    np.testing.assert_allclose(auto["D"], fwd[0]["D"], rtol=1e-10)
    np.testing.assert_allclose(auto["lam"], fwd[0]["lam"], rtol=1e-10)
    # with u0 differentiated too, "auto" takes reverse mode inside the custom VJP: same numbers
    both = jax.grad(loss, argnums=(0, 1))(params, u0, "auto")
    for a, b in zip(jax.tree_util.tree_leaves(both), jax.tree_util.tree_leaves(adj)):
        np.testing.assert_allclose(a, b, rtol=1e-10)  # exact derivatives of the same scheme


# ------------------------------------------------------------------------------------------
# failure and bad input


def test_blow_up_is_a_failed_solve_and_minus_infinity_in_a_model():
    g = pde.Grid1D(10)
    problem = pde.ReactionDiffusion(g, diffusivity=1.0, reaction=lambda u, p: p * u**3)
    sol = pde.solve_pde_with_status(problem, np.ones(10), [10.0], 50.0, dt=1.0)
    assert bool(sol.failed)
    assert np.all(np.asarray(sol.ys) == 1.0)  # finite placeholder

    def model(rate):
        pde.solve_pde(problem, np.ones(10), [10.0], rate, dt=1.0)

    log_density, _ = numpyro.infer.util.log_density(model, (50.0,), {}, {})
    assert float(log_density) == -np.inf
    log_density, _ = numpyro.infer.util.log_density(model, (1e-3,), {}, {})
    assert float(log_density) == 0.0


def test_bad_input_raises_named_errors():
    g = pde.Grid1D(10)
    with pytest.raises(OptionError, match="'n' must be at least 2"):
        pde.Grid1D(1)
    with pytest.raises(OptionError, match="strictly increasing"):
        pde.Grid1D.from_edges([0.0, 1.0, 1.0])
    with pytest.raises(OptionError, match="missing \\['top'\\]"):
        pde.diffusion(np.zeros((3, 3)), pde.Grid2D(3, 3), 1.0, {"left": "dirichlet", "right": "dirichlet", "bottom": "no-flux"})
    with pytest.raises(OptionError, match="diffusivity 'D' must be"):
        pde.diffusion(np.zeros(10), g, np.ones(7))
    with pytest.raises(OptionError, match="boundary condition 'bc'"):
        pde.diffusion(np.zeros(10), g, 1.0, "periodic")
    with pytest.raises(SolverError, match="'u' must have the grid's shape"):
        pde.diffusion(np.zeros(9), g, 1.0)
    with pytest.raises(OptionError, match="nonlinear"):
        pde.diffusion_matrix(g, pde.porous_diffusivity(1.0, 1.0))
    problem = pde.ReactionDiffusion(g, diffusivity=1.0)
    with pytest.raises(SolverError, match="'u0' must have the grid's shape"):
        pde.solve_pde_with_status(problem, np.zeros(9), [1.0])
    with pytest.raises(SolverError, match="increasing"):
        pde.solve_pde_with_status(problem, np.zeros(10), [1.0, 0.5])
    with pytest.raises(SolverError, match="steps_per_interval"):
        jax.jit(lambda t: pde.solve_pde_with_status(problem, np.zeros(10), t).ys)(jnp.array([1.0]))
    with pytest.raises(OptionError, match="'dt' must be a positive number"):
        pde.solve_pde_with_status(problem, np.zeros(10), [1.0], dt=-1.0)
    with pytest.raises(OptionError, match="'grid' must be a Grid1D or Grid2D"):
        pde.ReactionDiffusion("grid")
    with pytest.raises(DataError, match="strictly increasing"):
        pde.interpolate_profile(g, [1.0, 0.5], [0.0, 1.0])


def test_interpolate_profile():
    g = pde.Grid1D(4, length=4.0)  # centres 0.5 ... 3.5
    u = pde.interpolate_profile(g, [0.0, 2.0, 4.0], jnp.array([0.0, 2.0, 0.0]))
    np.testing.assert_allclose(u, [0.5, 1.5, 1.5, 0.5])
    np.testing.assert_allclose(pde.interpolate_profile(g, [1.0, 3.0], [1.0, 2.0], method="nearest"), [1, 1, 2, 2])


# ------------------------------------------------------------------------------------------
# scratch-assay model


@pytest.fixture(scope="module")
def scratch():
    from bayesbio.models import scratch_assay

    return scratch_assay


def test_scratch_assay_data_and_model(scratch):
    data = scratch.load_data()
    assert data["y"].shape == (6, 4, 38, 3) and data["u0"].shape == (6, 38)
    np.testing.assert_array_equal(data["ts"], [12, 24, 36, 48])
    spec = bb.load_model("scratch_assay")
    assert set(spec.dims["y"]) == {"density", "time", "x", "replicate"}
    with pytest.raises(DataError, match="initial densities \\[11000\\]"):
        scratch.load_data(densities=[11000])
    one = scratch.load_data(densities=[20000])
    for kind in scratch.MODELS:
        log_density, _ = numpyro.infer.util.log_density(
            scratch.make_model(kind), (one,), {},
            {"D": jnp.array([800.0]), "lambda": jnp.array([0.05]), "K": 1.7e-3, "sigma": 2e-4},
        )
        assert np.isfinite(float(log_density))


def test_scratch_assay_discretisation_error_is_small_against_the_noise(scratch, monkeypatch):
    """Default grid/steps vs 4x finer in space and 8x in time, at typical posterior values."""
    data = scratch.load_data()
    for kind, D in (("porous_fisher", 1500.0), ("fisher_kpp", 600.0)):
        args = (kind, data, jnp.full(6, D), jnp.full(6, 0.05), 1.7e-3)
        coarse, failed = scratch.simulate(*args)
        assert not np.any(failed)
        monkeypatch.setattr(scratch, "REFINE", 8)
        monkeypatch.setattr(scratch, "STEPS_PER_INTERVAL", 96)
        fine, _ = scratch.simulate(*args)
        monkeypatch.undo()
        # the measurement noise sd is ~1.5e-4 cells/µm² (posterior of sigma); the discretisation
        # error must be a small fraction of it
        assert np.abs(np.asarray(coarse) - np.asarray(fine)).max() < 1e-5


@pytest.mark.slow
def test_scratch_assay_porous_fisher_beats_fisher_kpp(scratch):
    """Jin et al. (2016), qualitatively: LOO prefers Porous-Fisher, and Fisher–KPP's D and λ
    drift with the initial density more than Porous-Fisher's."""
    import arviz as az

    data = scratch.load_data()
    fits = {
        kind: bb.sample_nuts(
            scratch.make_model(kind), data, dims=scratch.dims, coords=scratch.coords(data),
            chains=4, warmup=500, samples=500, seed=3,
        )
        for kind in ("fisher_kpp", "porous_fisher")
    }
    spread = {}
    for kind, idata in fits.items():
        assert int(idata.sample_stats["diverging"].sum()) == 0
        assert float(az.rhat(idata, var_names=["D", "lambda", "K", "sigma"]).to_array().max()) < 1.01
        med = {n: np.median(idata.posterior[n].values.reshape(-1, 6), axis=0) for n in ("D", "lambda")}
        spread[kind] = {n: med[n].max() / med[n].min() for n in med}
    loo = {kind: az.loo(idata) for kind, idata in fits.items()}
    diff = loo["porous_fisher"].elpd_loo - loo["fisher_kpp"].elpd_loo
    se = az.compare(fits, ic="loo").loc["fisher_kpp", "dse"]
    print({k: (v.elpd_loo, v.se) for k, v in loo.items()}, "diff", diff, "dse", se, "spread", spread)
    # "better by LOO": more than two standard errors of the difference
    assert diff > 2 * se
    # drift: Fisher–KPP's estimates vary more across the six densities than Porous-Fisher's
    assert spread["fisher_kpp"]["D"] > spread["porous_fisher"]["D"]
    assert spread["fisher_kpp"]["lambda"] > spread["porous_fisher"]["lambda"]
