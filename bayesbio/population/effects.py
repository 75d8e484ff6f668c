"""Typical values and log-normal between-subject variability (random effects).

Patient ``i``'s value of a positive parameter ``k`` is

    theta_ik = typical_k * factor_ik * exp(eta_ik),       eta_i ~ Normal(0, Omega)

where ``typical_k`` is the population (typical) value, ``factor_ik`` the product of covariate
effects (:mod:`bayesbio.population.covariates`; 1 without covariates) and ``Omega`` the
covariance of the random effects: ``diag(omega^2)`` (``correlation="diagonal"``) or
``diag(omega) R diag(omega)`` with an LKJ prior on the correlation matrix ``R``
(``correlation="lkj"``). ``omega_k`` is the SD of ``log theta_k`` across patients
(≈ the coefficient of variation when small).

Parameterisations (Betancourt & Girolami 2015, "Hamiltonian Monte Carlo for hierarchical
models"):

non-centred (default)
    ``z ~ Normal(0, 1)`` is sampled (site ``f"{name}_z"``, shape (P, K)) and
    ``eta = z * omega`` (or ``z @ (diag(omega) L)^T`` with the LKJ Cholesky factor ``L``) is
    recorded as the deterministic site ``name``. Best when the data say little about each
    patient (few observations, large omega), the usual case in population PK.
centred (``centered=True``)
    ``eta ~ Normal(0, omega)`` (or ``MultivariateNormal``) is sampled directly as the site
    ``name``. Better when every patient is well determined by its own data.

Either way the posterior holds ``name`` (P, K): the individual random effects, which
η-shrinkage and individual fits are computed from. Mixing parameterisations is done with two
calls and two names.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from bayesbio.errors import ModelError, OptionError, describe

__all__ = ["individual_parameters", "lognormal_parameters", "random_effects"]

CORRELATIONS = ("diagonal", "lkj")


def _check_n(n_patients) -> int:
    if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)) or n_patients < 1:
        raise ModelError(f"'n_patients' must be a positive integer; got {describe(n_patients)}")
    return int(n_patients)


def random_effects(
    name: str,
    n_patients: int,
    omega,
    *,
    centered: bool = False,
    correlation: str = "diagonal",
    lkj_concentration: float = 2.0,
):
    """Sample the random effects ``eta`` (P, K) of ``n_patients`` patients.

    Parameters
    ----------
    name : str
        Site name of ``eta`` (a deterministic site when non-centred; the sampled standard
        normals are ``f"{name}_z"``; the LKJ Cholesky factor is ``f"{name}_corr_cholesky"``).
    n_patients : int
        Number of patients ``P``.
    omega : array (K,)
        SDs of the random effects (e.g. sampled ``HalfNormal``).
    centered : bool
        Centred instead of non-centred parameterisation (module docstring).
    correlation : {"diagonal", "lkj"}
        Independent effects, or a full correlation matrix with an ``LKJCholesky(K,
        lkj_concentration)`` prior (``lkj_concentration`` > 1 favours weak correlations).

    Returns
    -------
    array (P, K)
    """
    import numpyro
    import numpyro.distributions as dist

    n = _check_n(n_patients)
    if correlation not in CORRELATIONS:
        raise OptionError(f"'correlation' must be one of {list(CORRELATIONS)}; got {correlation!r}")
    if not isinstance(centered, bool):
        raise OptionError(f"'centered' must be True or False; got {describe(centered)}")
    omega = jnp.atleast_1d(jnp.asarray(omega))
    if omega.ndim != 1:
        raise ModelError(f"random_effects '{name}': 'omega' must be 1-D (one SD per effect); got shape {omega.shape}")
    k = omega.shape[0]
    if correlation == "lkj":
        if k < 2:
            raise OptionError(f"random_effects '{name}': correlation='lkj' needs at least 2 effects; got {k}")
        chol = numpyro.sample(f"{name}_corr_cholesky", dist.LKJCholesky(k, concentration=lkj_concentration))
        scale_tril = omega[:, None] * chol
        if centered:
            return numpyro.sample(name, dist.MultivariateNormal(jnp.zeros(k), scale_tril=scale_tril).expand([n]).to_event(1))
        z = numpyro.sample(f"{name}_z", dist.Normal(0.0, 1.0).expand([n, k]).to_event(2))
        return numpyro.deterministic(name, z @ scale_tril.T)
    if centered:
        return numpyro.sample(name, dist.Normal(jnp.zeros(k), omega).expand([n, k]).to_event(2))
    z = numpyro.sample(f"{name}_z", dist.Normal(0.0, 1.0).expand([n, k]).to_event(2))
    return numpyro.deterministic(name, z * omega)


def individual_parameters(
    typical: Mapping[str, Any], eta, *, factors: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Per-patient values ``typical_k * factor_ik * exp(eta_ik)`` (a pure function).

    Parameters
    ----------
    typical : dict
        ``{name: typical value}`` (scalars); the order of the keys is the column order of
        ``eta``.
    eta : array (P, K)
        Random effects, ``K = len(typical)``.
    factors : dict, optional
        ``{name: array (P,)}`` multiplicative covariate effects for some of the names.

    Returns
    -------
    dict
        ``{name: array (P,)}``.
    """
    names = list(typical)
    eta = jnp.asarray(eta)
    if eta.ndim != 2 or eta.shape[1] != len(names):
        raise ModelError(
            f"individual_parameters: 'eta' must have shape (n_patients, {len(names)}) for {names}; "
            f"got {tuple(eta.shape)}"
        )
    factors = dict(factors or {})
    unknown = [k for k in factors if k not in typical]
    if unknown:
        raise ModelError(f"individual_parameters: covariate factors for unknown parameter(s) {unknown}; known: {names}")
    out = {}
    for j, k in enumerate(names):
        value = jnp.asarray(typical[k]) * jnp.exp(eta[:, j])
        if k in factors:
            fac = jnp.asarray(factors[k])
            if fac.shape not in ((), (eta.shape[0],)):
                raise ModelError(
                    f"individual_parameters: factor of '{k}' must be a scalar or have shape ({eta.shape[0]},); "
                    f"got {tuple(fac.shape)}"
                )
            value = value * fac
        out[k] = value
    return out


