"""bayesbio: Bayesian inference for mechanistic models in biology and biomechanics.

Write the mechanism (an ODE right-hand side) in plain ``jax.numpy``, declare priors and
observations in a NumPyro model, and fit it with NUTS, SVI or a Laplace approximation; every
runner returns an ``arviz.InferenceData``.
"""

import warnings as _warnings

# ArviZ 0.23 announces its upcoming refactor on import; it says nothing about this package.
_warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)

__version__ = "0.1.0"

from bayesbio import datasets, errors  # noqa: E402
from bayesbio import fields  # noqa: E402
from bayesbio import pde, population  # noqa: E402
from bayesbio import distributed, parallel  # noqa: E402
from bayesbio.infer import fit_laplace, fit_svi, sample_nuts  # noqa: E402
from bayesbio.model import ModelSpec, bundled_models, load_model  # noqa: E402
from bayesbio.parallel import make_mesh  # noqa: E402
from bayesbio.observe import (  # noqa: E402
    CombinedNoise,
    LeftCensored,
    LogNormalNoise,
    NormalNoise,
    ProportionalNoise,
    StudentTNoise,
    observe,
)
from bayesbio.ode import ODESolution, solve, solve_with_status  # noqa: E402
from bayesbio.tables import numeric_column, read_table, require_columns  # noqa: E402



def __getattr__(name):  # bayesbio.report imports matplotlib and arviz: load it on first use
    if name == "report":
        import importlib

        return importlib.import_module("bayesbio.report")
    if name == "run_sbc":  # simulation-based calibration (scipy.stats, matplotlib): on first use
        from bayesbio.sbc import run_sbc

        return run_sbc
    if name == "write_report":
        from bayesbio.report import write_report

        return write_report
    raise AttributeError(f"module 'bayesbio' has no attribute {name!r}")


__all__ = [
    "CombinedNoise",
    "LeftCensored",
    "LogNormalNoise",
    "ModelSpec",
    "NormalNoise",
    "ODESolution",
    "ProportionalNoise",
    "StudentTNoise",
    "__version__",
    "bundled_models",
    "datasets",
    "distributed",
    "errors",
    "fields",
    "fit_laplace",
    "fit_svi",
    "load_model",
    "make_mesh",
    "numeric_column",
    "observe",
    "pde",
    "read_table",
    "parallel",
    "population",
    "report",
    "sample_nuts",
    "solve",
    "solve_with_status",
    "require_columns",
    "run_sbc",
    "write_report",
]
