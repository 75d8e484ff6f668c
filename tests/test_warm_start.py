"""A second process with JAX's persistent compilation cache: every program of a NUTS run comes
from the cache (no host callback keeps one out), and the draws are bit-identical to the cold run.

Each run is a fresh Python process (as `bayesbio fit` twice would be), with the cache in a
temporary folder; the bundled Lotka–Volterra model with tiny settings (~25 s in all).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

RUN = r"""
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
events = {"requests": 0, "hits": 0}
def listen(event, **kwargs):
    if event == "/jax/compilation_cache/compile_requests_use_cache":
        events["requests"] += 1
    elif event == "/jax/compilation_cache/cache_hits":
        events["hits"] += 1
jax.monitoring.register_event_listener(listen)
import numpy as np
import bayesbio as bb
idata = bb.sample_nuts("lotka_volterra", chains=2, warmup=20, samples=20, seed=3,
                       chain_method="sequential", progress=False)
np.savez(sys.argv[2], theta=idata.posterior["theta"].values, lp=idata.sample_stats["lp"].values,
         failures=idata.sample_stats["solver_failures"].values)
print(json.dumps(events))
"""


def run(cache, out):
    proc = subprocess.run([sys.executable, "-c", RUN, str(cache), str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_second_process_reads_every_program_from_the_cache_and_draws_the_same(tmp_path):
    cache = tmp_path / "jax-cache"
    cold = run(cache, tmp_path / "cold.npz")
    warm = run(cache, tmp_path / "warm.npz")
    assert cold["requests"] > 0 and cold["hits"] == 0, cold  # an empty cache: all compiled
    # every program the warm process needs (initialisation, sampler chunk, post-processing) was
    # written by the cold one: a program with a host callback would be compiled again here
    assert warm["hits"] == warm["requests"] > 0, warm
    a, b = np.load(tmp_path / "cold.npz"), np.load(tmp_path / "warm.npz")
    for name in ("theta", "lp", "failures"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
