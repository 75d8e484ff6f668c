"""Backward heat equation: the initial temperature u(x, 0) on [0, 1] from a noisy u(x, T).

Forward model (``bayesbio.pde``): ``du/dt = D d2u/dx2`` on [0, 1], insulated ends (no flux),
finite volumes on ``n`` cells; the map ``u(., 0) -> u(., T)`` is the heat semigroup
``exp(T * diffusion_matrix(grid, D))`` (:func:`bayesbio.fields.heat_semigroup`; the model applies
it matrix-free, :func:`bayesbio.fields.heat_semigroup_apply`). Mode ``k``
(``cos(k pi x)``) is damped by ``exp(-D (k pi)^2 T)``, so the data carry almost nothing about
the fine scales of ``u(., 0)``: inverting naively amplifies the noise without bound.

    u0 ~ Matérn GRF (SPDE/GMRF), sigma = 1, range 0.1, nu = 3/2 (whitened: u0_white ~ N(0, I))
    y_i ~ Normal((exp(T A) u0)_i, noise_sd),   i = 1..n  (NaN = missing)

The problem is linear-Gaussian, so :func:`bayesbio.fields.linear_gaussian_posterior` with
:func:`prior` and :func:`forward_matrix` gives the exact posterior (the oracle the tests use).

Data: ``backward_heat.csv`` (columns ``x``, ``u0_true``, ``y``, and the constants ``T``,
``D``, ``noise_sd`` repeated on every row). Regenerate it with
``python -m bayesbio.models.backward_heat --write PATH`` (seed and settings in :data:`SIMULATION`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import bayesbio as bb
from bayesbio._io import write_atomic
from bayesbio.errors import DataError
from bayesbio.fields import MaternSPDE, heat_semigroup, heat_semigroup_apply
from bayesbio.pde import Grid1D

description = "Backward heat equation: initial temperature field from a noisy later profile (linear-Gaussian)"

#: Prior hyperparameters of u0 (fixed: the linear-Gaussian problem).
PRIOR = {"sigma": 1.0, "length_scale": 0.1}
#: Settings of the bundled data set.
SIMULATION = {"n": 128, "T": 0.002, "D": 1.0, "noise_sd": 0.01, "seed": 20240601}

#: Simulation-based calibration (`bayesbio sbc`): every prior mode of the field is tested;
#: 4 replications per vectorised batch.
sbc = {"reps": 200, "warmup": 500, "draws": 99, "thin": 5, "batch": 4}

dims = {"u0": ["x"], "u0_white": ["mode"], "u0_eta": ["mode"], "y": ["x"]}


def coords(data):
    return {"x": np.asarray(data["x"])}


def prior(n: int, **overrides) -> MaternSPDE:
    """The prior of u0 on ``n`` cells (keyword overrides of :data:`PRIOR`, e.g. hyperpriors)."""
    return MaternSPDE(Grid1D(n), **{**PRIOR, **overrides})


def forward_matrix(data) -> np.ndarray:
    """Dense heat semigroup ``exp(T D A)`` for the data's grid (the oracle's operator)."""
    n = np.shape(data["y"])[0]
    return np.asarray(heat_semigroup(Grid1D(n), float(data["T"]), float(data["D"])))


def true_initial_temperature(x):
    """The known truth: a plateau with sharp edges and a smooth bump."""
    x = np.asarray(x, dtype=float)
    plateau = ((x > 0.15) & (x < 0.4)).astype(float)
    bump = 0.8 * np.exp(-0.5 * ((x - 0.7) / 0.06) ** 2)
    return plateau + bump - 0.3


def simulate(seed: int = SIMULATION["seed"], n: int = SIMULATION["n"], *, u0=None, T=SIMULATION["T"],
             D=SIMULATION["D"], noise_sd=SIMULATION["noise_sd"]) -> dict:
    """A data set: ``u0`` (default: the known truth) pushed through the heat semigroup plus noise."""
    grid = Grid1D(n)
    u0 = true_initial_temperature(grid.x) if u0 is None else np.asarray(u0, float)
    rng = np.random.default_rng(seed)
    u_t = np.asarray(heat_semigroup(grid, T, D)) @ u0
    y = u_t + noise_sd * rng.standard_normal(n)
    return {"x": grid.x.copy(), "u0_true": u0, "y": y, "T": np.float64(T), "D": np.float64(D),
            "noise_sd": np.float64(noise_sd)}


def load_data(path=None):
    """The bundled data set, or a CSV with the same columns."""
    table = bb.datasets.load("backward_heat") if path is None else pd.read_csv(path)
    bb.require_columns(table, ["x", "y", "T", "D", "noise_sd"], source=path or "backward_heat")
    out = {"x": table["x"].to_numpy(float), "y": table["y"].to_numpy(float)}
    for key in ("T", "D", "noise_sd"):
        col = table[key].to_numpy(float)
        if not np.allclose(col, col[0]) or not col[0] > 0:
            raise DataError(f"column '{key}' must hold one positive constant; got values from {col.min()} to {col.max()}")
        out[key] = np.float64(col[0])
    n = out["y"].size
    if not np.allclose(out["x"], Grid1D(n).x):
        raise DataError(f"column 'x' must be the {n} cell centres of [0, 1] ((i + 1/2) / {n})")
    if "u0_true" in table:
        out["u0_true"] = table["u0_true"].to_numpy(float)
    return out


def make_model(*, preconditioner=None, **prior_overrides):
    """The model with another prior (keyword overrides of :data:`PRIOR`, e.g. a hyperprior) or
    NUTS preconditioner (:func:`bayesbio.fields.laplace_preconditioner` of site ``u0_white``)."""

    def model(data):
        n = data["y"].shape[0]
        u0 = prior(n, **prior_overrides).sample("u0", preconditioner=preconditioner)
        u_t = heat_semigroup_apply(Grid1D(n), u0, data["T"], data["D"])  # = heat_semigroup(...) @ u0, O(n^2)
        bb.observe("y", bb.NormalNoise(u_t, data["noise_sd"]), obs=data["y"])

    return model


model = make_model()


def write(path) -> None:
    """Write the bundled data set (data-generating script)."""
    d = simulate()
    table = pd.DataFrame({"x": d["x"], "u0_true": d["u0_true"], "y": d["y"],
                          "T": d["T"], "D": d["D"], "noise_sd": d["noise_sd"]})
    write_atomic(path, lambda tmp: table.to_csv(tmp, index=False, float_format="%.10g"))


if __name__ == "__main__":  # python -m bayesbio.models.backward_heat --write PATH
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", required=True, help="output CSV path")
    write(parser.parse_args().write)
