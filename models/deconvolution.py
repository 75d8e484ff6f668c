"""Deconvolution: a 1-D signal on [0, 1] from a blurred, noisy recording of it.

Forward model: ``y = K u + noise`` with ``K`` the Gaussian blur of width ``width`` (the
device's point-spread function; :func:`bayesbio.fields.convolution_matrix`, midpoint rule on
the cells, the signal is zero outside [0, 1]). The blur damps Fourier mode ``k`` by about
``exp(-(2 pi k width)^2 / 2)``: fine detail is lost in the noise, so the inverse is ill-posed.

    u ~ Matérn GRF (SPDE/GMRF), sigma = 1, range 0.1, nu = 3/2 (whitened: u_white ~ N(0, I))
    y_i ~ Normal((K u)_i, noise_sd)   (NaN = missing)

Linear-Gaussian: :func:`bayesbio.fields.linear_gaussian_posterior` with :func:`prior` and
:func:`forward_matrix` is the exact posterior.

Data: ``deconvolution.csv`` (columns ``x``, ``u_true``, ``y`` and the constants ``width``,
``noise_sd`` on every row); regenerate with ``python -m bayesbio.models.deconvolution --write PATH``
(settings and seed in :data:`SIMULATION`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import bayesbio as bb
from bayesbio._io import write_atomic
from bayesbio.errors import DataError
from bayesbio.fields import MaternSPDE, convolution_matrix
from bayesbio.pde import Grid1D

description = "Deconvolution: a 1-D signal from a Gaussian-blurred noisy recording (linear-Gaussian)"

PRIOR = {"sigma": 1.0, "length_scale": 0.1}
SIMULATION = {"n": 128, "width": 0.03, "noise_sd": 0.02, "seed": 20240602}

#: Simulation-based calibration (`bayesbio sbc`): every prior mode of the field is tested;
#: 4 replications per vectorised batch.
sbc = {"reps": 200, "warmup": 500, "draws": 99, "thin": 5, "batch": 4}

dims = {"u": ["x"], "u_white": ["mode"], "u_eta": ["mode"], "y": ["x"]}


def coords(data):
    return {"x": np.asarray(data["x"])}


def prior(n: int, **overrides) -> MaternSPDE:
    return MaternSPDE(Grid1D(n), **{**PRIOR, **overrides})


def forward_matrix(data) -> np.ndarray:
    n = np.shape(data["y"])[0]
    return np.asarray(convolution_matrix(Grid1D(n), float(data["width"])))


def true_signal(x):
    """The known truth: two steps of different heights and a smooth oscillating bump."""
    x = np.asarray(x, dtype=float)
    steps = 1.0 * ((x > 0.1) & (x < 0.3)) - 0.6 * ((x > 0.35) & (x < 0.45))
    smooth = 0.7 * np.sin(2 * np.pi * 5 * x) * np.exp(-0.5 * ((x - 0.75) / 0.08) ** 2)
    return steps + smooth


def simulate(seed: int = SIMULATION["seed"], n: int = SIMULATION["n"], *, u=None, width=SIMULATION["width"],
             noise_sd=SIMULATION["noise_sd"]) -> dict:
    grid = Grid1D(n)
    u = true_signal(grid.x) if u is None else np.asarray(u, float)
    rng = np.random.default_rng(seed)
    y = np.asarray(convolution_matrix(grid, width)) @ u + noise_sd * rng.standard_normal(n)
    return {"x": grid.x.copy(), "u_true": u, "y": y, "width": np.float64(width), "noise_sd": np.float64(noise_sd)}


def load_data(path=None):
    table = bb.datasets.load("deconvolution") if path is None else pd.read_csv(path)
    bb.require_columns(table, ["x", "y", "width", "noise_sd"], source=path or "deconvolution")
    out = {"x": table["x"].to_numpy(float), "y": table["y"].to_numpy(float)}
    for key in ("width", "noise_sd"):
        col = table[key].to_numpy(float)
        if not np.allclose(col, col[0]) or not col[0] > 0:
            raise DataError(f"column '{key}' must hold one positive constant; got values from {col.min()} to {col.max()}")
        out[key] = np.float64(col[0])
    n = out["y"].size
    if not np.allclose(out["x"], Grid1D(n).x):
        raise DataError(f"column 'x' must be the {n} cell centres of [0, 1] ((i + 1/2) / {n})")
    if "u_true" in table:
        out["u_true"] = table["u_true"].to_numpy(float)
    return out


def make_model(*, preconditioner=None, **prior_overrides):
    """The model with another prior or a NUTS preconditioner (site ``u_white``); see backward_heat."""

    def model(data):
        n = data["y"].shape[0]
        u = prior(n, **prior_overrides).sample("u", preconditioner=preconditioner)
        blurred = convolution_matrix(Grid1D(n), data["width"]) @ u
        bb.observe("y", bb.NormalNoise(blurred, data["noise_sd"]), obs=data["y"])

    return model


model = make_model()


def write(path) -> None:
    d = simulate()
    table = pd.DataFrame({"x": d["x"], "u_true": d["u_true"], "y": d["y"], "width": d["width"],
                          "noise_sd": d["noise_sd"]})
    write_atomic(path, lambda tmp: table.to_csv(tmp, index=False, float_format="%.10g"))


if __name__ == "__main__":  # python -m bayesbio.models.deconvolution --write PATH
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", required=True, help="output CSV path")
    write(parser.parse_args().write)
