"""Benchmark: a stiff ODE posterior (mass-action Michaelis–Menten with fast binding), bayesbio
(``rodas4``, model script ``benchmarks/model_scripts/michaelis_menten.py``) vs Stan
(``ode_bdf_tol``, ``benchmarks/stan/michaelis_menten.stan``), same synthetic data
(``benchmarks/data/michaelis_menten.csv``), priors, tolerances, chains, warm-up and draws.

    python benchmarks/stiff.py            # 4 chains x 1000 warm-up x 1000 draws
    python benchmarks/stiff.py --quick    # smoke run: 2 x 30 x 30

Writes ``benchmarks/results/stiff[_quick].json`` and ``.md`` (``--out-dir`` to change).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402

NAME = "stiff"
MODEL_SCRIPT = HERE / "model_scripts" / "michaelis_menten.py"
STAN_FILE = HERE / "stan" / "michaelis_menten.stan"
PARAMS = ["k", "sigma"]
LABELS = {"k": ["kf", "kr", "kcat"]}
# --quick is smaller here than elsewhere: one bayesbio gradient costs tens of milliseconds
QUICK_SIZE = {"chains": 2, "warmup": 30, "samples": 30}


def load_model_script():
    spec = importlib.util.spec_from_file_location("bench_michaelis_menten", MODEL_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stan_data(mm) -> dict:
    """Stan data from the model script's own loader and constants (one source for both sides)."""
    d = mm.load_data()
    return {
        "N": int(len(d["ts"])),
        "ts": [float(t) for t in d["ts"]],
        "y": [[float(v) for v in row] for row in d["y"]],
        "y0": [float(v) for v in mm.Y0],
        "E0": float(mm.E0),
        "prior_median": [float(v) for v in mm.PRIOR_MEDIAN],
        "prior_log_sd": float(mm.PRIOR_LOG_SD),
        "sigma_scale": float(mm.SIGMA_SCALE),
        "rtol": float(mm.RTOL),
        "atol": float(mm.ATOL),
        "max_num_steps": int(mm.MAX_STEPS),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    return common.add_arguments(p)


def main(argv=None) -> dict:
    args = parser().parse_args(argv)
    mm = load_model_script()
    notes = [
        (
            f'bayesbio: `bb.solve(..., solver="{mm.SOLVER}")` (fused L-stable Rosenbrock RODAS4, forward sensitivities in the error control) '
            f"at rtol {mm.RTOL:g}, atol {mm.ATOL:g}, max_steps {mm.MAX_STEPS} (total over the solve). "
            "Stan: `ode_bdf_tol` (CVODES BDF, forward sensitivities in the error control) at the same "
            f"rtol/atol, max_num_steps {mm.MAX_STEPS} (CVODES counts steps between output times)."
        ),
        (
            "Synthetic data from `benchmarks/make_stiff_data.py` (kf 100, kr 500, kcat 0.5, sigma 0.1, "
            "seed 20240611); both sides read `benchmarks/data/michaelis_menten.csv`."
        ),
        (
            "The initial state is known (data), so both sides integrate sensitivities for the 3 rate "
            "constants only (bayesbio integrates sensitivity columns only for differentiated inputs)."
        ),
    ]
    return common.run_benchmark(
        args,
        name=NAME,
        title="Stiff Michaelis–Menten kinetics: bayesbio (rodas4) vs Stan (ode_bdf)",
        bayesbio_model=str(MODEL_SCRIPT),
        bayesbio_data=None,
        stan_file=STAN_FILE,
        stan_data=stan_data(mm),
        params=PARAMS,
        labels=LABELS,
        notes=notes,
        extra_settings={
            "solver_bayesbio": mm.SOLVER,
            "solver_stan": "ode_bdf_tol",
            "rtol": mm.RTOL,
            "atol": mm.ATOL,
            "max_steps": mm.MAX_STEPS,
        },
        quick_size=QUICK_SIZE,
    )


if __name__ == "__main__":
    main()