def lognormal_parameters(
    typical: Mapping[str, Any],
    omega,
    n_patients: int,
    *,
    name: str = "eta",
    factors: Mapping[str, Any] | None = None,
    centered: bool = False,
    correlation: str = "diagonal",
    lkj_concentration: float = 2.0,
    record: bool | Sequence[str] = True,
) -> dict[str, Any]:
    """Per-patient log-normal parameters around typical values (inside a NumPyro model).

    Samples the random effects with :func:`random_effects` and returns
    :func:`individual_parameters`; see the module docstring for the model.

    Parameters
    ----------
    typical : dict
        ``{"ka": ka_pop, "cl": cl_pop, ...}`` typical (population) values, positive.
    omega : dict or array (K,)
        SDs of the log random effects, by name (same keys as ``typical``) or in its order.
    n_patients : int
        Number of patients ``P``.
    name : str
        Site name of the random effects (see :func:`random_effects`).
    factors : dict, optional
        Covariate effects ``{name: array (P,)}`` multiplying the typical value, e.g.
        ``{"cl": allometric(weight, 70.0, 0.75)}``.
    centered, correlation, lkj_concentration
        See :func:`random_effects`.
    record : bool or sequence of str
        Record the per-patient values as deterministic sites named like the keys of
        ``typical`` (all when True, none when False, or the listed ones); give them the dim
        ``patient`` in the model script's ``dims``.

    Returns
    -------
    dict
        ``{name: array (P,)}`` per-patient parameters.

    Examples
    --------
    Inside a model::

        omega = numpyro.sample("omega", dist.HalfNormal(1.0).expand([3]))
        p = lognormal_parameters({"ka": ka_pop, "cl": cl_pop, "v": v_pop}, omega, n_patients,
                                 factors={"cl": allometric(data["wt"], 70.0, 0.75)})
    """
    import numpyro

    if not isinstance(typical, Mapping) or not typical:
        raise ModelError(f"lognormal_parameters: 'typical' must be a non-empty dict of typical values; got {describe(typical)}")
    names = list(typical)
    if isinstance(omega, Mapping):
        missing = [k for k in names if k not in omega]
        extra = [k for k in omega if k not in typical]
        if missing or extra:
            raise ModelError(
                f"lognormal_parameters: 'omega' must have the keys of 'typical' {names}; "
                f"missing {missing}, unexpected {extra}"
            )
        omega = jnp.stack([jnp.asarray(omega[k]) for k in names])
    omega = jnp.atleast_1d(jnp.asarray(omega))
    if omega.shape != (len(names),):
        raise ModelError(
            f"lognormal_parameters: 'omega' must have shape ({len(names)},) (one SD per parameter {names}); "
            f"got {tuple(omega.shape)}"
        )
    eta = random_effects(
        name, n_patients, omega, centered=centered, correlation=correlation, lkj_concentration=lkj_concentration
    )
    out = individual_parameters(typical, eta, factors=factors)
    keep = names if record is True else [] if record is False else list(record)
    for k in keep:
        if k not in out:
            raise ModelError(f"lognormal_parameters: 'record' names unknown parameter '{k}'; known: {names}")
        out[k] = numpyro.deterministic(k, out[k])
    return out
