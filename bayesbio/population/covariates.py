"""Covariate effects: multiplicative factors on typical values (pure ``jax.numpy``).

Each function returns an array (P,) of factors, to pass to
:func:`~bayesbio.population.lognormal_parameters` as ``factors={"cl": ...}``; combine several
covariates by multiplying their factors. The coefficients may be fixed numbers or sampled
parameters (gradients flow through them).

=========================  =====================================================
``power(x, ref, theta)``   ``(x / ref) ** theta``
``allometric(wt, ref)``    ``(wt / ref) ** 0.75`` (clearance); ``exponent=1`` for volumes
``exponential(x, ref, b)`` ``exp(b (x - ref))``
``categorical(c, beta)``   ``exp(beta[c - 1])`` for levels ``c >= 1``, 1 for the reference level 0
=========================  =====================================================
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bayesbio.errors import DataError

__all__ = ["allometric", "categorical", "exponential", "power"]


def _check_positive(name, x):
    if isinstance(x, jax.core.Tracer):  # values known only at run time: nothing to check eagerly
        return
    arr = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name}: the covariate contains NaN or inf (fill in or impute missing covariates first)")
    if np.any(arr <= 0):
        raise DataError(f"{name}: the covariate must be positive; got minimum {arr.min()}")


def power(x, reference: float, exponent):
    """Power model ``(x / reference) ** exponent`` of a positive covariate (weight, age, ...)."""
    _check_positive("power", x)
    return (jnp.asarray(x) / reference) ** exponent


def allometric(weight, reference: float = 70.0, exponent=0.75):
    """Allometric scaling ``(weight / reference) ** exponent``.

    The conventional exponents are 0.75 for clearances and 1 for volumes (Anderson & Holford
    2008, Annu. Rev. Pharmacol. Toxicol. 48:303); ``reference`` is the weight of the typical
    patient (default 70 kg).

    Examples
    --------
    >>> float(allometric(35.0, 70.0, 1.0))
    0.5
    """
    _check_positive("allometric", weight)
    return (jnp.asarray(weight) / reference) ** exponent


def exponential(x, reference: float, coefficient):
    """Exponential model ``exp(coefficient * (x - reference))`` (e.g. age, creatinine)."""
    return jnp.exp(coefficient * (jnp.asarray(x) - reference))


def categorical(codes, log_effects):
    """Multiplicative effect of a categorical covariate coded ``0, 1, ..., L-1``.

    Level 0 is the reference (factor 1); level ``c >= 1`` gets ``exp(log_effects[c - 1])``.

    Parameters
    ----------
    codes : int array (P,)
        Level of each patient (see ``pandas.factorize`` for strings).
    log_effects : array (L - 1,)
        Log-scale effect of each non-reference level (e.g. sampled ``Normal(0, 0.5)``).

    Examples
    --------
    >>> categorical([0, 1, 1], jnp.log(jnp.array([2.0]))).tolist()
    [1.0, 2.0, 2.0]
    """
    log_effects = jnp.atleast_1d(jnp.asarray(log_effects))
    if not isinstance(codes, jax.core.Tracer):
        c = np.asarray(codes)
        if c.dtype.kind not in "iub" and not (c.dtype.kind == "f" and np.all(c == np.round(c))):
            raise DataError(f"categorical: 'codes' must be integer level codes 0..L-1; got dtype {c.dtype}")
        if c.size and (c.min() < 0 or c.max() > log_effects.shape[0]):
            raise DataError(
                f"categorical: codes must lie in 0..{log_effects.shape[0]} (0 = reference, one log effect per "
                f"other level); got range {int(c.min())}..{int(c.max())}"
            )
    table = jnp.concatenate([jnp.zeros(1, log_effects.dtype), log_effects])
    return jnp.exp(table[jnp.asarray(codes).astype(jnp.int32)])
