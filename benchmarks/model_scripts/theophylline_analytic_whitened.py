"""The bundled theophylline model (closed form, ``solver="analytic"``), in the centred
parameterisation (``eta ~ Normal(0, omega)`` sampled directly), fitted with
``prefit="laplace"``: NUTS moves in coordinates whitened by the per-patient block Hessian at
the mean-field pre-fit's mean (``bayesbio.infer.whiten``).

The posterior is the same as that of the bundled model and of ``stan/population_pk_analytic.stan``
(same priors, likelihood and data; the random effects in other coordinates). ``benchmarks/
population.py --solver analytic-whitened`` fits it against that (non-centred) Stan program,
``--solver analytic-centred`` against ``stan/population_pk_analytic_centred.stan``.

    bayesbio fit benchmarks/model_scripts/theophylline_analytic_whitened.py --data table.csv
"""

from bayesbio.models.theophylline import (  # noqa: F401  (read by bayesbio's model loader)
    coords,
    init_strategy,
    load_data,
    make_model,
)
from bayesbio.models.theophylline import dims as _dims

description = ("Theophylline population PK, closed form, centred random effects, NUTS in Laplace-whitened "
               "coordinates (benchmarks/population.py --solver analytic-whitened)")
model = make_model("analytic", centered=True)
dims = {k: v for k, v in _dims.items() if k != "eta_z"}  # the centred model has no standard normals
nuts_prefit = "laplace"
