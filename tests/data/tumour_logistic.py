"""Logistic tumour growth dV/dt = r V (1 - V/K) on two lesions (test model for `bayesbio compare`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tumour_growth_common import growth_model, load_data  # noqa: E402,F401

description = "logistic tumour growth (test model)"


def rhs(t, v, p):
    return p[0] * v * (1.0 - v / p[1])


def model(data):
    growth_model(rhs, data)
