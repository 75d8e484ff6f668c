"""bayesbio side of a benchmark (runs inside a fresh worker process).

JAX, numpy and bayesbio are imported inside the functions: their import time is measured as
part of the start-up cost.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Mapping

from bench_settings import MAX_TREE_DEPTH, TARGET_ACCEPT
from posterior_summary import posterior_diagnostics


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
