"""Lever check (benchmarks/README.md, levers log): one log-density gradient of the bundled warfarin
model with its PD response solved by a one-state RK45 ODE (the model script of commit 9b10306)
against the current quadrature (HEAD), in one process, at the same 12 prior draws (seed 1), data
traced as in the runners, median of 3 x 20 jitted value-and-gradient calls per draw.

    python benchmarks/warfarin_pd_lever.py        # needs the git history (reads 9b10306's script)

Prints one line per draw (ms per gradient and the log density, which must agree) and the sums.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from timing import median_seconds_per_call  # noqa: E402
from warfarin_solvers import compiled_gradient  # noqa: E402

OLD_COMMIT = "9b10306"


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    from numpyro.infer import Predictive

    from bayesbio.models import warfarin_pkpd as new

    text = subprocess.run(["git", "show", f"{OLD_COMMIT}:models/warfarin_pkpd.py"], cwd=HERE, check=True,
                          capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "warfarin_pkpd_old.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location("warfarin_pkpd_old", path)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
    data = new.load_data()
    prior = Predictive(new.model, num_samples=12)(jax.random.PRNGKey(1), data)
    forms = {}
    for name, module in ((f"one-state RK45 PD ({OLD_COMMIT})", old), ("quadrature PD (HEAD)", new)):
        forms[name] = compiled_gradient(module.model, data)
    totals = dict.fromkeys(forms, 0.0)
    for i in range(12):
        cells = []
        for name, (point, grad) in forms.items():
            seconds, (value, _) = median_seconds_per_call(grad, point(prior, i), data, calls=20, repeats=3)
            totals[name] += seconds
            cells.append(f"{name}: {1e3 * seconds:.3g} ms (potential {float(value):.6g})")
        print(i, " | ".join(cells))
    first, second = totals.values()
    print({k: round(1e3 * v, 2) for k, v in totals.items()}, "ratio", round(first / second, 2))


if __name__ == "__main__":
    main()
