"""Diffusivity field: a spatially varying log-diffusivity log κ(x) from sparse noisy measurements of
the steady state of ``-(κ u')' = f`` on [0, 1] with ``u(0) = u(1) = 0``.

Forward model (``bayesbio.pde``): the conservative finite-volume operator
``diffusion_matrix(grid, D=κ, bc="dirichlet")`` with κ given per cell (face values are harmonic
means, the exact series conductance of a piecewise-constant medium); the steady state solves
``A(κ) u = -f``. The map ``log κ -> u`` is nonlinear, and point values of ``u`` constrain κ
only through integrals of ``1/κ``: a classic ill-posed coefficient inverse problem.

    log κ ~ Matérn GRF (SPDE/GMRF), sigma = 0.8, range 0.3, nu = 3/2 (whitened: log_kappa_white)
    y_j ~ Normal(u(x_j), noise_sd),   j = 1..m (sensors at fixed locations; linear interpolation)

Data: ``diffusivity_field.csv`` with one row per cell (``x``, ``log_kappa_true``, the source
``f``) and the sensor columns ``x_obs``, ``y`` filled on the first ``m`` rows (NaN below), plus
the constant ``noise_sd``. The true log κ is a draw from the prior (seed in
:data:`SIMULATION`); regenerate with ``python -m bayesbio.models.diffusivity_field --write PATH``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd

import bayesbio as bb
from bayesbio._io import write_atomic
from bayesbio.errors import DataError
from bayesbio.fields import MaternSPDE, interpolation_matrix
from bayesbio.pde import Grid1D, diffusion_matrix

description = "Diffusivity field: log-diffusivity profile from sparse measurements of -(κu')' = f (nonlinear)"

PRIOR = {"sigma": 0.8, "length_scale": 0.3}
SIMULATION = {"n": 64, "n_obs": 24, "noise_sd": 0.002, "seed": 20240603}
#: Simulation-based calibration settings (``bayesbio sbc diffusivity_field``): one replication per
#: batch (the fits run 127-1023 leapfrog steps per iteration, median 497; fitted in parallel with
#: ``--workers``)
sbc = {"reps": 200, "warmup": 500, "draws": 99, "thin": 5, "batch": 1}

dims = {"log_kappa": ["x"], "log_kappa_white": ["mode"], "log_kappa_eta": ["mode"], "y": ["sensor"]}


def coords(data):
    return {"x": np.asarray(data["x"]), "sensor": np.asarray(data["x_obs"])}


def prior(n: int, **overrides) -> MaternSPDE:
    return MaternSPDE(Grid1D(n), **{**PRIOR, **overrides})


def source(x):
    """Heat source f(x): uniform plus a bump on the right half."""
    x = np.asarray(x, dtype=float)
    return 1.0 + 2.0 * np.exp(-0.5 * ((x - 0.7) / 0.1) ** 2)


def steady_state(log_kappa, f, grid):
    """u solving -(κ u')' = f with u = 0 at both ends (finite volumes, ``bayesbio.pde``)."""
    a = diffusion_matrix(grid, jnp.exp(log_kappa), "dirichlet")
    return jnp.linalg.solve(a, -jnp.asarray(f))


def simulate(seed: int = SIMULATION["seed"], n: int = SIMULATION["n"], n_obs: int = SIMULATION["n_obs"], *,
             log_kappa=None, noise_sd=SIMULATION["noise_sd"]) -> dict:
    """A data set; by default the true log κ is a prior draw from ``seed``."""
    import jax

    grid = Grid1D(n)
    rng = np.random.default_rng(seed)
    if log_kappa is None:
        log_kappa = prior(n).draw(jax.random.PRNGKey(seed), 1)[0]
    x_obs = (np.arange(n_obs) + 0.5) / n_obs
    f = source(grid.x)
    u = np.asarray(steady_state(jnp.asarray(log_kappa), f, grid))
    y = interpolation_matrix(grid, x_obs) @ u + noise_sd * rng.standard_normal(n_obs)
    return {"x": grid.x.copy(), "f": f, "x_obs": x_obs, "y": y, "noise_sd": np.float64(noise_sd),
            "log_kappa_true": np.asarray(log_kappa, float)}


def load_data(path=None):
    table = bb.datasets.load("diffusivity_field") if path is None else pd.read_csv(path)
    bb.require_columns(table, ["x", "f", "x_obs", "y", "noise_sd"], source=path or "diffusivity_field")
    x = table["x"].to_numpy(float)
    n = x.size
    if not np.allclose(x, Grid1D(n).x):
        raise DataError(f"column 'x' must be the {n} cell centres of [0, 1] ((i + 1/2) / {n})")
    x_obs = table["x_obs"].to_numpy(float)
    y = table["y"].to_numpy(float)
    sensors = np.isfinite(x_obs)
    if not sensors.any() or np.any(np.isfinite(y) & ~sensors):
        raise DataError("columns 'x_obs'/'y': every measurement needs a sensor location (x_obs) in [0, 1]")
    noise = table["noise_sd"].dropna().to_numpy(float)
    if noise.size == 0 or not np.allclose(noise, noise[0]) or not noise[0] > 0:
        raise DataError("column 'noise_sd' must hold one positive constant")
    out = {"x": x, "f": table["f"].to_numpy(float), "x_obs": x_obs[sensors], "y": y[sensors],
           "noise_sd": np.float64(noise[0])}
    if "log_kappa_true" in table:
        out["log_kappa_true"] = table["log_kappa_true"].to_numpy(float)
    return out


def make_model(*, preconditioner=None, **prior_overrides):
    """The model with another prior or a NUTS preconditioner (site ``log_kappa_white``)."""

    def model(data):
        n = data["x"].shape[0]
        grid = Grid1D(n)
        log_kappa = prior(n, **prior_overrides).sample("log_kappa", preconditioner=preconditioner)
        u = steady_state(log_kappa, data["f"], grid)
        u_obs = jnp.interp(data["x_obs"], jnp.asarray(grid.x), u)  # as interpolation_matrix
        bb.observe("y", bb.NormalNoise(u_obs, data["noise_sd"]), obs=data["y"])

    return model


model = make_model()


def write(path) -> None:
    d = simulate()
    n, m = d["x"].size, d["x_obs"].size
    pad = np.full(n - m, np.nan)
    table = pd.DataFrame({"x": d["x"], "log_kappa_true": d["log_kappa_true"], "f": d["f"],
                          "x_obs": np.concatenate([d["x_obs"], pad]), "y": np.concatenate([d["y"], pad]),
                          "noise_sd": d["noise_sd"]})
    write_atomic(path, lambda tmp: table.to_csv(tmp, index=False, float_format="%.10g"))


if __name__ == "__main__":  # python -m bayesbio.models.diffusivity_field --write PATH
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", required=True, help="output CSV path")
    write(parser.parse_args().write)
