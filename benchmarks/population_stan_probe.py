"""Probe: the cost of one Stan gradient of the population PK model, where a full Stan run is too long.

At N = 1,000 simulated patients a side-by-side run of ``population.py`` (2 chains x 100 warm-up
x 100 draws) costs Stan about 10x its N = 100 time, i.e. hours on this 2-core CPU. This probe
measures only what the per-gradient cost needs: Stan samples a few iterations after a few
step-size-only warm-up iterations from the same starting points as bayesbio's chains (its pre-fit draws, which lie in the
posterior bulk), with a short maximum tree depth so that trajectories stay near the start, and
reports

* the mean time of one leapfrog step (sampling seconds / leapfrog steps over all chains; this
  includes Stan's own per-step work, so it is an upper bound of one gradient), and
* Stan's own one-shot timing of one gradient at the initial point.

    python benchmarks/population_stan_probe.py --sizes 100,1000

It writes ``results/population_stan_probe.{json,md}``. It is a probe, not a benchmark: it has
no ESS and no bayesbio side.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402
import population  # noqa: E402

COLUMNS = [
    ("N patients", "n_patients", "d"),
    ("chains", "chains", "d"),
    ("timed iterations per chain", "iterations", "d"),
    ("max tree depth", "max_depth", "d"),
    ("warm-up iterations", "warmup", "d"),
    ("mean step size", "mean_step_size", ".3g"),
    ("divergences", "divergences", "d"),
    ("leapfrog steps", "leapfrog_steps", "d"),
    ("sampling s (sum over chains)", "sampling_seconds_total", ".1f"),
    ("one leapfrog step ms (upper bound of a gradient)", "one_step_ms", ".3g"),
    ("Stan's one-shot gradient ms at the start", "stan_reported_gradient_ms", ".3g"),
]


def probe(n: int, *, chains: int, iterations: int, max_depth: int, warmup: int, seed: int, folder: Path) -> dict:
    import numpy as np
    import stan

    data_path, sdata = population.simulate(n, folder)
    starts = population.bayesbio_chain_starts(data_path, chains, seed)
    code = population.STAN_FILE.read_text()
    posterior = stan.build(code, data=sdata, random_seed=seed)
    common.clear_stan_fits(code)
    t0 = time.time()
    fit = posterior.sample(num_chains=chains, num_warmup=warmup, num_samples=iterations,
                           max_depth=max_depth, init=[dict(s) for s in starts])
    wall = time.time() - t0
    per_chain = common.parse_stan_messages(fit)
    steps = int(common.stan_draws(fit, "n_leapfrog__").sum())
    total = sum(c["sampling_seconds"] for c in per_chain)
    return {
        "n_patients": n,
        "chains": chains,
        "iterations": iterations,
        "max_depth": max_depth,
        "warmup": warmup,
        "leapfrog_steps": steps,
        "sampling_seconds_total": total,
        "sample_call_seconds": wall,
        "one_step_ms": 1e3 * total / steps if steps else None,
        "stan_reported_gradient_ms": 1e3 * common.median_or_none(c["gradient_seconds"] for c in per_chain),
        "mean_step_size": float(np.mean(common.stan_draws(fit, "stepsize__"))),
        "divergences": int(common.stan_draws(fit, "divergent__").sum()),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100,1000", help="comma-separated numbers of patients (default 100,1000)")
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--iterations", type=int, default=10, help="iterations per chain, no warm-up (default 10)")
    p.add_argument("--max-depth", type=int, default=4, help="maximum tree depth (default 4: at most 15 steps)")
    p.add_argument("--warmup", type=int, default=10,
                   help="warm-up iterations, step size only (default 10; with none, Stan samples at step size 1, "
                   "which diverges at the first step into extreme parameters)")
    p.add_argument("--seed", type=int, default=1, help="seed; the starts are bayesbio's for this seed (default 1)")
    p.add_argument("--out-dir", type=Path, default=common.RESULTS_DIR)
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    result = {
        "benchmark": "population_stan_probe",
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": common.machine_info(),
        "settings": {k: v for k, v in vars(args).items() if k != "out_dir"},
        "rows": [],
        "versions": common.stan_versions(),
    }
    with tempfile.TemporaryDirectory(prefix="bayesbio-stan-probe-") as tmp:
        for n in sizes:
            print(f"[stan probe] N = {n} ...", flush=True)
            row = probe(n, chains=args.chains, iterations=args.iterations, max_depth=args.max_depth,
                        warmup=args.warmup, seed=args.seed, folder=Path(tmp))
            print(f"  {row}", flush=True)
            result["rows"].append(row)
            lines = [
                "# Stan gradient probe: population PK model (`stan/population_pk.stan`)",
                "",
                f"A few warm-up iterations (step size only, no metric), then the timed draws; chains start at bayesbio's starting points (seed {args.seed}, its "
                "pre-fit draws, in the posterior bulk). Machine: "
                f"{result['machine'].get('cpu_model')}, {result['machine'].get('cpu_count')} logical CPUs, load "
                f"average at start {', '.join(f'{x:.1f}' for x in result['machine'].get('loadavg_at_start', []))}.",
                "",
                common.markdown_table(result["rows"], COLUMNS),
                "",
                "Chains run concurrently, one per core. Created by `benchmarks/population_stan_probe.py`.",
                "",
            ]
            common.write_json_atomic(args.out_dir / "population_stan_probe.json", result)
            common.write_text_atomic(args.out_dir / "population_stan_probe.md", "\n".join(lines))
    return result


if __name__ == "__main__":
    main()
