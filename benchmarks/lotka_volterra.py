"""Benchmark: Lotka–Volterra lynx–hare posterior (posteriordb ``hudson_lynx_hare-lotka_volterra``),
bayesbio's bundled ``lotka_volterra`` model vs the posteriordb Stan program, same data, priors,
chains, warm-up and draws.

    python benchmarks/lotka_volterra.py                 # 4 chains x 1000 warm-up x 1000 draws
    python benchmarks/lotka_volterra.py --quick         # smoke run: 2 x 100 x 100

Writes ``benchmarks/results/lotka_volterra[_quick].json`` and ``.md`` (``--out-dir`` to change).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402

NAME = "lotka_volterra"
PARAMS = ["theta", "z_init", "sigma"]
LABELS = {"theta": ["alpha", "beta", "gamma", "delta"], "z_init": ["hare", "lynx"], "sigma": ["hare", "lynx"]}
# verbatim posteriordb program: integrate_ode_rk45(..., 1e-5, 1e-3, 500)
# (deprecated in Stan 2.35, still accepted)
STAN_FILE = HERE / "stan" / "lotka_volterra.stan"


def stan_data() -> dict:
    """Stan data built from the very arrays the bayesbio model loads (its bundled CSV)."""
    from bayesbio.models.lotka_volterra import load_data

    d = load_data()
    return {
        "N": int(len(d["ts"])),
        "ts": [float(t) for t in d["ts"]],
        "y_init": [float(v) for v in d["y_init"]],
        "y": [[float(v) for v in row] for row in d["y"]],
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_arguments(p)
    return p


def main(argv=None) -> dict:
    args = parser().parse_args(argv)
    notes = [
        "Same posterior on both sides: priors, likelihood and the 21 years of pelts (the Stan data are "
        "built from the arrays bayesbio's `lotka_volterra.load_data()` returns, which equal posteriordb's "
        "`data.json`).",
        "Same ODE accuracy settings on both sides: Dormand–Prince RK45 with forward sensitivities in the "
        "error control, rtol 1e-5, atol 1e-3, at most 500 steps. Stan runs the verbatim posteriordb "
        "program (`integrate_ode_rk45`, deprecated but accepted by Stan 2.35); bayesbio its fused "
        "`rk45` solver (models/lotka_volterra.py).",
    ]
    return common.run_benchmark(
        args,
        name=NAME,
        title="Lotka–Volterra (hudson_lynx_hare): bayesbio vs Stan",
        bayesbio_model="lotka_volterra",
        bayesbio_data=None,
        stan_file=STAN_FILE,
        stan_data=stan_data(),
        params=PARAMS,
        labels=LABELS,
        notes=notes,
        extra_settings={"stan_ode": "posteriordb integrate_ode_rk45 (1e-5, 1e-3, 500)"},
    )


if __name__ == "__main__":
    main()
