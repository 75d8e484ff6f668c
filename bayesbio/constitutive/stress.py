"""Stresses of an incompressible hyperelastic law by automatic differentiation of ``W``.

For a deformation ``F`` (``det F = 1``) the first Piola–Kirchhoff (nominal) stress is

    P = dW/dF - p F^{-T},

where ``dW/dF`` comes from ``jax.grad`` of the law's energy — through the invariants of
``C = F^T F`` for invariant-based laws, or as ``sum_a dW/dlambda_a n_a (x) N_a`` (the spectral
form, ``dW/dlambda_a`` by ``jax.grad``) for stretch-based laws — and the Lagrange multiplier
``p`` (the incompressibility pressure) is eliminated with the boundary condition of the test:
zero normal traction in the free direction (``P[free, free] = 0``, default direction 3).
The Cauchy stress is ``sigma = P F^T``. Nothing here knows any particular law.

A law signals an inadmissible state (e.g. Gent beyond its locking stretch) by a non-finite
energy; the stresses are then NaN, which :func:`bayesbio.constitutive.observe_stress` turns
into zero likelihood.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from bayesbio.constitutive.energy import StrainEnergy, invariants
from bayesbio.constitutive.kinematics import MODES, Deformation, simple_shear
from bayesbio.errors import DataError, ModelError, describe

__all__ = ["cauchy_stress", "energy", "nominal_stress", "shear_modulus", "stress"]


def _check_law(law) -> StrainEnergy:
    if not isinstance(law, StrainEnergy):
        raise ModelError(f"'law' must be a StrainEnergy (see bayesbio.constitutive.law); got {describe(law)}")
    return law


def energy(law: StrainEnergy, deformation: Deformation, params: Mapping[str, Any]):
    """Strain energy ``W`` of one deformation."""
    if law.variables == "invariants":
        return law.energy(invariants(deformation.F), params)
    return law.energy(deformation.stretches, params)


def _energy_and_gradient(law, deformation, params):
    if law.variables == "invariants":
        w, dwdf = jax.value_and_grad(lambda F: law.energy(invariants(F), params))(deformation.F)
        return w, dwdf
    w, dw = jax.value_and_grad(lambda s: law.energy(s, params))(deformation.stretches)
    return w, (deformation.n * dw[None, :]) @ deformation.N.T


def _inverse_transpose(F):
    """``F^{-T}`` of a 3 x 3 matrix as cofactor matrix over determinant (closed form: batched
    LAPACK calls for 3 x 3 inverses cost several times more on CPU)."""
    cof = jnp.stack([jnp.cross(F[1], F[2]), jnp.cross(F[2], F[0]), jnp.cross(F[0], F[1])])
    return cof / jnp.dot(F[0], cof[0])


def nominal_stress(law: StrainEnergy, deformation: Deformation, params: Mapping[str, Any], *, free: int = 2):
    """First Piola–Kirchhoff stress (3 x 3) with the pressure fixed by ``P[free, free] = 0``."""
    w, dwdf = _energy_and_gradient(law, deformation, params)
    finv_t = _inverse_transpose(deformation.F)
    pressure = dwdf[free, free] / finv_t[free, free]
    P = dwdf - pressure * finv_t
    return jnp.where(jnp.isfinite(w), P, jnp.nan)


def cauchy_stress(law: StrainEnergy, deformation: Deformation, params: Mapping[str, Any], *, free: int = 2):
    """Cauchy (true) stress ``sigma = P F^T`` (3 x 3), ``J = 1``."""
    return nominal_stress(law, deformation, params, free=free) @ deformation.F.T


def _uniaxial_anisotropic(law, stretch, params, iterations=12):
    """Uniaxial tension of an anisotropic law: the lateral stretches make ``P22 = P33 = 0``.

    ``F = diag(l, l^-1/2 e^u, l^-1/2 e^-u)``; with ``p`` from ``P33 = 0``, ``P22 = 0`` is
    ``d W / d u = 0``, solved by safeguarded Newton steps from the isotropic guess ``u = 0``.
    """

    def w_of(u):
        lateral = stretch**-0.5
        F = jnp.diag(jnp.stack([stretch, lateral * jnp.exp(u), lateral * jnp.exp(-u)]))
        return energy(law, Deformation(F, None, None, None), params)

    grad = jax.grad(w_of)
    hess = jax.grad(grad)

    def step(u, _):
        g, h = grad(u), hess(u)
        ok = jnp.isfinite(g) & jnp.isfinite(h) & (h > 0)
        return jnp.where(ok, u - jnp.clip(g / jnp.where(ok, h, 1.0), -0.5, 0.5), u), None

    u, _ = jax.lax.scan(step, jnp.zeros_like(stretch), None, length=iterations)
    lateral = stretch**-0.5
    return _diag_deformation(stretch, lateral * jnp.exp(u), lateral * jnp.exp(-u))


def _diag_deformation(l1, l2, l3):
    s = jnp.stack([l1, l2, l3])
    eye = jnp.eye(3, dtype=s.dtype)
    return Deformation(jnp.diag(s), s, eye, eye)


def _check_mode(mode):
    if mode not in MODES:
        raise DataError(f"loading mode {describe(mode)} is not known: expected one of {list(MODES)}")


def _check_amount(mode, amount):
    if isinstance(amount, jax.core.Tracer):
        return
    arr = np.asarray(amount, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"'{mode}' amounts must be finite; got {describe(amount)}")
    if mode != "simple_shear" and np.any(arr <= 0):
        raise DataError(f"'{mode}' stretches must be positive; got minimum {arr.min()}")


def stress(law: StrainEnergy, mode: str, amount, params: Mapping[str, Any], *, kind: str = "nominal"):
    """The measured stress of a standard test at each amount (vectorised over ``amount``).

    Parameters
    ----------
    law : StrainEnergy
    mode : {"uniaxial", "equibiaxial", "pure_shear", "simple_shear"}
        See :mod:`bayesbio.constitutive.kinematics`.
    amount : array
        Stretches (``simple_shear``: shear amounts ``gamma``).
    params : dict
        Material parameters (scalars, or the shapes declared by the law).
    kind : {"nominal", "cauchy"}
        First Piola–Kirchhoff (force per reference area) or Cauchy stress.

    Returns
    -------
    array, same shape as ``amount``
        ``P11`` (uniaxial, equibiaxial, pure shear) or ``P12`` (simple shear); the Cauchy
        counterparts with ``kind="cauchy"``.

    Examples
    --------
    >>> from bayesbio.constitutive import law, stress
    >>> float(stress(law("neo_hookean"), "uniaxial", 2.0, {"mu": 1.0}))   # mu (l - l^-2)
    1.75
    """
    law = _check_law(law)
    _check_mode(mode)
    if kind not in ("nominal", "cauchy"):
        raise ModelError(f"'kind' must be 'nominal' or 'cauchy'; got {describe(kind)}")
    law.check_params(params)
    _check_amount(mode, amount)
    amount = jnp.asarray(amount, dtype=jnp.result_type(float))
    return _compiled_stress(law, mode, kind)(amount, params)


@functools.lru_cache(maxsize=256)
def _compiled_stress(law, mode, kind):
    """One compiled function per (law, mode, kind): called eagerly (e.g. while NumPyro looks
    for initial values) it costs one XLA compilation instead of one per primitive; inside an
    outer ``jit`` it is simply inlined."""
    make, (i, j) = MODES[mode]
    fn = nominal_stress if kind == "nominal" else cauchy_stress

    def one(a, params):
        if mode == "uniaxial" and not law.isotropic:
            deformation = _uniaxial_anisotropic(law, a, params)
        else:
            deformation = make(a)
        return fn(law, deformation, params)[i, j]

    @jax.jit
    def run(amount, params):
        flat = jnp.ravel(amount)
        return jax.vmap(one, in_axes=(0, None))(flat, params).reshape(jnp.shape(amount))

    return run


def shear_modulus(law: StrainEnergy, params: Mapping[str, Any]):
    """Small-strain shear modulus ``d^2 W / d gamma^2`` at ``gamma = 0`` in simple shear
    (``= d P12 / d gamma``), by automatic differentiation of ``W``."""
    law = _check_law(law)
    law.check_params(params)

    return _compiled_shear_modulus(law)(params)


@functools.lru_cache(maxsize=256)
def _compiled_shear_modulus(law):
    @jax.jit
    def run(params):
        def w_of(gamma):
            return energy(law, simple_shear(gamma), params)

        return jax.grad(jax.grad(w_of))(jnp.zeros((), dtype=jnp.result_type(float)))

    return run


