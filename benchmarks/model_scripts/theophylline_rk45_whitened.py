"""The theophylline model of ``theophylline_rk45.py`` (RK45, rtol = atol = 1e-6, at most 5000
steps per segment), in the centred parameterisation (``eta ~ Normal(0, omega)`` sampled
directly), fitted with ``prefit="laplace"``: NUTS moves in coordinates whitened by the
per-patient block Hessian at the mean-field pre-fit's mean (``bayesbio.infer.whiten``).

The posterior is the same as that of ``theophylline_rk45.py`` and of ``stan/population_pk.stan``
(same priors, likelihood and data; the random effects in other coordinates). ``benchmarks/
population.py --solver rk45-whitened`` fits it against that (non-centred) Stan program,
``--solver rk45-centred`` against ``stan/population_pk_centred.stan``.

    bayesbio fit benchmarks/model_scripts/theophylline_rk45_whitened.py --data table.csv
"""

from bayesbio.models.theophylline import (  # noqa: F401  (read by bayesbio's model loader)
    coords,
    init_strategy,
    load_data,
    make_model,
)
from bayesbio.models.theophylline import dims as _dims

description = ("Theophylline population PK, RK45, centred random effects, NUTS in Laplace-whitened coordinates "
               "(benchmarks/population.py --solver rk45-whitened)")
model = make_model("rk45", centered=True, rtol=1e-6, atol=1e-6, max_steps=5000)
dims = {k: v for k, v in _dims.items() if k != "eta_z"}  # the centred model has no standard normals
nuts_prefit = "laplace"
