"""Command line: ``bayesbio fit | models | report | sbc | compare``.

Bad input ends the program with a one-line ``error: ...`` on stderr and exit status 2; a
failure of the run itself exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

__all__ = ["main", "write_netcdf_atomic"]


def _positive_int(name, minimum=1):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} must be an integer; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"--{name} must be >= {minimum}; got {value}")
        return value

    return parse


def _probability(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--target-accept must be a number; got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"--target-accept must be strictly between 0 and 1; got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bayesbio", description="Bayesian inference for mechanistic models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    fit = sub.add_parser("fit", help="fit a model and write its InferenceData (NetCDF)")
    fit.add_argument("model", help="bundled model name (see `bayesbio models`) or path to a model script")
    fit.add_argument("--data", help="data file given to the model's load_data (default: bundled data)")
    fit.add_argument("--method", choices=["nuts", "svi", "laplace"], default="nuts")
    fit.add_argument("--chains", type=_positive_int("chains"), default=4)
    fit.add_argument("--warmup", type=_positive_int("warmup", 0), default=1000)
    fit.add_argument("--samples", type=_positive_int("samples"), default=1000)
    fit.add_argument("--seed", type=_positive_int("seed", 0), default=0)
    fit.add_argument("--target-accept", type=_probability, default=0.8)
    fit.add_argument("--chain-method", choices=["auto", "vectorized", "sequential", "parallel"], default="auto",
                     help="how chains share the machine (default auto: one chain per CPU core)")
    fit.add_argument("--dense-mass", choices=["auto", "yes", "no"], default="auto",
                     help="NUTS mass matrix: dense (yes), diagonal (no), or auto: dense up to "
                     "32 unconstrained parameters, diagonal above (default)")
    fit.add_argument("--prefit", choices=["none", "svi", "map", "laplace"], default=None,
                     help="NUTS: svi = mean-field SVI pre-fit for starting points and the initial mass matrix; "
                     "map = each chain starts at the best of several mode searches (posteriors with poor "
                     "local modes); laplace = svi, then NUTS in coordinates whitened by the per-patient "
                     "block Hessian at its mean (centred population models with informative data) "
                     "(default: the model's setting; svi for the population models)")
    fit.add_argument("--guide", choices=["normal", "mvn", "lowrank", "flow"], default="mvn",
                     help="SVI guide (with --method svi)")
    fit.add_argument("--steps", type=_positive_int("steps"), default=20000, help="SVI steps")
    fit.add_argument("--out", help="output NetCDF path (default: MODEL.nc)")
    fit.add_argument("--force", action="store_true", help="replace an existing output file")
    fit.add_argument("--float32", action="store_true", help="compute in single precision (default: double)")
    fit.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    fit.add_argument("--report", metavar="PATH.html", help="also write the HTML diagnostics report")
    fit.add_argument("--no-failure-count", action="store_true",
                     help="do not count failed solves per draw (with vectorized chains or --devices the "
                     "count needs a host callback, which keeps the sampler out of the compilation cache)")
    fit.add_argument("--checkpoint-every", type=_positive_int("checkpoint-every"), metavar="N",
                     help="save the sampler state to OUT.ckpt every N iterations (NUTS)")
    fit.add_argument("--resume", action="store_true",
                     help="continue a killed run from OUT.ckpt (same model, data, seed and settings)")
    fit.add_argument("--devices", type=_positive_int("devices"), metavar="N",
                     help="shard the patients of population models over N devices (GPUs, or CPU devices: "
                          "the CLI then makes at least N); see bayesbio.parallel")
    fit.add_argument("--chain-devices", type=_positive_int("chain-devices"), default=1, metavar="K",
                     help="with --devices: run K chains side by side, each on N/K devices "
                          "(--chain-method parallel)")
    fit.add_argument("--distributed", action="store_true",
                     help="join the other processes of a multi-host run (SLURM or BAYESBIO_COORDINATOR_ADDRESS/"
                          "NUM_PROCESSES/PROCESS_ID; see bayesbio.distributed); process 0 writes the results")

    sub.add_parser("models", help="list the bundled models")

    cmp = sub.add_parser("compare", help="fit models and compare them by LOO, model evidence and stacking")
    cmp.add_argument("models", nargs="+", metavar="MODEL", help="bundled model names or model-script paths")
    cmp.add_argument("--data", help="data file given to every model's load_data (default: bundled data)")
    cmp.add_argument("--out", required=True, help="output CSV, one row per model")
    cmp.add_argument("--plot", help="comparison figure (default: OUT with the suffix .png)")
    cmp.add_argument("--chains", type=_positive_int("chains"), default=4)
    cmp.add_argument("--warmup", type=_positive_int("warmup", 0), default=1000)
    cmp.add_argument("--samples", type=_positive_int("samples"), default=1000)
    cmp.add_argument("--seed", type=_positive_int("seed", 0), default=0)
    cmp.add_argument("--target-accept", type=_probability, default=0.8)
    cmp.add_argument("--particles", type=_positive_int("particles", 10), default=2000, help="SMC particles per run")
    cmp.add_argument("--smc-runs", type=_positive_int("smc-runs", 2), default=4,
                     help="independent SMC runs (their spread is the SMC error)")
    cmp.add_argument("--evidence", choices=["smc", "bridge"], default="smc",
                     help="evidence estimator of the table (the other one runs as a check)")
    cmp.add_argument("--prior-weights", metavar="W1,W2,...", help="prior model weights (default: equal)")
    cmp.add_argument("--k-threshold", type=float, default=0.7, help="Pareto k above which LOO is refitted")
    cmp.add_argument("--folds", type=_positive_int("folds", 2), default=10, help="K of the K-fold refits")
    cmp.add_argument("--logo", action="store_true",
                     help="refit leaving out one observed variable (e.g. a loading mode) instead of K-fold")
    cmp.add_argument("--force", action="store_true", help="replace existing output files")
    cmp.add_argument("--float32", action="store_true", help="compute in single precision (default: double)")
    cmp.add_argument("--no-progress", action="store_true", help="hide progress bars")

    sbc = sub.add_parser("sbc", help="simulation-based calibration: rank uniformity of NUTS fits to "
                                     "data simulated from the prior")
    sbc.add_argument("model", help="bundled model name or path to a model script")
    sbc.add_argument("--data", help="design data for the simulations (default: the bundled data)")
    sbc.add_argument("--reps", type=_positive_int("reps"), help="replications (default: the model's "
                     "`sbc` settings, else 100)")
    sbc.add_argument("--out", help="output folder (default: sbc_MODEL)")
    sbc.add_argument("--seed", type=_positive_int("seed", 0), default=0)
    sbc.add_argument("--warmup", type=_positive_int("warmup", 0), help="NUTS warm-up iterations per fit")
    sbc.add_argument("--draws", type=_positive_int("draws"), help="thinned draws kept per chain")
    sbc.add_argument("--thin", type=_positive_int("thin"), help="keep every THIN-th draw")
    sbc.add_argument("--chains", type=_positive_int("chains"), help="chains per fit")
    sbc.add_argument("--batch", type=_positive_int("batch"), help="replications fitted together (vmap)")
    sbc.add_argument("--workers", type=_positive_int("workers"), default=1, metavar="N",
                     help="fit N batches at once, each on its own thread or process (--parallel; on a CPU: up to "
                     "one per core); a replication's fit does not depend on its worker, so --resume may change N (default 1)")
    sbc.add_argument("--parallel", choices=("threads", "processes"), default="threads",
                     help="how --workers run: threads through one compiled program (default) or worker "
                     "processes, each loading the model and compiling its own copy (a start-up cost per "
                     "process; nothing shared between fits at once); the fits are the same")
    sbc.add_argument("--init", choices=("model", "truth"), help="where chains start: as `bayesbio fit` does "
                     "('model', default) or at each replication's true parameters ('truth': a start in the "
                     "stationary distribution; checks calibration but not warm-up from a distant start)")
    sbc.add_argument("--prefit", choices=("none", "svi", "map"), help="per chain, a mean-field SVI pre-fit or "
                     "the best of several mode searches before warm-up (default: the model script's "
                     "`nuts_prefit`, as `bayesbio fit`)")
    sbc.add_argument("--dense-mass", choices=("yes", "no"),
                     help="NUTS mass matrix of each fit: dense or diagonal (default: the model's `sbc` "
                     "settings, else diagonal)")
    sbc.add_argument("--force", action="store_true", help="replace earlier results (or an unfinished run's "
                     "checkpoint) in the output folder")
    sbc.add_argument("--resume", action="store_true",
                     help="continue a killed run from OUT/sbc_checkpoint.npz (kept after every batch; same "
                          "model, data, seed and settings)")
    sbc.add_argument("--float32", action="store_true", help="compute in single precision (default: double)")
    sbc.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sbc.add_argument("--progress", action="store_true", help="show the progress bar also when stderr is not a "
                     "terminal (logs of long runs)")

    report = sub.add_parser("report", help="write an HTML diagnostics report of a results file")
    report.add_argument("results", help="InferenceData NetCDF written by `bayesbio fit`")
    report.add_argument("--out", help="output HTML path (default: RESULTS with the suffix .html)")
    return parser


def write_netcdf_atomic(idata, path: str | os.PathLike) -> Path:
    """Write InferenceData to ``path`` via a temporary file in the same folder and a rename,
    so a killed run never leaves a half-written file."""
    from bayesbio._io import write_atomic

    return write_atomic(path, lambda tmp: idata.to_netcdf(tmp, engine="h5netcdf"))


def _configure_jax(float32: bool) -> None:
    import jax

    jax.config.update("jax_enable_x64", not float32)
    cache = os.environ.get("BAYESBIO_CACHE_DIR", str(Path.home() / ".cache" / "bayesbio" / "jax"))
    if cache and cache.lower() != "off":
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _configure_devices(args) -> None:
    """--distributed: jax.distributed from the cluster's environment (before JAX runs anything);
    --devices: the (chains, patients) mesh, made active for the rest of the process."""
    if args.chain_devices > 1 and not args.devices:
        raise _UsageError("--chain-devices: needs --devices")
    if args.distributed:
        from bayesbio.distributed import initialize

        initialize()
    if args.devices:
        import jax

        from bayesbio.parallel import make_mesh

        jax.set_mesh(make_mesh(args.devices, chains=args.chain_devices))


def _is_process_zero() -> bool:
    import jax

    return jax.process_index() == 0


def _cmd_models(args) -> int:
    from bayesbio.model import bundled_models

    for name, description in bundled_models().items():
        print(f"{name:24s} {description}")
    return 0


def _cmd_fit(args) -> int:
    out = Path(args.out or f"{Path(args.model).stem}.nc")
    if out.exists() and not args.force:
        raise _UsageError(f"--out: '{out}' exists; pass --force to replace it")
    ckpt = out.with_name(out.name + ".ckpt")
    if (args.checkpoint_every or args.resume) and args.method != "nuts":
        raise _UsageError("--checkpoint-every/--resume: only NUTS runs are checkpointed")
    if args.resume and not ckpt.is_file():
        raise _UsageError(f"--resume: no checkpoint '{ckpt}' to resume from")
    _configure_jax(args.float32)
    _configure_devices(args)
    import arviz as az

    import bayesbio as bb

    progress = False if args.no_progress else None
    t0 = time.perf_counter()
    if args.method == "nuts":
        idata = bb.sample_nuts(
            args.model, args.data, chains=args.chains, warmup=args.warmup, samples=args.samples,
            seed=args.seed, target_accept=args.target_accept, progress=progress,
            chain_method=args.chain_method, prefit=args.prefit,
            dense_mass={"auto": "auto", "yes": True, "no": False}[args.dense_mass],
            checkpoint=str(ckpt) if (args.checkpoint_every or args.resume) else None,
            checkpoint_every=args.checkpoint_every, resume=args.resume,
            count_solver_failures=not args.no_failure_count,
        )
    elif args.method == "svi":
        idata = bb.fit_svi(args.model, args.data, guide=args.guide, steps=args.steps,
                           samples=args.samples, seed=args.seed, progress=progress)
    else:
        idata = bb.fit_laplace(args.model, args.data, samples=args.samples, seed=args.seed)
    if args.distributed and not _is_process_zero():
        return 0  # every process has the same draws; process 0 writes them
    write_netcdf_atomic(idata, out)
    ckpt.unlink(missing_ok=True)  # the result is safe on disk: the checkpoint has served
    post = idata.posterior
    names = [v for v in post.data_vars if post[v].ndim <= 3]
    print(az.summary(idata, var_names=names).to_string())
    attrs = post.attrs
    stats = idata.sample_stats
    div = int(stats["diverging"].sum()) if "diverging" in stats else 0
    failures = int(stats["solver_failures"].sum()) if "solver_failures" in stats else 0
    print(
        f"\n{args.method}: compile {attrs.get('compile_seconds', 0):.1f} s, warm-up "
        f"{attrs.get('warmup_seconds', 0):.1f} s, sampling {attrs.get('sampling_seconds', 0):.1f} s; "
        f"divergences {div}, solver failures {failures}; total {time.perf_counter() - t0:.1f} s"
    )
    from bayesbio.infer._patients import describe_patient_failures

    per_patient = describe_patient_failures(idata)  # population models: who failed, when any did
    if per_patient:
        print(per_patient)
    print(f"wrote {out}")
    if args.report:
        import matplotlib

        matplotlib.use("Agg")
        from bayesbio.report import write_report

        t_report = time.perf_counter()
        path = write_report(idata, args.report)
        print(f"wrote report {path} ({time.perf_counter() - t_report:.1f} s)")
    return 0


def _cmd_report(args) -> int:
    import matplotlib

    matplotlib.use("Agg")  # no display needed; figures are embedded as PNG
    from bayesbio.report import report_main

    return report_main(args)


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files of atomic writes that a killed run left behind in an SBC output folder."""
    if out.is_dir():
        for tmp in out.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def _cmd_sbc(args, argv) -> int:
    """Run SBC; exit status 0 when every rank-uniformity test passes, 1 when one fails."""
    import shlex

    from bayesbio.sbc.checkpoint import CHECKPOINT_NAME
    from bayesbio.sbc.output import check_out_dir

    out = Path(args.out or f"sbc_{Path(args.model).stem}")
    check_out_dir(out, force=args.force)  # fail before the long run, not after it
    ckpt = out / CHECKPOINT_NAME
    if args.resume and not ckpt.is_file():
        raise _UsageError(f"--resume: no checkpoint '{ckpt}' to resume from")
    if ckpt.exists() and not args.resume and not args.force:
        raise _UsageError(f"--out: '{out}' holds an unfinished SBC run ({CHECKPOINT_NAME}); pass --resume to "
                          "continue it or --force to start again")
    _remove_stale_temporaries(out)
    _configure_jax(args.float32)
    import matplotlib

    matplotlib.use("Agg")
    from bayesbio.sbc import run_sbc

    argv = sys.argv[1:] if argv is None else list(argv)
    # the command that reproduces the result (a resumed run's result is the uninterrupted run's)
    command = "bayesbio " + " ".join(shlex.quote(str(a)) for a in argv if a != "--resume")
    result = run_sbc(
        args.model, args.data, seed=args.seed,
        progress=False if args.no_progress else (True if args.progress else None),
        reps=args.reps, warmup=args.warmup, draws=args.draws, thin=args.thin, chains=args.chains,
        batch=args.batch, init=args.init, prefit=args.prefit,
        dense_mass=None if args.dense_mass is None else args.dense_mass == "yes",
        checkpoint=ckpt, resume=args.resume, force=args.force, workers=args.workers,
        parallel=args.parallel,
    )
    result.write(out, force=args.force, command=command)
    ckpt.unlink(missing_ok=True)  # the results are complete
    _remove_stale_temporaries(out)
    print(result.table().to_string(float_format=lambda v: f"{v:.3g}"))
    verdict = "passed" if result.passed else "FAILED"
    print(f"\nSBC {verdict}: {result.settings.reps} replications, smallest Holm-adjusted p = "
          f"{min(result.p_holm.values()):.3g} (alpha {result.settings.alpha}); "
          f"{int(result.divergences.sum())} divergences; {result.timings['total_seconds']:.0f} s")
    print(f"wrote {out}/")
    return 0 if result.passed else 1


