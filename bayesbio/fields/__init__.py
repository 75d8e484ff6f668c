"""Function-space priors and field inference for ill-posed inverse problems.

Priors over fields on 1-D and 2-D cell-centred grids (:mod:`bayesbio.pde` grids, a
:class:`FieldGrid`, or an integer number of cells on [0, 1]), each usable as NumPyro sites with
``prior.sample("u")`` (whitened by default, for NUTS) and with hyperpriors on its amplitude and
length scale:

* :class:`MaternSPDE` — Matérn field as a sparse GMRF (SPDE discretisation);
* :class:`MaternKL` — Matérn field as a truncated Karhunen–Loève expansion;
* :class:`GMRFSmoothness` — random-walk / curvature GMRF with boundary handling;
* :class:`EdgePreserving` — Cauchy- or Laplace-difference (TV-like) prior.

Inference: :func:`linear_gaussian_posterior` (exact, the oracle), :func:`laplace_field` (dense
or low-rank Laplace), and NUTS/SVI through :func:`bayesbio.sample_nuts` /
:func:`bayesbio.fit_svi`; summaries with :func:`summarize_field`, :func:`band_coverage`,
:func:`compare_fields`, :func:`plot_field`. Forward operators: :func:`heat_semigroup` (and
:func:`heat_semigroup_apply`, matrix-free), :func:`convolution_matrix`, :func:`interpolation_matrix`.
"""

from bayesbio.fields._grid import FieldGrid, as_field_grid
from bayesbio.fields.edge import EdgePreserving
from bayesbio.fields.exact import FieldPosterior, linear_gaussian_posterior
from bayesbio.fields.gmrf import GMRFSmoothness
from bayesbio.fields.laplace import laplace_field, laplace_preconditioner, randomized_eigh
from bayesbio.fields.matern import MaternKL, MaternSPDE, matern_correlation, matern_kappa_tau
from bayesbio.fields.operators import (
    convolution_matrix,
    heat_semigroup,
    heat_semigroup_apply,
    interpolation_matrix,
)
from bayesbio.fields.plot import plot_field
from bayesbio.fields.summary import FieldSummary, band_coverage, compare_fields, summarize_field

__all__ = [
    "EdgePreserving",
    "FieldGrid",
    "FieldPosterior",
    "FieldSummary",
    "GMRFSmoothness",
    "MaternKL",
    "MaternSPDE",
    "as_field_grid",
    "band_coverage",
    "compare_fields",
    "convolution_matrix",
    "heat_semigroup",
    "heat_semigroup_apply",
    "interpolation_matrix",
    "laplace_field",
    "laplace_preconditioner",
    "linear_gaussian_posterior",
    "matern_correlation",
    "matern_kappa_tau",
    "plot_field",
    "randomized_eigh",
    "summarize_field",
]
