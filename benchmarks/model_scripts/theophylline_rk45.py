"""The bundled theophylline model with its concentrations solved by the explicit RK45 solver
(rtol = atol = 1e-6, at most 5000 steps per segment), as the bundled model was solved until
2026-12 (it now uses the closed form, ``solver="analytic"``).

``benchmarks/population.py`` fits this script against ``stan/population_pk.stan``, whose
``ode_rk45_tol`` runs at the same tolerances: both sides then pay for a numerical ODE solve.

    bayesbio fit benchmarks/model_scripts/theophylline_rk45.py --data table.csv
"""

from bayesbio.models.theophylline import (  # noqa: F401  (read by bayesbio's model loader)
    coords,
    dims,
    init_strategy,
    load_data,
    make_model,
    nuts_prefit,
)

description = "Theophylline population PK, concentrations by the RK45 ODE solver (benchmarks/population.py)"
model = make_model("rk45", rtol=1e-6, atol=1e-6, max_steps=5000)
