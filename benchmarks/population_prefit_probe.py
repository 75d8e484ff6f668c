"""Probe: one bayesbio fit of the theophylline model on a simulated population, with a chosen
parameterisation and NUTS pre-fit; prints the population parameters' summary, the phase times,
gradient evaluations and minimum bulk ESS per gradient. No Stan side: for comparing bayesbio's
own settings (e.g. the non-centred model with ``prefit="svi"`` against the centred one with
``prefit="laplace"``) on the same data, seed and run length. Used for the N = 1,000 row of the
whitening lever in ``README.md`` (levers log).

    python benchmarks/population_prefit_probe.py 1000 rk45 centred laplace 100 400 2
    # args: patients, solver (rk45 | analytic), centred | noncentred, pre-fit, warm-up, draws, chains
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import arviz as az  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bayesbio as bb  # noqa: E402
import models.theophylline as th  # noqa: E402

PARAMS = ["ka_pop", "cl_pop", "v_pop", "omega_ka", "omega_cl", "omega_v", "sigma"]
DATA_SEED = 20240611  # as benchmarks/population.py


def main(argv):
    n, solver, form, prefit = int(argv[0]), argv[1], argv[2], argv[3]
    warmup, draws, chains = int(argv[4]), int(argv[5]), int(argv[6])
    if form not in ("centred", "noncentred"):
        raise SystemExit(f"third argument: 'centred' or 'noncentred'; got {form!r}")
    path = os.path.join(tempfile.mkdtemp(), "table.csv")
    th.simulate_table(n, seed=DATA_SEED).to_csv(path, index=False)
    data = th.load_data(path)
    options = {"rtol": 1e-6, "atol": 1e-6, "max_steps": 5000} if solver == "rk45" else {}
    model = th.make_model(solver, centered=form == "centred", **options)
    spec = bb.ModelSpec(name="theophylline_probe", model=model, load_data=th.load_data,
                        init_strategy=th.init_strategy, dims=th.dims, coords=th.coords)
    t0 = time.time()
    idata = bb.sample_nuts(spec, data, chains=chains, warmup=warmup, samples=draws, seed=1, prefit=prefit,
                           progress=False)
    attrs = idata.posterior.attrs
    summary = az.summary(idata, var_names=PARAMS)
    print(summary[["mean", "sd", "ess_bulk", "r_hat"]])
    grads = attrs["gradient_evaluations"]
    print(f"total {time.time() - t0:.1f}s prefit {attrs['prefit_seconds']:.1f} warmup {attrs['warmup_seconds']:.1f} "
          f"sampling {attrs['sampling_seconds']:.1f} grads {grads} minESS {summary.ess_bulk.min():.0f} "
          f"ESS/grad {summary.ess_bulk.min() / grads:.4f} step {float(idata.sample_stats.step_size.mean()):.3f} "
          f"div {int(idata.sample_stats.diverging.sum())} metric {attrs['metric']}")


if __name__ == "__main__":
    main(sys.argv[1:])
