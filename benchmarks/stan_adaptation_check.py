"""Does Stan adapt its metric in a short warm-up? (the check behind ``stan_side.adaptation_windows``)

Samples a two-variable normal (sd 1 and 10) with PyStan and reads Stan's adapted inverse metric
from its output, for warm-ups just under and at 150 iterations with the default buffers, and for
100 iterations with the 15%/75%/10% split passed explicitly. An adapted metric is near (1, 100).

    python benchmarks/stan_adaptation_check.py      # writes results/stan_adaptation_check.{json,md}
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from results_io import machine_info, write_json_atomic, write_text_atomic  # noqa: E402
from stan_side import adaptation_windows, stan_versions  # noqa: E402

PROGRAM = "parameters { vector[2] x; } model { x[1] ~ normal(0, 1); x[2] ~ normal(0, 10); }"
CASES = [{"num_warmup": 100}, {"num_warmup": 149}, {"num_warmup": 150}, {"num_warmup": 100, **adaptation_windows(100)}]


def adapted(fit) -> tuple[float, list[float]]:
    import json

    lines = [json.loads(raw)["values"][0] for raw in fit.stan_outputs[0].splitlines()
             if b'"topic":"sample"' in raw and b'"values":["' in raw]
    i = lines.index("Adaptation terminated")
    return float(lines[i + 1].split("=")[1]), [float(v) for v in lines[i + 3].split(",")]


def main() -> None:
    import stan

    posterior = stan.build(PROGRAM, random_seed=1)
    rows = []
    for case in CASES:
        stepsize, metric = adapted(posterior.sample(num_chains=1, num_samples=10, **case))
        rows.append({"arguments": case, "stepsize": stepsize, "inv_metric": metric})
    result = {"program": PROGRAM, "rows": rows, "versions": stan_versions(), "machine": machine_info()}
    write_json_atomic(HERE / "results" / "stan_adaptation_check.json", result)
    md = ["# Does Stan adapt its metric in a short warm-up?", "", f"`{PROGRAM}` (true variances 1 and 100), "
          f"one chain, seed 1; {', '.join(f'{k} {v}' for k, v in result['versions'].items() if v)}.", "",
          "| sample() arguments | adapted step size | adapted inverse metric |", "|---|---:|---|"]
    md += [f"| {r['arguments']} | {r['stepsize']:g} | {', '.join(f'{v:g}' for v in r['inv_metric'])} |" for r in rows]
    md += ["", "An inverse metric of exactly (1, 1) is the unit metric Stan starts from: no adaptation happened.", ""]
    print(write_text_atomic(HERE / "results" / "stan_adaptation_check.md", "\n".join(md)))


if __name__ == "__main__":
    main()
