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

Modules of the harness (each one concept; this one re-exports their public names, which is
what the benchmark scripts use):

- ``bench_settings``: paths and the sampler settings both sides share;
- ``results_io``: plain JSON, atomic writes, markdown tables, machine facts;
- ``posterior_summary``: ESS and R-hat tables (the same code for both sides);
- ``stan_side`` / ``bayesbio_side``: one measurement inside a worker process;
- ``common`` (here): spawning workers, command-line options, the result's markdown, and
  ``run_benchmark``, which runs the whole sequence.

Every one of them imports only the standard library at module level (numpy, arviz, jax,
bayesbio and stan are imported inside functions), so importing the harness costs a worker
process almost nothing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

# the pieces live in their own modules (one concept each); these names are the benchmarks' API
from bayesbio_side import bayesbio_gradient_time, run_bayesbio_worker  # noqa: E402,F401
from bench_settings import (  # noqa: E402,F401
    BENCH_DIR,
    FULL_SIZE,
    MAX_TREE_DEPTH,
    QUICK_SIZE,
    REPO_ROOT,
    RESULTS_DIR,
    SCRUBBED_ENV,
    TARGET_ACCEPT,
    WORKER,
)
from posterior_summary import median_or_none, posterior_diagnostics  # noqa: E402,F401
from results_io import (  # noqa: E402,F401
    format_value,
    machine_info,
    markdown_table,
    to_jsonable,
    write_json_atomic,
    write_text_atomic,
)
from stan_side import (  # noqa: E402,F401
    adaptation_windows,
    clear_stan_fits,
    clear_stan_model,
    parse_stan_messages,
    run_stan_worker,
    stan_draws,
    stan_model_directory,
    stan_versions,
)


# orchestration (parent process)


def log_tail(path: Path, n: int = 40) -> str:
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
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
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
                f"log: {log_path}\n--- last lines ---\n{log_tail(log_path)}"
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
    if metric.startswith("diagonal"):  # e.g. "diagonal, in Laplace-whitened coordinates" (prefit="laplace")
        return (f"mass matrix: Stan diagonal (`diag_e`), bayesbio {metric} (`prefit=\"laplace\"`, "
                "`bayesbio/infer/whiten.py`);")
    return (
        f"mass matrix: Stan diagonal (`diag_e`, its default and the only adaptive metric PyStan 3 "
        f"offers), bayesbio {metric} (its default `dense_mass=\"auto\"`: dense up to 32 "
        f"unconstrained parameters); the row \"bayesbio, diagonal metric\" is the same run with "
        f"bayesbio's metric forced to diagonal, like for like with Stan;"
    )


def _stan_adaptation_lines(result: Mapping[str, Any]) -> list[str]:
    """Whether Stan adapted its metric (warm-ups under 150 iterations; see
    ``stan_side.adaptation_windows``)."""
    stan = result.get("stan")
    warmup = result.get("settings", {}).get("warmup")
    if not stan or warmup is None or not adaptation_windows(warmup):
        return []
    windows = stan.get("adaptation_windows")
    if isinstance(windows, Mapping):
        return [
            f"Stan's adaptation windows were passed explicitly (init_buffer {windows['init_buffer']}, window "
            f"{windows['window']}, term_buffer {windows['term_buffer']}: the 15%/75%/10% split that Stan and NumPyro "
            "both use for short warm-ups). With its default buffers and fewer than 150 warm-up iterations, Stan "
            "2.35 never adapts its metric (`stan_side.adaptation_windows`).",
            "",
        ]
    return [
        "**Stan sampled on the unit metric in this run**: fewer than 150 warm-up iterations with Stan's default "
        "adaptation buffers, for which Stan 2.35 adapts no metric (`stan_side.adaptation_windows`). The ratio "
        "favours bayesbio for that reason; runs from 2026-12-06 on pass the windows explicitly.",
        "",
    ]


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
        f"Created {result['created_at']}"
        + (f" at commit {result['machine']['git_commit']}." if result["machine"].get("git_commit") else "."),
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
    lines += _stan_adaptation_lines(result)
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
        if str(result["bayesbio_cold"].get("metric")).startswith("dense") and not args.no_diagonal_run:
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