def _cmd_compare(args) -> int:
    out = Path(args.out)
    plot = Path(args.plot) if args.plot else out.with_suffix(".png")
    for path in (out, plot):
        if path.exists() and not args.force:
            raise _UsageError(f"--out/--plot: '{path}' exists; pass --force to replace it")
    weights = None
    if args.prior_weights:
        try:
            weights = [float(w) for w in args.prior_weights.split(",")]
        except ValueError:
            raise _UsageError(f"--prior-weights must be comma-separated numbers; got {args.prior_weights!r}") from None
        if len(weights) != len(args.models):
            raise _UsageError(f"--prior-weights: expected {len(args.models)} weights (one per model); got {len(weights)}")
    _configure_jax(args.float32)
    import matplotlib

    matplotlib.use("Agg")
    from bayesbio._io import write_atomic
    from bayesbio.select import compare_models, plot_comparison

    t0 = time.perf_counter()
    evidence = [args.evidence] + [m for m in ("smc", "bridge") if m != args.evidence]
    result = compare_models(
        args.models, args.data, chains=args.chains, warmup=args.warmup, samples=args.samples, seed=args.seed,
        evidence=evidence, particles=args.particles, smc_runs=args.smc_runs, prior_weights=weights,
        k_threshold=args.k_threshold, folds=args.folds, groups="site" if args.logo else None,
        progress=False if args.no_progress else None, nuts_options={"target_accept": args.target_accept},
        log=print,
    )
    write_atomic(out, lambda tmp: result.table.to_csv(tmp, index=False, float_format="%.6g"))
    fig = plot_comparison(result.table, details=result.details)
    write_atomic(plot, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    print(result.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    d = result.details
    print("\nelpd method: " + ", ".join(f"{m} {e}" for m, e in zip(d["model"], d["elpd_method"])))
    print("log evidence smc vs bridge: " + ", ".join(
        f"{m} {a:.2f}±{sa:.2f} / {b:.2f}±{sb:.2f}" for m, a, sa, b, sb in zip(
            d["model"], d["log_evidence_smc"], d["log_evidence_smc_se"], d["log_evidence_bridge"],
            d["log_evidence_bridge_se"])))
    print(f"total {time.perf_counter() - t0:.0f} s; wrote {out} and {plot}")
    return 0


class _UsageError(Exception):
    pass


def _expose_cpu_cores(minimum: int | None = None) -> None:
    """One JAX CPU device per core (at least ``minimum``: ``--devices N``), so a population's
    patients can be sharded over the cores (``--devices``); parallel chains run as threads on
    one device and need none of this.

    JAX reads XLA_FLAGS when its backend starts (the first device query), not at import, so
    this works as long as nothing has touched a device yet; a flag the user set wins."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        count = max(1, cores or 1, minimum or 1)
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _expose_cpu_cores(getattr(args, "devices", None))
    from bayesbio.errors import BayesbioError

    try:
        if args.command == "models":
            return _cmd_models(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "compare":
            return _cmd_compare(args)
        if args.command == "sbc":
            return _cmd_sbc(args, argv)
        return _cmd_fit(args)
    except (_UsageError, BayesbioError) as exc:
        sys.stderr.write(f"error: {str(exc).splitlines()[0]}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
