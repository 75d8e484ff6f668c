"""Reaction terms and density-dependent diffusivities for reaction–diffusion models.

Reaction terms act cell by cell, ``du_i/dt += f(u_i)``; any function of the density array
written in ``jax.numpy`` works (pass it to :class:`bayesbio.pde.ReactionDiffusion`). The
common ones of cell biology are provided:

``logistic(u, lam, K)``
    Fisher–KPP / logistic proliferation ``λ u (1 - u/K)`` (Fisher 1937; Kolmogorov,
    Petrovsky & Piskunov 1937).
``porous_diffusivity(D, K, m)``
    Porous-Fisher diffusivity ``D (u/K)^m`` (degenerate at ``u = 0``; sharp-fronted travelling
    waves), used with :func:`bayesbio.pde.diffusion` as a function of the density (Sherratt &
    Murray 1990; Jin et al. 2016, J. Theor. Biol. 390:136, eq. 2).
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["DensityDependent", "fisher_kpp", "logistic", "porous_diffusivity"]


class DensityDependent:
    """A diffusivity that is a function of the local density, ``u -> D(u)``.

    Wrapping the function marks it as a function of the *density* (not of the parameters) where
    a :class:`bayesbio.pde.ReactionDiffusion` is given a fixed diffusivity;
    :func:`porous_diffusivity` returns one. Calling it evaluates ``D(u)``.
    """

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"DensityDependent needs a function u -> D(u); got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, u):
        return self.fn(u)


def logistic(u, lam, K):
    """Logistic growth ``lam * u * (1 - u / K)`` (rate ``lam`` in 1/time, capacity ``K``)."""
    return lam * u * (1.0 - u / K)


#: Fisher–KPP reaction term (the same function as :func:`logistic`).
fisher_kpp = logistic


def porous_diffusivity(D, K, m=1.0):
    """Density-dependent diffusivity ``u -> D * (u / K)^m`` (porous-Fisher), a :class:`DensityDependent`.

    Negative densities (undershoots within solver tolerance) are treated as zero density, so
    the diffusivity stays real and non-negative.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> porous_diffusivity(2.0, 4.0, m=1)(jnp.array([0.0, 2.0])).tolist()
    [0.0, 1.0]
    """

    def D_of_u(u):
        s = jnp.maximum(u / K, 0.0)
        if isinstance(m, (int, float)) and float(m) == 1.0:
            return D * s
        return D * s**m

    return DensityDependent(D_of_u)
