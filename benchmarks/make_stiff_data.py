"""Generate the synthetic data of the stiff benchmark (deterministic; run once, output committed).

Mass-action Michaelis–Menten kinetics with a fast binding step (see
``model_scripts/michaelis_menten.py``), solved with SciPy's Radau at tight tolerances (a solver
independent of both sides of the benchmark), plus Gaussian noise from a fixed seed. Writes
``data/michaelis_menten.csv`` (the observations both sides read) and
``data/michaelis_menten_truth.json`` (the generating parameters, for reference only).

    python benchmarks/make_stiff_data.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import write_json_atomic, write_text_atomic  # noqa: E402
from model_scripts.michaelis_menten import E0, Y0  # noqa: E402

SEED = 20240611
TRUTH = {"kf": 100.0, "kr": 500.0, "kcat": 0.5, "sigma": 0.1}
TIMES = np.geomspace(0.0002, 60.0, 20)


def simulate(kf, kr, kcat, ts):
    def rhs(t, y):
        s, c, _ = y
        v_bind = kf * (E0 - c) * s - kr * c
        v_cat = kcat * c
        return [-v_bind, v_bind - v_cat, v_cat]

    sol = solve_ivp(rhs, (0.0, ts[-1]), Y0, method="Radau", t_eval=ts, rtol=1e-11, atol=1e-13)
    assert sol.success, sol.message
    return sol.y.T


def main():
    ts = np.array([float(f"{t:.4g}") for t in TIMES])
    z = simulate(TRUTH["kf"], TRUTH["kr"], TRUTH["kcat"], ts)
    rng = np.random.default_rng(SEED)
    y = np.round(z + TRUTH["sigma"] * rng.standard_normal(z.shape), 6)
    lines = ["t,substrate,complex,product"]
    lines += [f"{t:.4g},{a:.6f},{b:.6f},{c:.6f}" for t, (a, b, c) in zip(ts, y, strict=True)]
    write_text_atomic(HERE / "data" / "michaelis_menten.csv", "\n".join(lines) + "\n")
    write_json_atomic(
        HERE / "data" / "michaelis_menten_truth.json",
        {
            "parameters": TRUTH,
            "E0": E0,
            "y0": list(Y0),
            "seed": SEED,
            "generator": "benchmarks/make_stiff_data.py (scipy Radau, rtol=1e-11, atol=1e-13)",
        },
    )
    print(f"wrote {HERE / 'data' / 'michaelis_menten.csv'} ({len(ts)} times)")


if __name__ == "__main__":
    main()
