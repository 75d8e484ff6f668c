"""Stan side of a benchmark (PyStan 3; runs inside a fresh worker process).

PyStan, httpstan and numpy are imported inside the functions, so importing this module costs
a worker nothing.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

from bench_settings import MAX_TREE_DEPTH, REPO_ROOT, TARGET_ACCEPT
from posterior_summary import median_or_none, posterior_diagnostics


#: Stan's default adaptation buffers (CmdStan/PyStan: init_buffer 75, window 25, term_buffer 50)
STAN_DEFAULT_BUFFERS = (75, 25, 50)


def adaptation_windows(num_warmup: int) -> dict:
    """Explicit adaptation buffers for a warm-up shorter than Stan's default schedule.

    With ``num_warmup`` < 150 and the default buffers, Stan (2.35, as bundled with PyStan 3.10)
    prints that it reduces the schedule to 15%/75%/10% of the warm-up, but its
    ``windowed_adaptation::set_window_params`` returns before ``restart()``, so the window
    counter keeps its constructor value and the metric is never adapted: sampling runs on the
    unit metric (checked on a two-variable normal: inverse metric "1, 1" at 100 and 149
    warm-up iterations, adapted at 150). Passing the same 15/75/10 split explicitly takes Stan's
    normal branch, which restarts the windows, so Stan adapts its metric as NumPyro does (its
    schedule for short warm-ups is the same split). Empty for warm-ups of 150 or more, or under 20
    (where Stan adapts no metric by design).
    """
    init, window, term = STAN_DEFAULT_BUFFERS
    if num_warmup >= init + window + term or num_warmup < 20:
        return {}
    init_buffer = int(0.15 * num_warmup)
    term_buffer = int(0.10 * num_warmup)
    return {"init_buffer": init_buffer, "window": num_warmup - init_buffer - term_buffer, "term_buffer": term_buffer}


def stan_versions() -> dict:
    import httpstan
    import stan

    version = None
    hpp = Path(httpstan.__file__).parent / "include" / "stan" / "version.hpp"
    if hpp.exists():
        text = hpp.read_text()
        parts = [re.search(rf"#define STAN_{p}\s+(\d+)", text) for p in ("MAJOR", "MINOR", "PATCH")]
        if all(parts):
            version = ".".join(m.group(1) for m in parts)
    return {"pystan": stan.__version__, "httpstan": httpstan.__version__, "stan": version}


def stan_model_directory(program_code: str) -> Path:
    """httpstan's cache folder for this program (built extension module and cached fits)."""
    import httpstan.cache
    import httpstan.models

    return httpstan.cache.model_directory(httpstan.models.calculate_model_name(program_code))


def clear_stan_model(program_code: str) -> None:
    """Remove the program's built model (and its fits) from httpstan's cache: the next
    ``stan.build`` compiles it from scratch."""
    import httpstan.cache
    import httpstan.models

    httpstan.cache.delete_model_directory(httpstan.models.calculate_model_name(program_code))


def clear_stan_fits(program_code: str) -> None:
    """Remove cached fits: httpstan returns a cached fit (without sampling) when a model is
    sampled again with the same seed, data and arguments."""
    shutil.rmtree(stan_model_directory(program_code) / "fits", ignore_errors=True)


_GRADIENT_RE = re.compile(r"Gradient evaluation took\s+([0-9.eE+-]+)\s+seconds")
_WARMUP_RE = re.compile(r"Elapsed Time:\s*([0-9.eE+-]+)\s+seconds \(Warm-up\)")
_SAMPLING_RE = re.compile(r"([0-9.eE+-]+)\s+seconds \(Sampling\)")


def parse_stan_messages(fit) -> list[dict]:
    """Per chain: Stan's own warm-up and sampling wall times (its ``Elapsed Time`` messages),
    its one-shot gradient timing at the initial point, and how many messages mention an
    exception (rejected proposals, e.g. failed ODE solves)."""
    chains = []
    for output in fit.stan_outputs:
        info = {
            "warmup_seconds": None,
            "sampling_seconds": None,
            "gradient_seconds": None,
            "exception_messages": 0,
        }
        for line in output.splitlines():
            if b'"logger"' not in line:
                continue
            try:
                text = str(json.loads(line)["values"][0])
            except (ValueError, KeyError, IndexError, TypeError):
                continue
            if m := _GRADIENT_RE.search(text):
                info["gradient_seconds"] = float(m.group(1))
            elif m := _WARMUP_RE.search(text):
                info["warmup_seconds"] = float(m.group(1))
            elif m := _SAMPLING_RE.search(text):
                info["sampling_seconds"] = float(m.group(1))
            elif "exception" in text.lower():
                info["exception_messages"] += 1
        chains.append(info)
    return chains


