"""Method-of-lines building blocks for PDE models on structured 1-D and 2-D grids.

Grids (:class:`Grid1D`, :class:`Grid2D`), conservative finite-volume diffusion
(:func:`diffusion`, :func:`diffusion_matrix`, :func:`diffusion_source`), boundary conditions
(:class:`Dirichlet`, :class:`Neumann`, :class:`NoFlux`), reaction terms
(:func:`logistic`/:func:`fisher_kpp`, :func:`porous_diffusivity`) and initial conditions
(:func:`interpolate_profile`, :func:`from_function`).
"""

from bayesbio.pde.boundary import BoundaryCondition, Dirichlet, Neumann, NoFlux
from bayesbio.pde.diffusion import diffusion, diffusion_matrix, diffusion_source
from bayesbio.pde.grids import Grid1D, Grid2D
from bayesbio.pde.initial import from_function, interpolate_profile
from bayesbio.pde.reaction import DensityDependent, fisher_kpp, logistic, porous_diffusivity

__all__ = [
    "BoundaryCondition",
    "DensityDependent",
    "Dirichlet",
    "Grid1D",
    "Grid2D",
    "Neumann",
    "NoFlux",
    "diffusion",
    "diffusion_matrix",
    "diffusion_source",
    "fisher_kpp",
    "from_function",
    "interpolate_profile",
    "logistic",
    "porous_diffusivity",
]

from bayesbio.pde.integrate import reject_if_failed, solve_pde, solve_pde_with_status, step_schedule
from bayesbio.pde.problem import ReactionDiffusion

__all__ += ["ReactionDiffusion", "reject_if_failed", "solve_pde", "solve_pde_with_status", "step_schedule"]
