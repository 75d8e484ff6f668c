"""Population PK on one GPU: N = 100,000 simulated patients, 4 chains x 1,000 warm-up x 1,000
draws of the bundled theophylline model (the population issue's GPU target: under 10 minutes),
and the GPU/CPU ratio of one log-density gradient at that N on the same host.

Prepared for a session that is lent a GPU; it runs anywhere (``--platform cpu`` and a small
``--n`` make a smoke run). Steps, each timed:

1. simulate ``N`` patients (``models/theophylline.py``'s ``simulate_table``, seed 20240611) and
   read them back through the model's ``load_data``;
2. one value + gradient of the model's log density at a typical point, on the default device
   and on the host's CPU (``--cpu-grad-calls 0`` skips the CPU), median of repeated calls;
3. the fit: :func:`bayesbio.sample_nuts` with vectorised chains (one program for all chains;
   on a GPU the patients and chains are one batch), its own phase timings, the minimum bulk ESS
   and maximum R-hat of the population parameters, divergences.

Results: ``results/population_gpu_N<N>.json`` and ``.md`` (``_smoke`` for runs on a CPU or with
fewer than 4 x 1,000 x 1,000 iterations), written atomically, step by step, so a run killed
at a time limit keeps what it had finished.

    python benchmarks/population_gpu.py                     # GPU host, defaults
    python benchmarks/population_gpu.py --platform cpu --n 300 --chains 2 --warmup 30 --samples 30

On the lent GPU machine JAX, NumPyro and diffrax are installed but ArviZ is not (the fit
returns ArviZ InferenceData): carry its wheels (``/work/.library/device/README.md``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from results_io import machine_info, markdown_table, write_json_atomic, write_text_atomic  # noqa: E402
from timing import median_seconds_per_call  # noqa: E402

POPULATION = ["ka_pop", "cl_pop", "v_pop", "omega_ka", "omega_cl", "omega_v", "sigma"]
TYPICAL = {
    "ka_pop": 1.57,
    "cl_pop": 2.72,
    "v_pop": 31.4,
    "omega_ka": 0.65,
    "omega_cl": 0.28,
    "omega_v": 0.14,
    "sigma": 0.7,
}


def _args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="simulated patients (default 100,000)")
    p.add_argument("--chains", type=int, default=4, help="chains (default 4)")
    p.add_argument("--warmup", type=int, default=1000, help="warm-up iterations per chain (default 1000)")
    p.add_argument("--samples", type=int, default=1000, help="draws per chain (default 1000)")
    p.add_argument("--seed", type=int, default=1, help="sampler seed (default 1)")
    p.add_argument(
        "--solver",
        default="analytic",
        choices=["analytic", "rk45"],
        help="the bundled closed form (default) or RK45 at rtol = atol = 1e-6",
    )
    p.add_argument(
        "--platform", default=None, choices=["gpu", "cpu"], help="JAX platform (default: JAX's choice)"
    )
    p.add_argument("--grad-calls", type=int, default=20, help="timed gradient calls on the default device")
    p.add_argument("--cpu-grad-calls", type=int, default=3, help="timed gradient calls on the CPU (0: skip)")
    p.add_argument("--no-fit", action="store_true", help="gradient timings only")
    p.add_argument("--out-dir", type=Path, default=BENCH_DIR / "results")
    args = p.parse_args(argv)
    for name in ("n", "chains", "warmup", "samples", "grad_calls"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1; got {getattr(args, name)}")
    if args.cpu_grad_calls < 0:
        p.error(f"--cpu-grad-calls must be 0 or more; got {args.cpu_grad_calls}")
    return args


def _gradient_seconds(model, data, calls: int, device) -> dict:
    """Median seconds of one jitted value + gradient of ``model``'s potential on ``device`` at
    the typical point (random effects drawn from N(0, 1) with a fixed seed)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer.util import initialize_model

    with jax.default_device(device):
        data = jax.device_put(data, device)
        info = initialize_model(jax.random.PRNGKey(0), model, model_args=(data,), dynamic_args=True)
        rng = np.random.default_rng(0)
        z = {
            k: (jnp.log(TYPICAL[k]) if k in TYPICAL else jnp.asarray(rng.standard_normal(np.shape(v))))
            for k, v in info.param_info.z.items()
        }
        z = jax.device_put(z, device)
        f = jax.jit(jax.value_and_grad(lambda z, d: info.potential_fn(d)(z)))
        start = time.perf_counter()
        jax.block_until_ready(f(z, data))
        first = time.perf_counter() - start
        seconds, (value, _) = median_seconds_per_call(f, z, data, calls=1, repeats=calls)
    return {"device": str(device), "median_seconds": seconds, "calls": calls, "first_call_seconds": first,
            "value": float(value)}


