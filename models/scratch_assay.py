"""Scratch assay (Jin et al. 2016): Porous-Fisher or Fisher–KPP reaction–diffusion, all densities jointly.

Cells were seeded at six initial densities (10,000–20,000 cells per
well), a scratch was made, and cells were counted in 38 columns of 50 µm across a 1,900 µm
field of view at 0, 12, 24, 36 and 48 h, three replicates each (Jin et al. 2016, J. Theor.
Biol. 390:136). The density ``u(x, t)`` (cells/µm²) follows

    ∂u/∂t = ∂/∂x ( D (u/K)^m ∂u/∂x ) + λ u (1 - u/K),     no flux at x = 0 and 1,900 µm,

with ``m = 1`` (Porous-Fisher, the default model) or ``m = 0`` (Fisher–KPP). The initial
condition is the replicate-mean profile at t = 0, linearly interpolated onto the grid. Each
initial density has its own ``D`` (µm²/h) and ``lambda`` (1/h), so that their drift with the
initial density — the sign of a misspecified model in Jin et al. — shows in one fit; the
carrying capacity ``K`` (cells/µm²) and the measurement noise ``sigma`` (cells/µm²) are shared.
Measurements at 12–48 h are Normal around the model's column averages.

Numerics: a cell-centred finite-volume grid of ``REFINE`` cells per 50 µm column, second-
order IMEX BDF2 with ``STEPS_PER_INTERVAL`` steps per 12 h (``bayesbio.pde.solve_pde``); the
discretisation error at these settings is below 2 % of the noise level (``tests/test_pde.py``).

``make_model("fisher_kpp")`` gives the Fisher–KPP variant (used by the tutorial and
``benchmarks/`` for the model comparison); ``load_data(densities=[...])`` selects densities.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from numpyro.infer import init_to_sample

import bayesbio as bb
from bayesbio import pde

description = "Scratch assay (Jin et al. 2016): Porous-Fisher reaction–diffusion PDE, six initial densities jointly"

#: Width of a counting column (µm) in the bundled data.
COLUMN_WIDTH_UM = 50.0
#: Finite-volume cells per counting column.
REFINE = 2
#: Time steps per 12 h between measurements.
STEPS_PER_INTERVAL = 12
#: Gradient method of the solves. Reverse mode: measured as fast as forward sensitivities of the
#: three parameters per solve here (1.71 vs 1.68 ms per log-density gradient, load ~10), and the
#: converged default run recorded in benchmarks/results/reaction_diffusion_scratch_assay_fit.md
#: used it.
SENSITIVITY = "adjoint"
#: Carrying capacity estimated by Jin et al. (2016) as quoted by VandenHeuvel et al. (2022).
K_JIN = 1.7e-3

MODELS = {"porous_fisher": 1.0, "fisher_kpp": 0.0}

#: NUTS starts each chain at a draw from the prior (dispersed starting points for R-hat, all of
#: them physically plausible). The runner's default, uniform in (-2, 2) on the unconstrained
#: scale, would start D at 0.1–7 µm²/h and K at 0.1–7 cells/µm² — three orders of magnitude from
#: any plausible value — and lambda up to 7/h, where the explicit reaction of a 1 h IMEX step is
#: unstable.
init_strategy = init_to_sample
#: Simulation-based calibration settings (`bayesbio sbc scratch_assay`): one replication per batch
#: (vmapped replications wait for the slowest one's trees); run with `--workers` = cores.
sbc = {"reps": 200, "warmup": 500, "draws": 99, "thin": 5, "batch": 1}

dims = {
    "D": ["density"],
    "lambda": ["density"],
    "y": ["density", "time", "x", "replicate"],
}


def coords(data):
    return {
        "density": np.asarray(data["initial_cells"]).astype(int),
        "time": np.asarray(data["ts"]),
        "x": np.asarray(data["x"]),
        "replicate": np.arange(1, np.shape(data["y"])[-1] + 1),
    }


def load_data(path=None, densities=None):
    """Counts as densities: ``u0`` (t = 0 replicate mean) and ``y`` at later times.

    Returns a dict with ``initial_cells`` (n_densities,), ``ts`` (h, times after 0),
    ``x`` (µm, column centres), ``u0`` (n_densities, n_columns) and ``y`` (n_densities,
    n_times, n_columns, n_replicates; NaN where a replicate is missing), densities in cells/µm².
    """
    source = path or "scratch_assay"
    table = bb.datasets.load("scratch_assay") if path is None else pd.read_csv(path)
    bb.require_columns(
        table, ["initial_cells_per_well", "time_h", "position_um", "replicate", "density_cells_per_um2"], source=source
    )
    if densities is not None:
        wanted = [int(d) for d in np.atleast_1d(densities)]
        missing = sorted(set(wanted) - set(table["initial_cells_per_well"].astype(int)))
        if missing:
            raise bb.errors.DataError(
                f"scratch_assay: initial densities {missing} are not in '{source}' (column 'initial_cells_per_well'); "
                f"available: {sorted(table['initial_cells_per_well'].astype(int).unique())}"
            )
        table = table[table["initial_cells_per_well"].astype(int).isin(wanted)]
    cube = table.pivot_table(
        index=["initial_cells_per_well", "time_h", "position_um"], columns="replicate",
        values="density_cells_per_um2", aggfunc="mean", dropna=False,
    )
    dens = np.sort(table["initial_cells_per_well"].unique())
    times = np.sort(table["time_h"].unique())
    xs = np.sort(table["position_um"].unique())
    if times[0] != 0:
        raise bb.errors.DataError(f"scratch_assay: column 'time_h' of '{source}' needs the t = 0 profile; earliest time is {times[0]}")
    if xs.size < 2 or not np.allclose(np.diff(xs), COLUMN_WIDTH_UM) or not np.isclose(xs[0], COLUMN_WIDTH_UM / 2):
        raise bb.errors.DataError(
            f"scratch_assay: column 'position_um' of '{source}' must be column centres {COLUMN_WIDTH_UM / 2:g}, "
            f"{1.5 * COLUMN_WIDTH_UM:g}, ... µm, {COLUMN_WIDTH_UM:g} µm apart; got {xs[:4]}..."
        )
    full = pd.MultiIndex.from_product([dens, times, xs])
    values = cube.reindex(full).to_numpy(float).reshape(dens.size, times.size, xs.size, -1)
    u0 = np.nanmean(values[:, 0], axis=-1)
    if not np.all(np.isfinite(u0)):
        raise bb.errors.DataError(f"scratch_assay: '{source}' has columns without any count at t = 0")
    return {"initial_cells": dens.astype(float), "ts": times[1:].astype(float), "x": xs, "u0": u0, "y": values[:, 1:]}


def grid_for(n_columns):
    """The finite-volume grid: ``REFINE`` cells per column over ``n_columns`` columns."""
    return pde.Grid1D(REFINE * n_columns, length=COLUMN_WIDTH_UM * n_columns)


def problem_for(kind, n_columns):
    m = MODELS[kind]
    grid = grid_for(n_columns)

    def diffusivity(p):
        return pde.porous_diffusivity(p["D"], p["K"], m=m) if m else p["D"]

    return pde.ReactionDiffusion(grid, diffusivity=diffusivity, reaction=lambda u, p: pde.logistic(u, p["lambda"], p["K"]))


def simulate(kind, data, D, lam, K):
    """Column-average densities, shape (n_densities, n_times, n_columns), and the failure flags."""
    n_columns = np.shape(data["x"])[0]
    problem = problem_for(kind, n_columns)
    grid = problem.grid
    x = jnp.asarray(grid.x)

    def one(u0_columns, D_d, lam_d):
        u0 = jnp.interp(x, jnp.asarray(data["x"]), u0_columns)
        sol = pde.solve_pde_with_status(
            problem, u0, data["ts"], {"D": D_d, "lambda": lam_d, "K": K}, steps_per_interval=STEPS_PER_INTERVAL,
            sensitivity=SENSITIVITY,
        )
        return sol.ys.reshape(sol.ys.shape[0], n_columns, REFINE).mean(-1), sol.failed

    return jax.vmap(one)(jnp.asarray(data["u0"]), D, lam)


def make_model(kind="porous_fisher"):
    """The NumPyro model for ``kind`` in ``{"porous_fisher", "fisher_kpp"}``."""
    if kind not in MODELS:
        raise bb.errors.ModelError(f"scratch_assay: 'kind' must be one of {sorted(MODELS)}; got {kind!r}")
    # Porous-Fisher's D is the diffusivity at u = K, larger than Fisher–KPP's effective D
    D_median = 1500.0 if MODELS[kind] else 500.0

    def model(data):
        n = np.shape(data["u0"])[0]
        with numpyro.plate("density", n):
            D = numpyro.sample("D", dist.LogNormal(jnp.log(D_median), 1.0))
            lam = numpyro.sample("lambda", dist.LogNormal(jnp.log(0.05), 0.5))
        K = numpyro.sample("K", dist.LogNormal(jnp.log(K_JIN), 0.25))
        sigma = numpyro.sample("sigma", dist.HalfNormal(5e-4))
        pred, failed = simulate(kind, data, D, lam, K)
        pde.reject_if_failed(failed, name="pde")
        bb.observe("y", bb.NormalNoise(jnp.broadcast_to(pred[..., None], jnp.shape(data["y"])), sigma), obs=data["y"])

    model.kind = kind
    return model


model = make_model("porous_fisher")