def stan_draws(fit, name: str):
    """Draws of one variable as an array ``(chain, draw, *dims)``.

    PyStan's ``fit[name]`` has shape ``(*dims, draws * chains)`` with the flat index
    ``draw * chains + chain`` (checked against ``arviz.from_pystan``).
    """
    import numpy as np

    arr = np.asarray(fit[name])
    chains = fit.num_chains
    draws = arr.shape[-1] // chains
    if name.endswith("__"):
        dims: tuple[int, ...] = ()
    else:
        dims = tuple(fit.dims[fit.param_names.index(name)])
    arr = arr.reshape(dims + (draws, chains))
    return np.moveaxis(arr, (-1, -2), (0, 1))


def run_stan_worker(cfg: Mapping[str, Any], t_spawn: float, t_main: float) -> dict:
    """Stan side of a benchmark (inside a fresh process): build (cold or cached), sample."""
    import stan  # timed: part of the start-up cost

    t_imported = time.time()
    code = Path(cfg["stan_file"]).read_text()
    if cfg["stan_cache"] == "cold":
        clear_stan_model(code)
    else:
        clear_stan_fits(code)
    t_build0 = time.time()
    posterior = stan.build(code, data=cfg["stan_data"], random_seed=int(cfg["seed"]))
    t_built = time.time()
    result: dict[str, Any] = {
        "side": "stan",
        "stan_file": str(Path(cfg["stan_file"]).relative_to(REPO_ROOT)),
        "stan_cache": cfg["stan_cache"],
        "interpreter_start_seconds": t_main - t_spawn,
        "import_seconds": t_imported - t_main,
        "build_seconds": t_built - t_build0,
        "startup_to_sampling_seconds": t_built - t_spawn,
    }
    if cfg.get("build_only"):
        result["versions"] = stan_versions()
        return result

    clear_stan_fits(code)
    t_sample0 = time.time()
    fit = posterior.sample(
        num_chains=int(cfg["chains"]),
        num_warmup=int(cfg["warmup"]),
        num_samples=int(cfg["samples"]),
        delta=TARGET_ACCEPT,
        max_depth=MAX_TREE_DEPTH,
        **adaptation_windows(int(cfg["warmup"])),
        **({"init": [dict(point) for point in cfg["init"]]} if cfg.get("init") else {}),
    )
    t_drawn = time.time()

    import numpy as np

    per_chain = parse_stan_messages(fit)
    warm = [c["warmup_seconds"] for c in per_chain]
    samp = [c["sampling_seconds"] for c in per_chain]
    n_leapfrog = stan_draws(fit, "n_leapfrog__")
    divergent = stan_draws(fit, "divergent__")
    treedepth = stan_draws(fit, "treedepth__")
    gradient_evaluations = int(n_leapfrog.sum())
    sampling_cpu = sum(samp) if None not in samp else None
    draws = {name: stan_draws(fit, name) for name in cfg["params"]}
    result.update(
        {
            "sample_call_seconds": t_drawn - t_sample0,
            # chains run concurrently (one process each): the phase's wall time is the slowest chain's
            "warmup_seconds": max(warm) if None not in warm else None,
            "sampling_seconds": max(samp) if None not in samp else None,
            "warmup_seconds_per_chain": warm,
            "sampling_seconds_per_chain": samp,
            "end_to_end_seconds": t_drawn - t_spawn,
            "gradient_evaluations": gradient_evaluations,
            "one_gradient_seconds": (sampling_cpu / gradient_evaluations)
            if sampling_cpu and gradient_evaluations
            else None,
            "one_gradient_kind": "upper bound: sum over chains of Stan's sampling time / leapfrog steps",
            "stan_reported_gradient_seconds": median_or_none(c["gradient_seconds"] for c in per_chain),
            "exception_messages": sum(c["exception_messages"] for c in per_chain),
            "divergences": int(divergent.sum()),
            "max_tree_depth_hits": int((treedepth >= MAX_TREE_DEPTH).sum()),
            "mean_tree_depth": float(np.mean(treedepth)),
            "mean_step_size": float(np.mean(stan_draws(fit, "stepsize__"))),
            "concurrent_chains": True,
            "adaptation_windows": adaptation_windows(int(cfg["warmup"])) or "Stan's defaults",
            "versions": stan_versions(),
        }
    )
    result["diagnostics"] = posterior_diagnostics(draws, cfg.get("labels"))
    return result
