"""Shared helpers of the side-by-side benchmarks (bayesbio vs Stan through PyStan 3).

Layout of one benchmark run (see ``run_benchmark``): every measurement runs in a *fresh worker
process* (``benchmarks/_worker.py``) so that start-up costs are honest, in this order:

1. ``bayesbio (cold)``: NUTS with an empty JAX persistent compilation cache (a new temporary
   folder: nothing can be read from it, so every compilation is cold; the run writes its
   compiled executables there);
2. ``bayesbio (warm cache)``: the same run again, reading that cache;
3. ``Stan``: ``stan.build`` after removing the model from httpstan's model cache (a cold C++
   build), then ``posterior.sample``;
4. ``Stan start-up (cached model)``: import + ``stan.build`` with the model now in httpstan's
   cache (no sampling).

Each worker writes a JSON result; this module turns them into the benchmark's JSON and
markdown files. The column definitions are in ``benchmarks/README.md``.

This module imports only the standard library at module level (numpy, arviz, jax, bayesbio and
stan are imported inside functions), so importing it costs a worker process almost nothing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
WORKER = BENCH_DIR / "_worker.py"

#: Sampler settings shared by both sides (Stan's defaults; passed explicitly to both).
TARGET_ACCEPT = 0.8
MAX_TREE_DEPTH = 10

FULL_SIZE = {"chains": 4, "warmup": 1000, "samples": 1000}
QUICK_SIZE = {"chains": 2, "warmup": 100, "samples": 100}

# environment variables that would make a worker read a compilation cache we did not choose
_SCRUBBED_ENV = (
    "JAX_COMPILATION_CACHE_DIR",
    "JAX_ENABLE_COMPILATION_CACHE",
    "BAYESBIO_CACHE_DIR",
    "JAX_ENABLE_X64",
    "JAX_PLATFORMS",
    "JAX_PLATFORM_NAME",
)


# ============================================================================================
# writing results


def to_jsonable(obj: Any) -> Any:
    """Plain-JSON version of ``obj``: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalar or array
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``,
    so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN/inf written as null)."""
    return write_text_atomic(path, json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")


def format_value(value: Any, spec: str | Callable[[Any], str] = "") -> str:
    """Format one table cell; missing or non-finite values show as an em dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if callable(spec):
        return spec(value)
    return format(value, spec)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, Any]]) -> str:
    """A GitHub markdown table.

    ``columns`` are ``(header, key, format)`` triples: ``key`` is looked up in each row and
    the value formatted with ``format`` (a format spec such as ``".3g"`` or a callable).
    """
    header = "| " + " | ".join(h for h, _, _ in columns) + " |"
    align = "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(columns))) + "|"
    lines = [header, align]
    for row in rows:
        cells = [format_value(row.get(key), spec).replace("|", "\\|") for _, key, spec in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ============================================================================================
# posterior diagnostics (the same code for both sides)


def posterior_diagnostics(
    posterior: Mapping[str, Any], labels: Mapping[str, Sequence[str]] | None = None
) -> dict:
    """Bulk/tail ESS, R-hat, mean and sd of every scalar component of the given variables.

    ``posterior`` maps a variable name to an array of shape ``(chain, draw, ...)``. Returns
    the per-component table plus ``min_ess_bulk``, ``min_ess_tail`` and ``max_r_hat`` over all
    components (ArviZ's rank-normalised split estimators, as in Stan).
    """
    import arviz as az
    import numpy as np

    labels = labels or {}
    arrays = {k: np.asarray(v, dtype=float) for k, v in posterior.items()}
    idata = az.from_dict(posterior=arrays)
    bulk = az.ess(idata, method="bulk")
    tail = az.ess(idata, method="tail")
    rhat = az.rhat(idata)
    rows = []
    for name, arr in arrays.items():
        flat = arr.reshape(arr.shape[:2] + (-1,))
        b = np.asarray(bulk[name]).reshape(-1)
        t = np.asarray(tail[name]).reshape(-1)
        r = np.asarray(rhat[name]).reshape(-1)
        names = list(labels.get(name, []))
        for i in range(flat.shape[-1]):
            if arr.ndim == 2:
                label = name
            elif len(names) == flat.shape[-1]:
                label = f"{name}[{names[i]}]"
            else:
                label = f"{name}[{i}]"
            x = flat[:, :, i]
            rows.append(
                {
                    "parameter": label,
                    "mean": float(x.mean()),
                    "sd": float(x.std(ddof=1)),
                    "ess_bulk": float(b[i]),
                    "ess_tail": float(t[i]),
                    "r_hat": float(r[i]),
                }
            )
    return {
        "min_ess_bulk": min(r["ess_bulk"] for r in rows),
        "min_ess_tail": min(r["ess_tail"] for r in rows),
        "max_r_hat": max(r["r_hat"] for r in rows),
        "parameters": rows,
    }


def _median(xs: Iterable[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ============================================================================================
# Stan side (runs inside a worker process)


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
            "stan_reported_gradient_seconds": _median(c["gradient_seconds"] for c in per_chain),
            "exception_messages": sum(c["exception_messages"] for c in per_chain),
            "divergences": int(divergent.sum()),
            "max_tree_depth_hits": int((treedepth >= MAX_TREE_DEPTH).sum()),
            "mean_tree_depth": float(np.mean(treedepth)),
            "mean_step_size": float(np.mean(stan_draws(fit, "stepsize__"))),
            "concurrent_chains": True,
            "versions": stan_versions(),
        }
    )
    result["diagnostics"] = posterior_diagnostics(draws, cfg.get("labels"))
    return result


# ============================================================================================
# bayesbio side (runs inside a worker process)


def bayesbio_gradient_time(
    model: str, data_path: str | None, idata, *, calls: int = 200, points: int = 200
) -> dict:
    """Wall time of one jitted ``value_and_grad`` of the model's potential (negative log density
    on the unconstrained scale), single chain, at posterior draws.

    The potential is built as the sampler builds it (``numpyro.infer.util.initialize_model``
    with the data as a dynamic argument), jitted once, then called ``calls`` times, cycling
    over ``points`` posterior draws spread over all chains; each call is timed separately
    (``block_until_ready``) and the median is reported.
    """
    import jax
    import numpy as np
    from numpyro import handlers
    from numpyro.distributions.transforms import biject_to
    from numpyro.infer.util import initialize_model

    import bayesbio as bb
    from bayesbio.model import validate_data

    spec = bb.load_model(model)
    data = validate_data(spec.load_data(data_path), model_name=spec.name)
    info = initialize_model(jax.random.PRNGKey(0), spec.model, model_args=(data,), dynamic_args=True)
    potential_gen = info.potential_fn
    latent = list(info.param_info.z)

    # posterior draws -> unconstrained space with each site's own bijection
    trace = handlers.trace(handlers.seed(spec.model, 0)).get_trace(data)
    post = idata.posterior
    n_total = post.sizes["chain"] * post.sizes["draw"]
    index = np.unique(np.linspace(0, n_total - 1, min(points, n_total)).round().astype(int))
    unconstrained = {}
    for name in latent:
        values = np.asarray(post[name].values)
        values = values.reshape((n_total,) + values.shape[2:])[index]
        unconstrained[name] = np.asarray(biject_to(trace[name]["fn"].support).inv(values))
    pts = [jax.device_put({k: v[i] for k, v in unconstrained.items()}) for i in range(len(index))]
    data_dev = jax.device_put(data)

    value_and_grad = jax.jit(jax.value_and_grad(lambda z, d: potential_gen(d)(z)))
    t0 = time.perf_counter()
    jax.block_until_ready(value_and_grad(pts[0], data_dev))
    compile_seconds = time.perf_counter() - t0
    for p in pts[: min(5, len(pts))]:
        jax.block_until_ready(value_and_grad(p, data_dev))
    times = []
    finite = 0
    for i in range(calls):
        p = pts[i % len(pts)]
        t0 = time.perf_counter()
        value, _ = jax.block_until_ready(value_and_grad(p, data_dev))
        times.append(time.perf_counter() - t0)
        finite += bool(np.isfinite(np.asarray(value)))
    times.sort()

    # the same gradients inside one compiled loop, as the sampler calls them (no Python
    # dispatch per call): a scan over the stacked posterior points, repeated to ~1000 calls
    stacked = jax.device_put({k: v for k, v in unconstrained.items()})
    repeats = max(1, 1000 // len(index))

    @jax.jit
    def loop(zs, d):
        def body(acc, z):
            value, grad = value_and_grad(z, d)
            return acc + value + sum(jax.numpy.sum(g) for g in jax.tree_util.tree_leaves(grad)), None

        def once(acc, _):
            return jax.lax.scan(body, acc, zs)[0], None

        return jax.lax.scan(once, 0.0, None, length=repeats)[0]

    jax.block_until_ready(loop(stacked, data_dev))
    t0 = time.perf_counter()
    jax.block_until_ready(loop(stacked, data_dev))
    in_loop = (time.perf_counter() - t0) / (repeats * len(index))
    return {
        "in_loop_seconds": in_loop,
        "median_seconds": statistics.median(times),
        "p10_seconds": times[int(0.1 * (len(times) - 1))],
        "p90_seconds": times[int(0.9 * (len(times) - 1))],
        "calls": calls,
        "points": len(pts),
        "finite_values": finite,
        "jit_seconds": compile_seconds,
    }


def run_bayesbio_worker(cfg: Mapping[str, Any], t_spawn: float, t_main: float) -> dict:
    """bayesbio side of a benchmark (inside a fresh process): import, compile, sample."""
    import jax  # timed: part of the start-up cost

    jax.config.update("jax_enable_x64", bool(cfg["x64"]))
    cache_dir = cfg.get("jax_cache_dir")
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    else:
        jax.config.update("jax_enable_compilation_cache", False)
    import bayesbio as bb

    t_imported = time.time()
    t_call = time.time()
    idata = bb.sample_nuts(
        cfg["model"],
        cfg.get("data"),
        chains=int(cfg["chains"]),
        warmup=int(cfg["warmup"]),
        samples=int(cfg["samples"]),
        seed=int(cfg["seed"]),
        target_accept=TARGET_ACCEPT,
        max_tree_depth=MAX_TREE_DEPTH,
        dense_mass=cfg.get("dense_mass", "auto"),
        chain_method=cfg["chain_method"],
        progress=False,
    )
    t_drawn = time.time()

    import numpy as np

    attrs = dict(idata.posterior.attrs)
    stats = idata.sample_stats
    compile_seconds = float(attrs["compile_seconds"])
    result: dict[str, Any] = {
        "side": "bayesbio",
        "model": cfg["model"],
        "jax_cache": cfg.get("cache_label", "disabled" if not cache_dir else "enabled"),
        "interpreter_start_seconds": t_main - t_spawn,
        "import_seconds": t_imported - t_main,
        "build_seconds": compile_seconds,
        # part of build_seconds (the model's NUTS pre-fit, 0 without one)
        "prefit_seconds": float(attrs.get("prefit_seconds", 0.0)),
        "warmup_seconds": float(attrs["warmup_seconds"]),
        "sampling_seconds": float(attrs["sampling_seconds"]),
        "postprocess_seconds": float(attrs.get("postprocess_seconds", float("nan"))),
        "sample_call_seconds": t_drawn - t_call,
        "startup_to_sampling_seconds": (t_call - t_spawn) + compile_seconds,
        "end_to_end_seconds": t_drawn - t_spawn,
        "gradient_evaluations": int(attrs["gradient_evaluations"]),
        "divergences": int(np.asarray(stats["diverging"]).sum()),
        "solver_failures": int(np.asarray(stats["solver_failures"]).sum()),
        "warmup_solver_failures": int(attrs.get("warmup_solver_failures", 0)),
        "max_tree_depth_hits": int(np.asarray(stats["reached_max_treedepth"]).sum()),
        "mean_tree_depth": float(np.asarray(stats["tree_depth"]).mean()),
        "mean_step_size": float(np.asarray(stats["step_size"]).mean()),
        "metric": attrs.get("metric"),
        "chain_method": cfg["chain_method"],
        "x64": int(attrs.get("x64", -1)),
        "platform": attrs.get("platform"),
        "versions": {k[len("version_") :]: v for k, v in attrs.items() if k.startswith("version_")},
    }
    draws = {name: np.asarray(idata.posterior[name].values) for name in cfg["params"]}
    result["diagnostics"] = posterior_diagnostics(draws, cfg.get("labels"))
    grad = bayesbio_gradient_time(cfg["model"], cfg.get("data"), idata, calls=int(cfg.get("grad_calls", 200)))
    result["one_gradient"] = grad
    result["one_gradient_seconds"] = grad["in_loop_seconds"]
    result["one_gradient_kind"] = (
        "measured: value_and_grad inside one compiled loop over posterior draws (one chain); "
        "the median of separate jitted calls, which adds Python dispatch, is one_gradient.median_seconds"
    )
    # chains that run at the same time: the parallel workers (one chain per core with chain_method
    # parallel), else one stream of gradients (vectorised chains count as one stream of wider gradients)
    concurrent = int(attrs.get("parallel_workers", 1))
    result["concurrent_chains"] = concurrent
    evals = result["gradient_evaluations"]
    result["overhead_ratio"] = (
        result["sampling_seconds"] * concurrent / (evals * grad["in_loop_seconds"]) if evals else None
    )
    if cache_dir:
        result["jax_cache_files"] = sum(1 for p in Path(cache_dir).rglob("*") if p.is_file())
    return result


# ============================================================================================
# orchestration (parent process)


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def spawn_worker(config: Mapping[str, Any], log_path: Path, *, timeout: float | None = None) -> dict:
    """Run ``_worker.py`` on ``config`` in a fresh Python process; return its JSON result.

    The spawn time is taken just before the process is created and handed to the worker, so
    its start-up figures include interpreter start and every import. stdout/stderr go to
    ``log_path``.
    """
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env["CI"] = "1"  # no progress bars in the worker
    if config.get("side") == "bayesbio" and config.get("chain_method") in ("auto", "parallel"):
        # one JAX CPU device per core, as the `bayesbio` command line does
        flag = f"--xla_force_host_platform_device_count={len(os.sched_getaffinity(0))}"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bayesbio-bench-") as tmp:
        cfg_path = Path(tmp) / "config.json"
        out_path = Path(tmp) / "result.json"
        cfg_path.write_text(json.dumps(to_jsonable(config)))
        with open(log_path, "w") as log:
            t_spawn = time.time()
            proc = subprocess.run(
                [sys.executable, str(WORKER), str(cfg_path), str(out_path), repr(t_spawn)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=env,
                timeout=timeout,
            )
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(
                f"benchmark worker ({config.get('side')}) failed with exit code {proc.returncode}; "
                f"log: {log_path}\n--- last lines ---\n{_tail(log_path)}"
            )
        return json.loads(out_path.read_text())


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Command-line options shared by every benchmark script (and ``run.py``)."""
    parser.add_argument("--chains", type=int, default=None, help="chains (default 4; --quick: 2)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="warm-up iterations per chain (default 1000; --quick: 100)"
    )
    parser.add_argument(
        "--samples", type=int, default=None, help="kept draws per chain (default 1000; --quick: 100)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of both samplers (default 1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (2 chains x 100 warm-up x 100 draws unless the benchmark says otherwise); "
        "results get a _quick suffix",
    )
    parser.add_argument(
        "--chain-method",
        choices=["auto", "vectorized", "sequential", "parallel"],
        default="auto",
        help="bayesbio chain method (default: auto, as `bayesbio fit`: one chain per CPU core)",
    )
    parser.add_argument(
        "--stan-cache",
        choices=["cold", "keep"],
        default="cold",
        help="cold: delete the model from httpstan's cache before building (default); "
        "keep: reuse a built model (development only: build time is then not a cold build)",
    )
    parser.add_argument(
        "--sides",
        default="bayesbio,stan",
        help="comma-separated subset of bayesbio,stan to run (default both)",
    )
    parser.add_argument(
        "--no-warm-run",
        action="store_true",
        help="skip the second bayesbio process (warm JAX compilation cache): halves the "
        "bayesbio time; the cached start-up column is then empty",
    )
    parser.add_argument(
        "--no-diagonal-run",
        action="store_true",
        help="skip the extra bayesbio process with the diagonal metric (the like-for-like row "
        "beside Stan's diag_e when bayesbio's default picks a dense metric)",
    )
    parser.add_argument(
        "--grad-calls", type=int, default=200, help="timed gradient calls on the bayesbio side"
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="folder of the result files")
    return parser


def run_size(args: argparse.Namespace, quick_size: Mapping[str, int] | None = None) -> dict:
    """Chains, warm-up and draws: the full size, or the quick one with ``--quick``; explicit
    ``--chains/--warmup/--samples`` win over both."""
    base = (quick_size or QUICK_SIZE) if args.quick else FULL_SIZE
    return {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in base.items()}


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
    }
    try:
        info["loadavg_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def _agreement(stan_diag: Mapping, bb_diag: Mapping) -> list[dict]:
    """Posterior means of the two sides, difference in Monte Carlo standard errors."""
    stan_rows = {r["parameter"]: r for r in stan_diag["parameters"]}
    out = []
    for r in bb_diag["parameters"]:
        s = stan_rows.get(r["parameter"])
        if s is None:
            continue
        mcse = math.sqrt(r["sd"] ** 2 / max(r["ess_bulk"], 1.0) + s["sd"] ** 2 / max(s["ess_bulk"], 1.0))
        out.append(
            {
                "parameter": r["parameter"],
                "stan_mean": s["mean"],
                "stan_sd": s["sd"],
                "bayesbio_mean": r["mean"],
                "bayesbio_sd": r["sd"],
                "difference_in_mcse": (r["mean"] - s["mean"]) / mcse if mcse > 0 else None,
            }
        )
    return out


def _row(label: str, res: Mapping | None) -> dict | None:
    if res is None:
        return None
    diag = res.get("diagnostics") or {}
    ess = diag.get("min_ess_bulk")
    samp = res.get("sampling_seconds")
    e2e = res.get("end_to_end_seconds")
    return {
        "run": label,
        "build_seconds": res.get("build_seconds"),
        "warmup_seconds": res.get("warmup_seconds"),
        "sampling_seconds": samp,
        "min_ess_bulk": ess,
        "min_ess_tail": diag.get("min_ess_tail"),
        "max_r_hat": diag.get("max_r_hat"),
        "ess_per_second_sampling": ess / samp if ess and samp else None,
        "end_to_end_seconds": e2e,
        "ess_per_second_end_to_end": ess / e2e if ess and e2e else None,
        "gradient_evaluations": res.get("gradient_evaluations"),
        "one_gradient_ms": res["one_gradient_seconds"] * 1e3 if res.get("one_gradient_seconds") else None,
        "overhead_ratio": res.get("overhead_ratio"),
        "divergences": res.get("divergences"),
    }


MAIN_COLUMNS = [
    ("run", "run", ""),
    ("build/compile s", "build_seconds", ".1f"),
    ("warm-up s", "warmup_seconds", ".2f"),
    ("sampling s", "sampling_seconds", ".2f"),
    ("min bulk ESS", "min_ess_bulk", ".0f"),
    ("min tail ESS", "min_ess_tail", ".0f"),
    ("max R-hat", "max_r_hat", ".3f"),
    ("ESS/s sampling", "ess_per_second_sampling", ".3g"),
    ("end-to-end s", "end_to_end_seconds", ".1f"),
    ("end-to-end ESS/s", "ess_per_second_end_to_end", ".3g"),
    ("gradient evals", "gradient_evaluations", "d"),
    ("one gradient ms", "one_gradient_ms", ".3g"),
    ("overhead ratio", "overhead_ratio", ".2f"),
    ("divergences", "divergences", "d"),
]

STARTUP_COLUMNS = [
    ("tool", "tool", ""),
    ("interpreter + imports s (cold)", "imports_cold", ".2f"),
    ("build/compile s (cold)", "build_cold", ".2f"),
    ("start-up → sampling s (cold)", "startup_cold", ".2f"),
    ("build/compile s (cached)", "build_warm", ".2f"),
    ("start-up → sampling s (cached)", "startup_warm", ".2f"),
]


def _metric_sentence(result: Mapping[str, Any]) -> str:
    """Which mass matrix each side adapted (older results: diagonal on both sides)."""
    metric = (result.get("bayesbio_cold") or {}).get("metric")
    if metric is None or metric == "diagonal":
        return "diagonal mass matrix on both sides;"
    return (
        f"mass matrix: Stan diagonal (`diag_e`, its default and the only adaptive metric PyStan 3 "
        f"offers), bayesbio {metric} (its default `dense_mass=\"auto\"`: dense up to 32 "
        f"unconstrained parameters); the row \"bayesbio, diagonal metric\" is the same run with "
        f"bayesbio's metric forced to diagonal, like for like with Stan;"
    )


def render_markdown(result: Mapping[str, Any]) -> str:
    s = result["settings"]
    lines = [f"# {result['title']}", ""]
    if result.get("quick"):
        lines += ["> **Quick smoke run** (tiny chains): the numbers only show that the harness works.", ""]
    lines += [
        f"{s['chains']} chains × {s['warmup']} warm-up × {s['samples']} draws, seed {s['seed']}, "
        f"target acceptance {s['target_accept']}, max tree depth {s['max_tree_depth']}; "
        + _metric_sentence(result)
        + f" bayesbio chain method `{s['chain_method']}`, x64 = {s['x64']}; "
        f"Stan chains run concurrently (one process each).",
        "",
        f"Machine: {result['machine'].get('cpu_model', result['machine'].get('processor'))}, "
        f"{result['machine'].get('cpu_count')} logical CPUs; load average at start "
        f"{', '.join(f'{x:.2f}' for x in result['machine'].get('loadavg_at_start', []))}. "
        f"Created {result['created_at']}.",
        "",
        markdown_table([r for r in result["rows"] if r], MAIN_COLUMNS),
        "",
        "ESS/s use the minimum bulk ESS over all parameters. Stan's warm-up/sampling seconds are "
        "the slowest chain's own `Elapsed Time` (chains run concurrently); its one-gradient time is an "
        "**upper bound** (sum over chains of sampling seconds / leapfrog steps), so it has no overhead "
        "ratio. Column definitions: `benchmarks/README.md`.",
        "",
    ]
    stan = result.get("stan")
    if stan and stan.get("stan_reported_gradient_seconds"):
        lines += [
            f"Stan's own one-shot gradient timing at the initial point (median over chains): "
            f"{stan['stan_reported_gradient_seconds'] * 1e3:.4f} ms; Stan's `sample()` call took "
            f"{stan['sample_call_seconds']:.2f} s wall in all.",
            "",
        ]
    if result.get("startup"):
        lines += [
            "## Start-up",
            "",
            markdown_table(result["startup"], STARTUP_COLUMNS),
            "",
            "cold: Stan model deleted from httpstan's cache / empty JAX compilation cache; "
            "cached: model in httpstan's cache / JAX persistent compilation cache filled by the cold run.",
            "",
        ]
    if result.get("agreement"):
        cols = [
            ("parameter", "parameter", ""),
            ("Stan mean", "stan_mean", ".4g"),
            ("Stan sd", "stan_sd", ".3g"),
            ("bayesbio mean", "bayesbio_mean", ".4g"),
            ("bayesbio sd", "bayesbio_sd", ".3g"),
            ("difference / MCSE", "difference_in_mcse", "+.2f"),
        ]
        lines += [
            "## Posterior agreement (bayesbio cold run vs Stan)",
            "",
            markdown_table(result["agreement"], cols),
            "",
            "Differences beyond about ±4 Monte Carlo standard errors deserve a look.",
            "",
        ]
    if result.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    v = result.get("versions", {})
    lines += ["## Versions", "", ", ".join(f"{k} {val}" for k, val in sorted(v.items()) if val), ""]
    return "\n".join(lines)


def run_benchmark(
    args: argparse.Namespace,
    *,
    name: str,
    title: str,
    bayesbio_model: str,
    bayesbio_data: str | None,
    stan_file: Path,
    stan_data: Mapping[str, Any],
    params: Sequence[str],
    labels: Mapping[str, Sequence[str]] | None = None,
    notes: Sequence[str] = (),
    extra_settings: Mapping[str, Any] | None = None,
    quick_size: Mapping[str, int] | None = None,
    stan_init: Sequence[Mapping[str, Any]] | None = None,
) -> dict:
    """Run one benchmark on both sides (fresh worker processes) and write
    ``<out-dir>/<name>[_quick].json`` and ``.md``. Returns the result dict.

    ``stan_init``: one dict of constrained initial values per chain for the Stan side (Stan's
    own random start when None)."""
    size = run_size(args, quick_size)
    sides = {s.strip() for s in args.sides.split(",") if s.strip()}
    unknown = sides - {"bayesbio", "stan"}
    if unknown:
        raise SystemExit(f"--sides: unknown side(s) {sorted(unknown)}")
    stem = f"{name}_quick" if args.quick else name
    out_dir = Path(args.out_dir)
    logs = out_dir / "logs"
    settings = {
        **size,
        "seed": args.seed,
        "target_accept": TARGET_ACCEPT,
        "max_tree_depth": MAX_TREE_DEPTH,
        "chain_method": args.chain_method,
        "x64": True,
        "stan_cache": args.stan_cache,
        **(extra_settings or {}),
    }
    common = {**size, "seed": args.seed, "params": list(params), "labels": dict(labels or {})}
    result: dict[str, Any] = {
        "benchmark": name,
        "title": title,
        "quick": bool(args.quick),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
        "machine": machine_info(),
        "bayesbio_model": bayesbio_model,
        "stan_file": str(stan_file.relative_to(REPO_ROOT)),
    }

    def say(msg):
        print(f"[{name}] {msg}", flush=True)

    if "bayesbio" in sides:
        with tempfile.TemporaryDirectory(prefix="bayesbio-bench-jax-cache-") as cache_dir:
            bb_cfg = {
                **common,
                "side": "bayesbio",
                "model": bayesbio_model,
                "data": bayesbio_data,
                "x64": True,
                "chain_method": args.chain_method,
                "grad_calls": args.grad_calls,
                "jax_cache_dir": cache_dir,
            }
            say("bayesbio, cold (empty JAX compilation cache) ...")
            result["bayesbio_cold"] = spawn_worker(
                {**bb_cfg, "cache_label": "cold (empty)"}, logs / f"{stem}_bayesbio_cold.log"
            )
            say(f"  done in {result['bayesbio_cold']['end_to_end_seconds']:.1f} s")
            if not args.no_warm_run:
                say("bayesbio, warm (JAX compilation cache from the cold run) ...")
                result["bayesbio_warm"] = spawn_worker(
                    {**bb_cfg, "cache_label": "warm"}, logs / f"{stem}_bayesbio_warm.log"
                )
                say(f"  done in {result['bayesbio_warm']['end_to_end_seconds']:.1f} s")
        if result["bayesbio_cold"].get("metric") == "dense" and not args.no_diagonal_run:
            with tempfile.TemporaryDirectory(prefix="bayesbio-bench-jax-cache-") as cache_dir:
                say("bayesbio, diagonal metric, cold (empty JAX compilation cache) ...")
                result["bayesbio_diagonal"] = spawn_worker(
                    {**bb_cfg, "jax_cache_dir": cache_dir, "dense_mass": False, "cache_label": "cold (empty)"},
                    logs / f"{stem}_bayesbio_diagonal.log",
                )
                say(f"  done in {result['bayesbio_diagonal']['end_to_end_seconds']:.1f} s")
    if "stan" in sides:
        st_cfg = {
            **common,
            "side": "stan",
            "stan_file": str(stan_file),
            "stan_data": dict(stan_data),
            "stan_cache": args.stan_cache,
            "init": [dict(point) for point in stan_init] if stan_init else None,
        }
        say(f"Stan, build ({args.stan_cache}) + sample ...")
        result["stan"] = spawn_worker(st_cfg, logs / f"{stem}_stan.log")
        say(
            f"  done in {result['stan']['end_to_end_seconds']:.1f} s "
            f"(build {result['stan']['build_seconds']:.1f} s)"
        )
        say("Stan, start-up with the model cached ...")
        result["stan_startup_cached"] = spawn_worker(
            {**st_cfg, "stan_cache": "keep", "build_only": True}, logs / f"{stem}_stan_cached_startup.log"
        )

    stan, cold, warm = result.get("stan"), result.get("bayesbio_cold"), result.get("bayesbio_warm")
    stan_label = "Stan (cold build)" if args.stan_cache == "cold" else "Stan (cached build)"
    result["rows"] = [
        r
        for r in (
            _row(stan_label, stan),
            _row("bayesbio (cold JIT cache)", cold),
            _row("bayesbio (warm JIT cache)", warm),
            _row("bayesbio, diagonal metric (cold JIT cache)", result.get("bayesbio_diagonal")),
        )
        if r
    ]
    startup = []
    if stan:
        cached = result.get("stan_startup_cached") or {}
        startup.append(
            {
                "tool": "Stan",
                "imports_cold": stan["interpreter_start_seconds"] + stan["import_seconds"],
                "build_cold": stan["build_seconds"],
                "startup_cold": stan["startup_to_sampling_seconds"],
                "build_warm": cached.get("build_seconds"),
                "startup_warm": cached.get("startup_to_sampling_seconds"),
            }
        )
    if cold:
        startup.append(
            {
                "tool": "bayesbio",
                "imports_cold": cold["interpreter_start_seconds"] + cold["import_seconds"],
                "build_cold": cold["build_seconds"],
                "startup_cold": cold["startup_to_sampling_seconds"],
                "build_warm": (warm or {}).get("build_seconds"),
                "startup_warm": (warm or {}).get("startup_to_sampling_seconds"),
            }
        )
    result["startup"] = startup
    if stan and cold:
        result["agreement"] = _agreement(stan["diagnostics"], cold["diagnostics"])
    versions = {}
    for res in (cold, stan):
        if res:
            versions.update(res.get("versions", {}))
    result["versions"] = versions
    result["notes"] = list(notes)
    try:
        result["machine"]["loadavg_at_end"] = list(os.getloadavg())
    except OSError:
        pass
    json_path = write_json_atomic(out_dir / f"{stem}.json", result)
    md_path = write_text_atomic(out_dir / f"{stem}.md", render_markdown(result))
    say(f"wrote {json_path} and {md_path}")
    return result


def _main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/common.py render RESULT.json ...``: rewrite each result's markdown
    file (same name, ``.md``) from its JSON, e.g. after changing the tables' layout."""
    p = argparse.ArgumentParser(description=_main.__doc__)
    p.add_argument("command", choices=["render"])
    p.add_argument("files", nargs="+", type=Path)
    args = p.parse_args(argv)
    for path in args.files:
        result = json.loads(path.read_text())
        out = write_text_atomic(path.with_suffix(".md"), render_markdown(result))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