def _render(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"# {result['title']}",
        "",
        f"{s['chains']} chains × {s['warmup']} warm-up × {s['samples']} draws, seed {s['seed']}, solver "
        f"`{s['solver']}`, vectorised chains; N = {s['n']:,} simulated patients. Devices: "
        f"{', '.join(result.get('devices', []))}. Created {result['created_at']}"
        + (f" at commit {result['machine']['git_commit']}." if result["machine"].get("git_commit") else "."),
        "",
    ]
    rows = [{"step": k, "seconds": v} for k, v in result.get("seconds", {}).items()]
    if rows:
        lines += [markdown_table(rows, [("step", "step", ""), ("seconds", "seconds", ".1f")]), ""]
    grads = result.get("gradient", {})
    if grads:
        rows = [{"where": k, **v} for k, v in grads.items()]
        lines += [
            markdown_table(
                rows,
                [
                    ("where", "where", ""),
                    ("device", "device", ""),
                    ("median ms", "median_seconds", lambda x: f"{1e3 * x:.3f}"),
                    ("calls", "calls", "d"),
                ],
            ),
            "",
        ]
        if "default" in grads and "cpu" in grads:
            lines += [
                "GPU/CPU (one gradient, medians): the default device takes "
                f"{grads['default']['median_seconds'] / grads['cpu']['median_seconds']:.3g} "
                "times the CPU's time.",
                "",
            ]
    fit = result.get("fit")
    if fit:
        lines += [
            f"Fit: compile/build {fit['build_seconds']:.1f} s (pre-fit {fit['prefit_seconds']:.1f} s), "
            f"warm-up {fit['warmup_seconds']:.1f} s, sampling {fit['sampling_seconds']:.1f} s, "
            f"sample_nuts call {fit['call_seconds']:.1f} s; minimum bulk ESS {fit['min_ess_bulk']:.0f}, "
            f"max R-hat {fit['max_r_hat']:.3f}, divergences {fit['divergences']}, "
            f"solver failures {fit['solver_failures']}.",
            "",
            f"Target (4 × 1,000 draws at N = 100,000 in under 10 minutes): "
            f"{'met' if fit['meets_target'] else 'not met'} for this run.",
            "",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _args(argv)
    if args.platform:
        os.environ["JAX_PLATFORMS"] = "cuda,cpu" if args.platform == "gpu" else "cpu"
    t0 = time.time()
    import jax

    jax.config.update("jax_enable_x64", True)
    import bayesbio as bb
    from bayesbio.models import theophylline as th

    full = (args.chains, args.warmup, args.samples) == (4, 1000, 1000) and args.n == 100_000
    on_gpu = jax.default_backend() == "gpu"
    stem = f"population_gpu_N{args.n}" + ("" if full and on_gpu else "_smoke")
    result = {
        "benchmark": "population_gpu",
        "title": f"Population PK on {jax.default_backend().upper()}: N = {args.n:,} patients",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {k: getattr(args, k) for k in ("n", "chains", "warmup", "samples", "seed", "solver")},
        "machine": machine_info(),
        "devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
        "seconds": {"imports": time.time() - t0},
    }
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    def save():
        write_json_atomic(out_dir / f"{stem}.json", result)
        write_text_atomic(out_dir / f"{stem}.md", _render(result))

    model = th.make_model(
        args.solver, **({} if args.solver == "analytic" else {"rtol": 1e-6, "atol": 1e-6, "max_steps": 5000})
    )
    with tempfile.TemporaryDirectory() as tmp:
        table_path = Path(tmp) / f"theophylline_{args.n}.csv"
        start = time.time()
        th.simulate_table(args.n, seed=20240611).to_csv(table_path, index=False)
        result["seconds"]["simulate"] = time.time() - start
        start = time.time()
        data = th.load_data(str(table_path))
        result["seconds"]["load data"] = time.time() - start
        save()

        result["gradient"] = {"default": _gradient_seconds(model, data, args.grad_calls, jax.devices()[0])}
        save()
        if args.cpu_grad_calls and jax.default_backend() != "cpu":
            result["gradient"]["cpu"] = _gradient_seconds(
                model, data, args.cpu_grad_calls, jax.devices("cpu")[0]
            )
            save()
        if args.no_fit:
            return 0

        import numpy as np

        start = time.time()
        # the bundled model (or the RK45 script) by name, so the fit gets its pre-fit and start
        spec = (
            "theophylline"
            if args.solver == "analytic"
            else str(BENCH_DIR / "model_scripts" / "theophylline_rk45.py")
        )
        idata = bb.sample_nuts(
            spec,
            str(table_path),
            chains=args.chains,
            warmup=args.warmup,
            samples=args.samples,
            seed=args.seed,
            chain_method="vectorized",
            progress=True,
        )
        call = time.time() - start
    import arviz as az

    attrs = dict(idata.posterior.attrs)
    summary = az.summary(idata, var_names=POPULATION)
    stats = idata.sample_stats
    failures = stats["solver_failures"].values if "solver_failures" in stats else np.zeros(1)
    sampling = float(attrs["sampling_seconds"])
    result["fit"] = {
        "build_seconds": float(attrs["compile_seconds"]),
        "prefit_seconds": float(attrs.get("prefit_seconds", 0.0)),
        "warmup_seconds": float(attrs["warmup_seconds"]),
        "sampling_seconds": sampling,
        "call_seconds": call,
        "min_ess_bulk": float(summary["ess_bulk"].min()),
        "max_r_hat": float(summary["r_hat"].max()),
        "divergences": int(np.asarray(stats["diverging"].values).sum()),
        "solver_failures": int(np.asarray(failures).sum()),
        # the target counts the draws: warm-up + sampling of 4 x 1,000 draws at N = 100,000
        "meets_target": bool(full and float(attrs["warmup_seconds"]) + sampling < 600.0),
    }
    result["seconds"]["end to end"] = time.time() - t0
    save()
    print(_render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
