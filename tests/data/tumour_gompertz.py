"""Gompertz tumour growth dV/dt = r V log(K/V) on two lesions (test model for `bayesbio compare`)."""

import sys
from pathlib import Path

import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
from tumour_growth_common import growth_model, load_data  # noqa: E402,F401

description = "Gompertz tumour growth (test model)"


def rhs(t, v, p):
    return p[0] * v * jnp.log(p[1] / jnp.maximum(v, 1e-12))


def model(data):
    growth_model(rhs, data)
