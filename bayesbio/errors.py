"""Error types raised by bayesbio for bad input.

Every error names the offending field, what was expected and what was received, so that a
user never has to read a traceback from inside JAX or NumPyro to find the mistake.
"""

from __future__ import annotations

__all__ = [
    "BayesbioError",
    "DataError",
    "ModelError",
    "OptionError",
    "SolverError",
]


class BayesbioError(Exception):
    """Base class of every error bayesbio raises on purpose."""


class DataError(BayesbioError, ValueError):
    """Observed data or covariates are malformed (NaN where not allowed, wrong shape, ...)."""


class ModelError(BayesbioError, ValueError):
    """A model script or model specification is malformed or cannot be found."""


class OptionError(BayesbioError, ValueError):
    """A setting (sampler, solver, CLI option) has an invalid value."""


class SolverError(BayesbioError, ValueError):
    """An ODE/PDE problem is set up wrongly (shapes, times, right-hand side)."""


def describe(value) -> str:
    """Short, human description of a received value for error messages."""
    import numpy as np

    try:
        arr = np.asarray(value)
    except Exception:  # pragma: no cover - exotic objects
        return f"{type(value).__name__}"
    if arr.dtype == object:
        return f"{type(value).__name__}"
    if arr.ndim == 0:
        return f"{arr.item()!r}"
    return f"array of shape {arr.shape} and dtype {arr.dtype}"
