"""Divergences of bayesbio's short-warm-up population fits, seed by seed (no Stan, no timing).

The population benchmark's N = 10 run at 2 chains x 100 warm-up x 400 draws had 26 divergences
on bayesbio's side (``results/population_N10.md``). This script refits the same posterior (the
RK45 theophylline script, ``simulate_table(N, seed=20240611)``) at several warm-up lengths and
seeds and prints, per fit, the divergences per chain, the adapted step sizes, the minimum bulk
ESS and the maximum R-hat of the population parameters, one JSON line each.

    python benchmarks/population_short_warmup_check.py --n 10 --warmup 100,300 --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

POPULATION = ["ka_pop", "cl_pop", "v_pop", "omega_ka", "omega_cl", "omega_v", "sigma"]
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_scripts", "theophylline_rk45.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10, help="simulated patients (default 10)")
    parser.add_argument("--warmup", default="100", help="comma-separated warm-up lengths (default 100)")
    parser.add_argument("--samples", type=int, default=400, help="draws per chain (default 400)")
    parser.add_argument("--chains", type=int, default=2, help="chains (default 2)")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    args = parser.parse_args()

    import jax

    jax.config.update("jax_enable_x64", True)
    import arviz as az
    import numpy as np

    import bayesbio as bb
    from bayesbio.models import theophylline as th

    with tempfile.TemporaryDirectory() as tmp:
        table = os.path.join(tmp, f"theophylline_{args.n}.csv")
        th.simulate_table(args.n, seed=20240611).to_csv(table, index=False)
        for warmup in (int(w) for w in args.warmup.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                start = time.time()
                idata = bb.sample_nuts(SCRIPT, table, chains=args.chains, warmup=warmup, samples=args.samples,
                                       seed=seed, target_accept=0.8, chain_method="sequential", progress=False)
                stats = idata.sample_stats
                summary = az.summary(idata, var_names=POPULATION)
                diverging = np.asarray(stats["diverging"].values)
                print(json.dumps({
                    "n": args.n, "warmup": warmup, "samples": args.samples, "seed": seed,
                    "divergences": int(diverging.sum()),
                    "divergences_per_chain": diverging.sum(axis=1).tolist(),
                    "step_size_per_chain": np.asarray(stats["step_size"].values[:, 0]).round(4).tolist(),
                    "min_ess_bulk": float(summary["ess_bulk"].min()),
                    "max_r_hat": float(summary["r_hat"].max()),
                    "seconds": round(time.time() - start, 1),
                }), flush=True)


if __name__ == "__main__":
    main()
