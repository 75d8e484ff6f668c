"""Boundary conditions for cell-centred finite-volume diffusion.

Three kinds, each a small immutable object; a side's value may be a number, a JAX scalar
(e.g. a sampled parameter) or, in 2-D, an array along that side:

``Dirichlet(value)``
    ``u = value`` on the boundary. The boundary face flux uses the half-cell distance between
    the last cell centre and the boundary, ``D (value - u_0) / (dx_0 / 2)``, which keeps the
    scheme second-order accurate globally.
``Neumann(gradient)``
    ``∂u/∂n = gradient`` (outward normal derivative): the outward diffusive flux is
    ``-D * gradient``.
``NoFlux()``
    Zero diffusive flux, ``∂u/∂n = 0`` (``Neumann(0)``); total mass changes only through
    reactions.

A grid's boundary conditions are given as one condition for every side, a string shortcut
(``"dirichlet"`` = ``Dirichlet(0)``, ``"neumann"`` or ``"no-flux"`` = ``NoFlux()``), a pair
``(left, right)`` in 1-D, or in 2-D a dict with the keys ``left``/``right`` (x = x0 and
x0 + lx) and ``bottom``/``top`` (y = y0 and y0 + ly).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bayesbio.errors import OptionError, describe

__all__ = ["BoundaryCondition", "Dirichlet", "Neumann", "NoFlux", "resolve_bcs"]

SIDES_1D = ("left", "right")
SIDES_2D = ("left", "right", "bottom", "top")


class BoundaryCondition:
    """Base class of the boundary conditions."""

    kind: str = ""


@dataclass(frozen=True, eq=False)
class Dirichlet(BoundaryCondition):
    """Fixed boundary value ``u = value``."""

    value: Any = 0.0
    kind = "dirichlet"


@dataclass(frozen=True, eq=False)
class Neumann(BoundaryCondition):
    """Fixed outward normal derivative ``∂u/∂n = gradient``."""

    gradient: Any = 0.0
    kind = "neumann"


@dataclass(frozen=True, eq=False)
class NoFlux(BoundaryCondition):
    """Zero diffusive flux through the boundary (mass-conserving)."""

    kind = "neumann"

    @property
    def gradient(self):
        return 0.0


_SHORTCUTS = {"dirichlet": Dirichlet, "neumann": NoFlux, "no-flux": NoFlux, "noflux": NoFlux}


def _one(bc, where: str) -> BoundaryCondition:
    if isinstance(bc, BoundaryCondition):
        return bc
    if isinstance(bc, str) and bc.lower() in _SHORTCUTS:
        return _SHORTCUTS[bc.lower()]()
    raise OptionError(
        f"boundary condition {where}: expected Dirichlet(value), Neumann(gradient), NoFlux() or one of "
        f"{sorted(_SHORTCUTS)}; got {describe(bc) if not isinstance(bc, str) else repr(bc)}"
    )


def resolve_bcs(ndim: int, bc) -> tuple[tuple[BoundaryCondition, BoundaryCondition], ...]:
    """Per-axis ``(low, high)`` boundary conditions from any accepted specification."""
    sides = SIDES_1D if ndim == 1 else SIDES_2D
    if isinstance(bc, Mapping):
        unknown = sorted(set(bc) - set(sides))
        missing = [s for s in sides if s not in bc]
        if unknown or missing:
            raise OptionError(
                f"boundary conditions 'bc': a dict needs exactly the keys {list(sides)}; "
                f"unknown {unknown}, missing {missing}"
            )
        per_side = [_one(bc[s], f"'{s}'") for s in sides]
    elif isinstance(bc, (tuple, list)):
        if ndim != 1 or len(bc) != 2:
            raise OptionError(
                "boundary conditions 'bc': a sequence is accepted only in 1-D as (left, right); "
                f"in {ndim}-D pass one condition or a dict with keys {list(sides)}; got {len(bc)} items"
            )
        per_side = [_one(b, f"'{s}'") for b, s in zip(bc, sides)]
    else:
        one = _one(bc, "'bc'")
        per_side = [one] * len(sides)
    return tuple((per_side[2 * a], per_side[2 * a + 1]) for a in range(ndim))
