"""Isochoric deformations of the standard tests, with their spectral decompositions.

Each function takes the controlled amount of one test and returns a :class:`Deformation`:
the deformation gradient ``F`` (3 x 3, ``det F = 1``) and its decomposition
``F = sum_a lambda_a n_a (x) N_a`` (principal stretches, spatial and material principal
directions as matrix columns), given in closed form so that stretch-based laws need no
numerical eigen-decomposition (whose derivative is singular at repeated stretches, e.g. the
two lateral stretches of uniaxial tension).

Direction 3 is always a principal direction and the traction-free one that fixes the
incompressibility pressure (thin sheet or free lateral faces); see
:func:`bayesbio.constitutive.stress.nominal_stress`.

=================  ==================================  ========================  ================
mode               F                                   amount                    measured stress
=================  ==================================  ========================  ================
uniaxial           diag(l, l^-1/2, l^-1/2)             stretch l > 0             P11
equibiaxial        diag(l, l, l^-2)                    stretch l > 0             P11 (= P22)
pure_shear         diag(l, 1, 1/l)                     stretch l > 0             P11
simple_shear       I + gamma e1 (x) e2                 shear amount gamma        P12
=================  ==================================  ========================  ================

``biaxial(l1, l2)`` (general in-plane biaxial, ``F = diag(l1, l2, 1/(l1 l2))``) serves
planar-biaxial data such as skin or arteries.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

__all__ = ["MODES", "Deformation", "biaxial", "equibiaxial", "pure_shear", "simple_shear", "uniaxial"]


class Deformation(NamedTuple):
    """``F`` and its spectral decomposition ``F = sum_a stretches[a] n[:, a] N[:, a]^T``."""

    F: Any
    stretches: Any
    n: Any
    N: Any


def _diagonal(l1, l2, l3) -> Deformation:
    eye = jnp.eye(3, dtype=jnp.result_type(l1, float))
    stretches = jnp.stack([l1, l2, l3])
    return Deformation(F=jnp.diag(stretches), stretches=stretches, n=eye, N=eye)


def uniaxial(stretch) -> Deformation:
    """Uniaxial tension (stretch > 1) or compression (< 1) along 1, free lateral faces
    (equal lateral stretches: the isotropic solution; see ``stress`` for anisotropic laws)."""
    lateral = stretch**-0.5
    return _diagonal(stretch, lateral, lateral)


def equibiaxial(stretch) -> Deformation:
    """Equal stretch along 1 and 2, thickness direction 3 free."""
    return _diagonal(stretch, stretch, stretch**-2.0)


def pure_shear(stretch) -> Deformation:
    """Pure shear (planar tension): stretch along 1, direction 2 held, 3 free."""
    return _diagonal(stretch, jnp.ones_like(stretch), 1.0 / stretch)


def biaxial(stretch1, stretch2) -> Deformation:
    """General planar biaxial stretch, thickness direction 3 free."""
    return _diagonal(stretch1, stretch2, 1.0 / (stretch1 * stretch2))


def simple_shear(gamma) -> Deformation:
    """Simple shear ``x1 = X1 + gamma X2``.

    Material principal directions in the 1–2 plane at angle ``theta`` with
    ``tan 2 theta = -2 / gamma`` (``theta = pi/4`` at ``gamma = 0``, where every direction is
    principal); stretches from the Rayleigh quotients ``N_a . C N_a``.
    """
    gamma = jnp.asarray(gamma)
    dtype = jnp.result_type(gamma, float)
    zero, one = jnp.zeros((), dtype), jnp.ones((), dtype)
    F = jnp.array([[one, gamma, zero], [zero, one, zero], [zero, zero, one]], dtype=dtype)
    theta = 0.5 * jnp.arctan2(2.0 * one, -gamma)
    c, s = jnp.cos(theta), jnp.sin(theta)
    N = jnp.array([[c, -s, zero], [s, c, zero], [zero, zero, one]], dtype=dtype)
    half = 0.5 * gamma
    root = jnp.sqrt(1.0 + half**2)
    # C N1 = (1 + gamma tan theta) N1 = (root + half)^2 N1; the other in-plane stretch is its inverse
    l1 = root + half
    stretches = jnp.stack([l1, 1.0 / l1, one])
    n = (F @ N) / stretches[None, :]
    return Deformation(F=F, stretches=stretches, n=n, N=N)


#: mode name -> (deformation of the controlled amount, index of the measured P component)
MODES = {
    "uniaxial": (uniaxial, (0, 0)),
    "equibiaxial": (equibiaxial, (0, 0)),
    "pure_shear": (pure_shear, (0, 0)),
    "simple_shear": (simple_shear, (0, 1)),
}
