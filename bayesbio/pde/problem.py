"""A reaction–diffusion problem: grid, diffusivity, reaction and boundary conditions.

    ∂u/∂t = ∇·(D ∇u) + f(u),      on a :class:`~bayesbio.pde.Grid1D` or :class:`~bayesbio.pde.Grid2D`

The pieces that depend on the model parameters are functions of ``params`` (any pytree):
``diffusivity(params)`` returns what :func:`bayesbio.pde.diffusion` accepts as ``D`` (a
number, cell values, or a function ``D(u)`` of the density), ``reaction(u, params)`` returns
``f(u)`` cell by cell, and ``bc`` is a boundary specification or a function of ``params``
returning one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp

from bayesbio.errors import OptionError, describe
from bayesbio.pde.boundary import BoundaryCondition, resolve_bcs
from bayesbio.pde.diffusion import diffusion
from bayesbio.pde.grids import Grid1D, Grid2D
from bayesbio.pde.reaction import DensityDependent

__all__ = ["ReactionDiffusion"]


@dataclass(frozen=True, eq=False)
class ReactionDiffusion:
    """Reaction–diffusion problem ``u_t = ∇·(D ∇u) + f(u)`` with boundary conditions.

    Parameters
    ----------
    grid : Grid1D or Grid2D
    diffusivity : callable, number, array or DensityDependent
        ``diffusivity(params) -> D`` (number/JAX scalar, array of cell values, or a
        :class:`~bayesbio.pde.DensityDependent` function of the density such as
        :func:`~bayesbio.pde.porous_diffusivity`), or a fixed ``D`` of one of those kinds. A
        plain function is always called with the parameters.
    reaction : callable, optional
        ``reaction(u, params) -> f(u)`` of ``u``'s shape (e.g. :func:`bayesbio.pde.logistic`).
    bc : boundary specification or callable
        See :mod:`bayesbio.pde.boundary`; a callable ``bc(params)`` returns one. Default:
        no flux on every side.

    Examples
    --------
    Fisher–KPP with parameters ``{"D": ..., "lam": ..., "K": ...}``::

        problem = ReactionDiffusion(
            grid,
            diffusivity=lambda p: p["D"],
            reaction=lambda u, p: logistic(u, p["lam"], p["K"]),
        )
    """

    grid: Any
    diffusivity: Any = 1.0
    reaction: Callable | None = None
    bc: Any = "no-flux"

    def __post_init__(self):
        if not isinstance(self.grid, (Grid1D, Grid2D)):
            raise OptionError(f"ReactionDiffusion: 'grid' must be a Grid1D or Grid2D; got {describe(self.grid)}")
        if self.reaction is not None and not callable(self.reaction):
            raise OptionError(
                f"ReactionDiffusion: 'reaction' must be a function reaction(u, params); got {describe(self.reaction)}"
            )
        if not callable(self.bc) or isinstance(self.bc, BoundaryCondition):
            resolve_bcs(self.grid.ndim, self.bc)  # validate now, not inside a trace

    def D(self, params):
        """The diffusivity for these parameters (number, array or function of ``u``)."""
        if callable(self.diffusivity) and not isinstance(self.diffusivity, DensityDependent):
            return self.diffusivity(params)
        return self.diffusivity

    def boundary(self, params):
        if callable(self.bc) and not isinstance(self.bc, BoundaryCondition):
            return self.bc(params)
        return self.bc

    def react(self, u, params):
        if self.reaction is None:
            return jnp.zeros_like(u)
        return self.reaction(u, params)

    def rhs(self, t, y, params):
        """Method-of-lines right-hand side on the flattened state: for :func:`bayesbio.solve`.

        ``y`` has shape ``(grid.size,)``. Handy for adaptive diffrax solves of small grids
        (e.g. reference solutions); :func:`bayesbio.pde.solve_pde` is the fast, structure-
        exploiting integrator.
        """
        u = y.reshape(self.grid.shape)
        du = diffusion(u, self.grid, self.D(params), self.boundary(params)) + self.react(u, params)
        return du.reshape(-1)
