"""Shared test configuration.

* double precision (the package's default on the command line, and what the tolerances of the
  numerical tests assume) is switched on before anything imports bayesbio;
* progress bars are off (``CI=true`` is what :func:`bayesbio.infer._common.show_progress` reads;
  subprocesses inherit it);
* global seeds are fixed (bayesbio itself only uses explicit JAX keys);
* ``reference_summary`` loads the posteriordb reference posterior of the Lotka–Volterra model
  from the shared folder beside the repository, or skips the test when it is absent.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

os.environ.setdefault("CI", "true")
# keep the command line's persistent compilation cache out of the user's home during tests
os.environ.setdefault("BAYESBIO_CACHE_DIR", "off")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: The shared folder beside the repository (``/work/shared`` on the development machine). Tests
#: read nothing from it but reference posteriors.
SHARED = Path(__file__).resolve().parents[2] / "shared"
LV_REFERENCE = SHARED / "reference" / "posteriordb" / "hudson_lynx_hare-lotka_volterra" / "reference_summary.csv"


@pytest.fixture(autouse=True)
def _fixed_seeds():
    random.seed(0)
    np.random.seed(0)
    yield


def load_reference_summary():
    """posteriordb summary of ``hudson_lynx_hare-lotka_volterra`` as {name: (mean, sd)}, or skip."""
    if not LV_REFERENCE.is_file():
        pytest.skip(
            f"posteriordb reference posterior not available (expected {LV_REFERENCE}); "
            "the comparison with the reference needs the shared reference folder"
        )
    import pandas as pd

    table = pd.read_csv(LV_REFERENCE)
    return {row.parameter: (float(row.mean), float(row.sd)) for row in table.itertuples()}


@pytest.fixture(scope="session")
def reference_summary():
    """{"theta[1]": (mean, sd), ..., "sigma[2]": (mean, sd)} from posteriordb (Stan reference draws)."""
    return load_reference_summary()


def posterior_vs_reference(idata, reference, names=None):
    """Rows (name, mean, sd, ref_mean, ref_sd, |mean-ref|/ref_sd, sd/ref_sd) for every reference
    parameter; ``theta[1]`` is index 0 of the last axis of ``posterior.theta``."""
    rows = []
    for key, (ref_mean, ref_sd) in reference.items():
        var, idx = key[:-1].split("[")
        if names is not None and var not in names:
            continue
        draws = np.asarray(idata.posterior[var].values)[..., int(idx) - 1].ravel()
        mean, sd = float(draws.mean()), float(draws.std(ddof=1))
        rows.append((key, mean, sd, ref_mean, ref_sd, abs(mean - ref_mean) / ref_sd, sd / ref_sd))
    return rows


def format_rows(rows):
    return "\n".join(
        f"{k:10s} mean={m:.5g} sd={s:.4g} ref={rm:.5g}±{rs:.4g} |z|={z:.3f} sd_ratio={r:.3f}"
        for k, m, s, rm, rs, z, r in rows
    )


def sigkill_once_written(proc, path, *, timeout: float = 600.0) -> None:
    """Wait until ``path`` exists (a running CLI's first checkpoint), then SIGKILL ``proc``."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        assert proc.poll() is None, "the run ended before writing its first checkpoint"
        assert time.monotonic() < deadline, f"no '{path}' after {timeout} s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
