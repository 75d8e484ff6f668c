"""Benchmark: linear-Gaussian backward UQ at 128 grid points, bayesbio vs CUQIpy, same problem.

For each bundled linear-Gaussian inverse problem (``backward_heat``: the initial temperature
from a noisy later profile; ``deconvolution``: a signal from a blurred noisy copy), the problem
definition is exported **from the bayesbio model** — forward matrix (``forward_matrix(data)``),
prior mean and covariance (``prior(128).mean_vector()`` / ``.covariance()``, the Matérn SPDE
prior), data ``y`` and noise sd (``load_data()``) — and handed to CUQIpy unchanged:

    A = cuqi.model.LinearModel(A);  x = cuqi.distribution.Gaussian(mean, cov=C)
    y = cuqi.distribution.Gaussian(A @ x, cov=noise_sd**2);  posterior = p(x | y = data)

The measured question (issue 6): time to a posterior with bulk ESS >= 400 for every one of the
128 grid values, and is that posterior as accurate as the exact Gaussian posterior allows?

Rows (each in a fresh process, timed from just before the process is created until the draws
are in memory, so interpreter start and imports count):

* bayesbio NUTS: ``laplace_preconditioner`` (Newton mode + dense Hessian) then ``sample_nuts`` on
  the model with that preconditioner (the library's path for these problems), cold (empty JAX
  compilation cache) and warm (the cache the cold run wrote), with ``chain_method="auto"`` (one
  chain per core) and ``"vectorized"`` (``--chain-method X`` runs only X);
* CUQIpy LinearRTO: the sampler ``cuqi.experimental.SamplerRecommender`` recommends for this
  posterior, with its defaults (inner CGLS ``maxit=10, tol=1e-6``, warm-started at the previous
  sample) and with the inner solve tightened so that the draws are accurate;
* not MCMC (exact, i.i.d. draws): bayesbio ``linear_gaussian_posterior`` + draws, bayesbio
  dense ``laplace_field`` + draws, and CUQIpy ``BayesianProblem.sample_posterior`` (whose
  automatic choice for a Gaussian prior below 2000 unknowns is direct Cholesky sampling).

Every row's draws go through the same ArviZ code in the parent (bulk/tail ESS, R-hat, MCSE of
mean and sd) and are compared with the exact posterior (``linear_gaussian_posterior``).

    python benchmarks/backward_uq.py            # both problems, full size
    python benchmarks/backward_uq.py --quick    # backward_heat only, short runs (*_quick files)

Writes ``benchmarks/results/backward_uq[_quick].json`` and ``.md``; worker logs in
``results/logs/``. CUQIpy is needed only here (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_MAIN = time.time()
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common

NAME = "backward_uq"
TITLE = "Linear-Gaussian backward UQ (128 cells): bayesbio vs CUQIpy, time to bulk ESS ≥ 400 at every grid value"
TARGET_ESS = 400
#: (field site, whitened site) of each bundled problem
PROBLEMS = {"backward_heat": ("u0", "u0_white"), "deconvolution": ("u", "u_white")}
#: z-score beyond which a row's error is more than Monte Carlo error (see ``accuracy``)
Z_LIMIT = 4.0
#: CUQIpy LinearRTO settings: its defaults, and an inner solve tight enough to be accurate
RTO_DEFAULT: dict = {}
RTO_ACCURATE = {"maxit": 100, "tol": 1e-10}
#: every worker (both tools) runs with single-threaded OpenBLAS: on this shared 2-core machine a
#: threaded LAPACK call stalls (a 154 x 154 Cholesky measured 0.2-0.7 s after ``import jax`` under
#: load, 0.2 ms single-threaded), and the problems are too small to gain from BLAS threads
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1"}


# ============================================================================================
# workers (fresh processes); each returns a dict and saves its draws (chain, draw, 128) as .npy


def _jax(cfg):
    import jax

    jax.config.update("jax_enable_x64", True)
    if cfg.get("jax_cache_dir"):
        jax.config.update("jax_compilation_cache_dir", cfg["jax_cache_dir"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    else:
        jax.config.update("jax_enable_compilation_cache", False)
    return jax


def worker_bb_nuts(cfg, t_spawn):
    _jax(cfg)
    import importlib

    import numpy as np

    import bayesbio as bb

    module = importlib.import_module(f"bayesbio.models.{cfg['problem']}")
    field, site = PROBLEMS[cfg["problem"]]
    t_imported = time.time()
    pre = bb.fields.laplace_preconditioner(cfg["problem"], site=site, seed=cfg["seed"])
    t_pre = time.time()
    spec = bb.ModelSpec(cfg["problem"], module.make_model(preconditioner=pre), module.load_data, module.dims)
    idata = bb.sample_nuts(spec, chains=cfg["chains"], warmup=cfg["warmup"], samples=cfg["samples"],
                           seed=cfg["seed"], chain_method=cfg["chain_method"], progress=False,
                           count_solver_failures=False)
    t_end = time.time()
    np.save(cfg["draws_path"], np.asarray(idata.posterior[field].values))
    a = idata.posterior.attrs
    st = idata.sample_stats
    return {
        "end_to_end_seconds": t_end - t_spawn,
        "import_seconds": t_imported - t_spawn,
        "preconditioner_seconds": t_pre - t_imported,
        "compile_seconds": float(a["compile_seconds"]),
        "warmup_seconds": float(a["warmup_seconds"]),
        "sampling_seconds": float(a["sampling_seconds"]),
        "gradient_evaluations": int(a["gradient_evaluations"]),
        "divergences": int(np.asarray(st["diverging"]).sum()),
        "mean_tree_depth": float(np.asarray(st["tree_depth"]).mean()),
        "versions": {k[len("version_"):]: v for k, v in a.items() if k.startswith("version_")},
    }


def worker_bb_exact(cfg, t_spawn):
    """Exact posterior (``kind="exact"``) or dense Laplace (``kind="laplace"``), then i.i.d. draws."""
    _jax(cfg)
    import importlib

    import numpy as np

    import bayesbio as bb

    module = importlib.import_module(f"bayesbio.models.{cfg['problem']}")
    field, _ = PROBLEMS[cfg["problem"]]
    t_imported = time.time()
    if cfg["kind"] == "exact":
        data = module.load_data()
        prior = module.prior(data["y"].size)
        post = bb.fields.linear_gaussian_posterior(prior, module.forward_matrix(data), data["y"], data["noise_sd"])
    else:
        post = bb.fields.laplace_field(cfg["problem"], field=field, seed=cfg["seed"])
    t_post = time.time()
    draws = post.sample(np.random.default_rng(cfg["seed"]), cfg["draws"])
    t_end = time.time()
    np.save(cfg["draws_path"], draws[None])
    return {"end_to_end_seconds": t_end - t_spawn, "import_seconds": t_imported - t_spawn,
            "posterior_seconds": t_post - t_imported, "sampling_seconds": t_end - t_post}


def _cuqi_posterior(cfg):
    import cuqi
    import numpy as np

    z = np.load(cfg["problem_path"])
    model = cuqi.model.LinearModel(z["A"])
    x = cuqi.distribution.Gaussian(z["mean"], cov=z["cov"])
    y = cuqi.distribution.Gaussian(model @ x, cov=float(z["noise_sd"]) ** 2)
    return cuqi, x, y, z["y"]


def worker_cuqi_rto(cfg, t_spawn):
    import numpy as np

    cuqi, x, y, data = _cuqi_posterior(cfg)
    np.random.seed(cfg["seed"])
    t_imported = time.time()
    posterior = cuqi.distribution.JointDistribution(y, x)(y=data)
    from cuqi.experimental import SamplerRecommender

    recommended = type(SamplerRecommender(posterior).recommend()).__name__
    t_rec = time.time()
    sampler = cuqi.sampler.LinearRTO(posterior, **cfg["rto"])
    sampler.warmup(cfg["burnin"])
    t_sample = time.time()
    sampler.sample(cfg["draws"])
    samples = sampler.get_samples().burnthin(cfg["burnin"]).samples  # (128, draws)
    t_end = time.time()
    np.save(cfg["draws_path"], samples.T[None])
    return {"end_to_end_seconds": t_end - t_spawn, "import_seconds": t_imported - t_spawn,
            "recommender_seconds": t_rec - t_imported, "recommended_sampler": recommended,
            "warmup_seconds": t_sample - t_rec, "sampling_seconds": t_end - t_sample,
            "versions": {"cuqipy": cuqi.__version__, "numpy": np.__version__}}


def worker_cuqi_auto(cfg, t_spawn):
    import contextlib
    import io

    import numpy as np

    cuqi, x, y, data = _cuqi_posterior(cfg)
    np.random.seed(cfg["seed"])
    t_imported = time.time()
    problem = cuqi.problem.BayesianProblem(y, x).set_data(y=data)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):  # it prints its choice; keep it for the JSON
        samples = problem.sample_posterior(cfg["draws"]).samples
    t_end = time.time()
    np.save(cfg["draws_path"], samples.T[None])
    choice = [ln for ln in log.getvalue().splitlines() if ln.startswith("Using")]
    return {"end_to_end_seconds": t_end - t_spawn, "import_seconds": t_imported - t_spawn,
            "sampling_seconds": t_end - t_imported, "cuqi_message": choice,
            "versions": {"cuqipy": cuqi.__version__, "numpy": np.__version__}}


WORKERS = {"bb_nuts": worker_bb_nuts, "bb_exact": worker_bb_exact, "cuqi_rto": worker_cuqi_rto,
           "cuqi_auto": worker_cuqi_auto}


# ============================================================================================
# parent: export the problem, run the workers, judge the draws


def export_problem(problem: str, path: Path) -> dict:
    """Write the bayesbio model's operator, prior and data to ``path`` (.npz); return the oracle."""
    import importlib

    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    from bayesbio.fields import linear_gaussian_posterior

    module = importlib.import_module(f"bayesbio.models.{problem}")
    data = module.load_data()
    n = data["y"].size
    prior = module.prior(n)
    a, mean, cov = module.forward_matrix(data), prior.mean_vector(), prior.covariance()
    np.savez(path, A=a, mean=mean, cov=cov, y=data["y"], noise_sd=data["noise_sd"])
    exact = linear_gaussian_posterior(prior, a, data["y"], data["noise_sd"])
    # the same oracle from the exported (mean, covariance): what CUQIpy is given
    again = linear_gaussian_posterior((n, mean, cov), a, data["y"], data["noise_sd"])
    return {"mean": exact.mean, "sd": exact.sd, "prior_sd": np.sqrt(np.diag(cov)), "n": n,
            "export_check": {"max_mean_difference": float(np.abs(exact.mean - again.mean).max()),
                             "max_sd_relative_difference": float(np.abs(again.sd / exact.sd - 1).max())},
            "prior_condition_number": float(np.linalg.cond(cov)),
            "posterior_sd_over_prior_sd": [float((exact.sd / np.sqrt(np.diag(cov))).min()),
                                           float((exact.sd / np.sqrt(np.diag(cov))).max())]}


def accuracy(draws, oracle) -> dict:
    """ESS/R-hat (ArviZ, ``common.posterior_diagnostics``) and errors against the exact posterior.

    Errors: max over grid points of |mean - exact mean| / prior sd and |sd / exact sd - 1|. The
    z-scores divide each error by ArviZ's Monte Carlo standard error of that mean / sd: an
    unbiased sampler gives |z| above 4 at one of 128 points with probability ~1 %, so a row
    with max |z| < 4 (``Z_LIMIT``) is as accurate as its ESS allows; beyond it, the error is bias.
    """
    import arviz as az
    import numpy as np

    diag = common.posterior_diagnostics({"u": draws})
    idata = az.from_dict(posterior={"u": draws})
    mcse_mean = np.asarray(az.mcse(idata, method="mean")["u"])
    mcse_sd = np.asarray(az.mcse(idata, method="sd")["u"])
    flat = draws.reshape(-1, draws.shape[-1])
    m, s = flat.mean(axis=0), flat.std(axis=0, ddof=1)
    ess = np.array([r["ess_bulk"] for r in diag["parameters"]])
    z_mean = np.abs(m - oracle["mean"]) / mcse_mean
    z_sd = np.abs(s - oracle["sd"]) / mcse_sd
    return {
        "draws_total": int(flat.shape[0]),
        "min_ess_bulk": diag["min_ess_bulk"], "min_ess_tail": diag["min_ess_tail"],
        "median_ess_bulk": float(np.median(ess)), "max_r_hat": diag["max_r_hat"],
        "max_mean_error_prior_sd": float(np.max(np.abs(m - oracle["mean"]) / oracle["prior_sd"])),
        "max_sd_rel_error": float(np.max(np.abs(s / oracle["sd"] - 1))),
        "max_z_mean": float(z_mean.max()), "max_z_sd": float(z_sd.max()),
        "accurate": bool(z_mean.max() < Z_LIMIT and z_sd.max() < Z_LIMIT),
    }


def _spawn(kind: str, cfg: dict, log: Path, extra_env: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in common.SCRUBBED_ENV}
    env.update({"PYTHONUNBUFFERED": "1", "CI": "1", "TQDM_DISABLE": "1", "BAYESBIO_CACHE_DIR": "off"})
    env.update(WORKER_ENV)
    env.update(extra_env or {})
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bayesbio-bench-") as tmp:
        cfg_path, out_path = Path(tmp) / "config.json", Path(tmp) / "result.json"
        cfg_path.write_text(json.dumps(common.to_jsonable(cfg)))
        with open(log, "w") as fh:
            t_spawn = time.time()
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", kind, str(cfg_path),
                                   str(out_path), repr(t_spawn)], stdout=fh, stderr=subprocess.STDOUT,
                                  cwd=common.REPO_ROOT, env=env, check=False)
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"{kind} worker failed (exit {proc.returncode}); log {log}\n{common.log_tail(log)}")
        return json.loads(out_path.read_text())


def _row(label, tool, method, res, acc, *, settings=""):
    e2e, samp = res["end_to_end_seconds"], res["sampling_seconds"]
    ess = acc["min_ess_bulk"]
    setup = e2e - samp
    scaled = setup + samp * TARGET_ESS / ess if ess and ess > 0 else None
    return {"run": label, "tool": tool, "method": method, "settings": settings, "draws": acc["draws_total"],
            "end_to_end_seconds": e2e, "setup_seconds": setup, "sampling_seconds": samp,
            "time_to_ess_target_seconds": scaled, "ess_target_reached": bool(ess >= TARGET_ESS),
            **{k: v for k, v in acc.items() if k != "draws_total"}}


def run_problem(problem: str, args, size: dict, out_dir: Path, logs: Path, stem: str, say) -> dict:
    import numpy as np

    sides = {s.strip() for s in args.sides.split(",")}
    run_bb, run_cuqi = "bayesbio" in sides, bool(sides & {"cuqipy", "stan"})  # "stan": run.py's other side
    rows, raw = [], {}
    with tempfile.TemporaryDirectory(prefix="bayesbio-bench-uq-") as tmp:
        tmp = Path(tmp)
        oracle = export_problem(problem, tmp / "problem.npz")
        base = {"problem": problem, "seed": args.seed, "problem_path": str(tmp / "problem.npz")}

        def run(key, kind, cfg, label, tool, method, settings="", env=None):
            say(f"{problem}: {label} ...")
            cfg = {**base, **cfg, "draws_path": str(tmp / f"{key}.npy")}
            res = _spawn(kind, cfg, logs / f"{stem}_{problem}_{key}.log", env)
            acc = accuracy(np.load(cfg["draws_path"]), oracle)
            raw[key] = res
            rows.append(_row(label, tool, method, res, acc, settings=settings))
            say(f"  {res['end_to_end_seconds']:.1f} s, min bulk ESS {acc['min_ess_bulk']:.0f}, "
                f"max |z| mean {acc['max_z_mean']:.1f} sd {acc['max_z_sd']:.1f}")

        if run_bb:
            # default: both chain methods, each cold and warm (see NOTES: on this shared 2-core machine
            # lockstep vectorised chains on one core beat one chain per core, which needs both cores at once)
            methods = ["auto", "vectorized"] if args.chain_method == "auto" else [args.chain_method]
            for method in methods:
                nuts = {"chains": size["chains"], "warmup": size["warmup"], "samples": size["samples"],
                        "chain_method": method}
                env = {}
                if method in ("auto", "parallel"):
                    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={len(os.sched_getaffinity(0))}"
                nuts_settings = (f"Laplace preconditioner (Newton mode) + NUTS, {size['chains']} chains × "
                                 f"({size['warmup']} warm-up + {size['samples']} draws), chain method {method}"
                                 + (" (parallel: one chain per core)" if method == "auto" else ""))
                tag = "" if method == "auto" else f"_{method}"
                what = "" if method == "auto" else f", {method} chains"
                with tempfile.TemporaryDirectory(prefix="bayesbio-bench-jax-cache-") as cache:
                    run(f"bb_nuts_cold{tag}", "bb_nuts", {**nuts, "jax_cache_dir": cache},
                        f"bayesbio NUTS (cold JIT cache{what})", "bayesbio", "MCMC", nuts_settings, env)
                    if not args.no_warm_run:
                        run(f"bb_nuts_warm{tag}", "bb_nuts", {**nuts, "jax_cache_dir": cache},
                            f"bayesbio NUTS (warm JIT cache{what})", "bayesbio", "MCMC", nuts_settings, env)
        if run_cuqi:
            rto = {"burnin": size["rto_burnin"], "draws": size["rto_draws"]}
            rto_settings = f"{size['rto_burnin']} burn-in + {size['rto_draws']} draws, one chain"
            run("cuqi_rto_default", "cuqi_rto", {**rto, "rto": RTO_DEFAULT}, "CUQIpy LinearRTO (defaults)",
                "CUQIpy", "MCMC", f"inner CGLS maxit=10, tol=1e-6 (defaults); {rto_settings}")
            run("cuqi_rto_accurate", "cuqi_rto", {**rto, "rto": RTO_ACCURATE}, "CUQIpy LinearRTO (tight inner solve)",
                "CUQIpy", "MCMC", f"inner CGLS maxit={RTO_ACCURATE['maxit']}, tol={RTO_ACCURATE['tol']:g}; {rto_settings}")
        if run_bb:
            run("bb_exact", "bb_exact", {"kind": "exact", "draws": size["direct_draws"]},
                "bayesbio exact posterior + draws (not MCMC)", "bayesbio", "exact",
                f"linear_gaussian_posterior, {size['direct_draws']} i.i.d. draws")
            run("bb_laplace", "bb_exact", {"kind": "laplace", "draws": size["direct_draws"]},
                "bayesbio dense Laplace + draws (not MCMC)", "bayesbio", "exact",
                f"laplace_field (dense Hessian), {size['direct_draws']} i.i.d. draws")
        if run_cuqi:
            run("cuqi_auto", "cuqi_auto", {"draws": size["direct_draws"]},
                "CUQIpy sample_posterior: direct sampling (not MCMC)", "CUQIpy", "exact",
                f"BayesianProblem.sample_posterior({size['direct_draws']}): automatic choice")
    oracle_info = {k: v for k, v in oracle.items() if k not in ("mean", "sd", "prior_sd")}
    return {"rows": rows, "raw": raw, "oracle": oracle_info, "verdict": verdict(rows)}


def verdict(rows) -> dict:
    """bayesbio's best accurate MCMC row vs CUQIpy's best accurate MCMC row (time to ESS 400)."""
    def best(tool):
        ok = [r for r in rows if r["tool"] == tool and r["method"] == "MCMC" and r["accurate"]
              and r["time_to_ess_target_seconds"]]
        return min(ok, key=lambda r: r["time_to_ess_target_seconds"]) if ok else None

    bb_row, cq_row = best("bayesbio"), best("CUQIpy")
    out = {"bayesbio": bb_row and bb_row["run"], "cuqipy": cq_row and cq_row["run"]}
    if bb_row and cq_row:
        out["speedup"] = cq_row["time_to_ess_target_seconds"] / bb_row["time_to_ess_target_seconds"]
        out["target_met"] = bool(out["speedup"] > 1)
    return out


COLUMNS = [
    ("run", "run", ""),
    ("draws", "draws", "d"),
    ("end-to-end s", "end_to_end_seconds", ".1f"),
    ("setup s", "setup_seconds", ".1f"),
    ("sampling s", "sampling_seconds", ".2f"),
    ("min bulk ESS", "min_ess_bulk", ".0f"),
    ("min tail ESS", "min_ess_tail", ".0f"),
    ("max R-hat", "max_r_hat", ".3f"),
    (f"time to ESS {TARGET_ESS} s", "time_to_ess_target_seconds", ".1f"),
    ("max mean err / prior sd", "max_mean_error_prior_sd", ".4f"),
    ("max sd rel err", "max_sd_rel_error", ".3f"),
    ("max \\|z\\| mean", "max_z_mean", ".1f"),
    ("max \\|z\\| sd", "max_z_sd", ".1f"),
    ("accurate", "accurate", lambda v: "yes" if v else "**no**"),
]


def breakdown(res: dict) -> str:
    """End-to-end seconds of a bayesbio NUTS worker split into its phases."""
    post = (res["end_to_end_seconds"] - res["import_seconds"] - res["preconditioner_seconds"]
            - res["compile_seconds"] - res["warmup_seconds"] - res["sampling_seconds"])
    parts = [("process start + imports", res["import_seconds"]),
             ("Laplace preconditioner (model set-up, Newton mode, Hessian)", res["preconditioner_seconds"]),
             ("sample_nuts set-up + compilation", res["compile_seconds"]), ("warm-up", res["warmup_seconds"]),
             ("sampling", res["sampling_seconds"]),
             ("InferenceData (arviz import, constrained draws, predictive, log-likelihood)", post)]
    return f"{res['end_to_end_seconds']:.1f} s = " + " + ".join(f"{what} {sec:.1f} s" for what, sec in parts)


def render(result: dict) -> str:
    m = result["machine"]
    load = ", ".join(f"{x:.1f}" for x in m.get("loadavg_at_start", []))
    load_end = ", ".join(f"{x:.1f}" for x in m.get("loadavg_at_end", []))
    lines = [f"# {TITLE}", ""]
    if result["quick"]:
        lines += ["> **Quick smoke run** (short chains): the numbers show that the harness works.", ""]
    lines += [
        f"Machine: {m.get('cpu_model', m.get('processor'))}, {m.get('cpu_count')} logical CPUs; load average "
        f"{load} at start, {load_end} at the end (**shared, heavily loaded machine: a quiet re-run is needed for "
        f"final absolute numbers**; both tools ran in the same run, one after the other, so ratios are roughly "
        f"comparable). Created {result['created_at']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(result["versions"].items())) + ".",
        "",
        (f"*time to ESS {TARGET_ESS}* = setup + sampling × {TARGET_ESS} / min bulk ESS, where setup = end-to-end − "
        "sampling (process start, imports, problem set-up, preconditioner / compilation / warm-up or burn-in) — the "
        "run scaled to exactly the target (an extrapolation for rows whose min bulk ESS is below the target). *accurate*: the max over the 128 grid values of |error| / ArviZ MCSE is "
        f"below {Z_LIMIT:g} for both the mean and the sd (no bias beyond Monte Carlo error). Errors are against the "
        "exact Gaussian posterior."),
        "",
    ]
    for name, pr in result["problems"].items():
        v = pr["verdict"]
        lines += [f"## {name}", "", common.markdown_table(pr["rows"], COLUMNS), ""]
        if "speedup" in v:
            lines += [(f"**MCMC target (faster than CUQIpy, equally accurate):** {'met' if v['target_met'] else 'NOT met'} — "
                      f"{v['bayesbio']} reaches ESS {TARGET_ESS} {v['speedup']:.2f}× faster than {v['cuqipy']} "
                      "(time to ESS columns)."), ""]
        elif v.get("bayesbio") or v.get("cuqipy"):
            lines += [f"Accurate MCMC rows: bayesbio {v.get('bayesbio') or 'none'}, CUQIpy {v.get('cuqipy') or 'none'}.", ""]
        lines += ["Settings: " + "; ".join(f"{r['run']}: {r['settings']}" for r in pr["rows"]) + ".", ""]
        for key, res in pr["raw"].items():
            if key.startswith("bb_nuts_warm"):
                lines += [f"Where the time of `{key}` went: " + breakdown(res) + ".", ""]
        o = pr["oracle"]
        lines += [(f"Problem: posterior sd / prior sd between {o['posterior_sd_over_prior_sd'][0]:.3f} and "
                  f"{o['posterior_sd_over_prior_sd'][1]:.3f}; prior covariance condition number "
                  f"{o['prior_condition_number']:.3g}; exported (mean, covariance) reproduce the bayesbio oracle to "
                  f"{o['export_check']['max_mean_difference']:.1e} (mean) / "
                  f"{o['export_check']['max_sd_relative_difference']:.1e} (relative sd)."), ""]
    if result.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(lines)


NOTES = [
    ("Same problem on both sides: CUQIpy receives the forward matrix, prior mean and covariance and the data "
    "exported from the bayesbio model (`forward_matrix`, `prior(128)`, `load_data`); bayesbio samples its bundled "
    "model script, whose operator and prior are the same functions."),
    ("CUQIpy's own choice: `cuqi.experimental.SamplerRecommender` recommends LinearRTO for this posterior (recorded "
    "per run in the JSON, `recommended_sampler`), and `BayesianProblem.sample_posterior` picks direct Cholesky "
    "sampling (exact, not MCMC) for a Gaussian prior with at most 2000 unknowns."),
    ("LinearRTO's inner CGLS is warm-started at the previous sample; with the default 10 iterations it does not "
    "converge on these ill-posed problems, so the chain is strongly autocorrelated and its sd biased. The tight row "
    f"(maxit={RTO_ACCURATE['maxit']}, tol={RTO_ACCURATE['tol']:g}; the tolerance is never reached, so maxit sets "
    "the cost) is the smallest of maxit = 20, 50, 100, 200 that passed the accuracy check on both problems in a "
    "trial (100 burn-in + 600 draws; max |z| of the sd: backward_heat 26.8 / 4.5 / 3.3 / 3.3, deconvolution "
    "6.4 / 2.4 / - / - for 20 / 50 / 100 / 200): CUQIpy is run at its fastest accurate setting, not at a "
    "needlessly tight one."),
    ("bayesbio NUTS runs with `count_solver_failures=False` (these models have no ODE/PDE solve to fail), so its "
    "compiled programs can be stored in the JAX persistent cache for the warm rows. Its warm-up is 200 iterations "
    "(not `sample_nuts`' default 1000): with the Laplace preconditioner the target is N(0, I) in the sampled "
    "coordinates, so step-size and diagonal-mass adaptation settle quickly. 100 warm-up iterations were tried on "
    "backward_heat and failed the accuracy check (max |z| of the sd 4.2), so 200 stays."),
    ("The preconditioner's mode is found by Newton's method with the dense Hessian (`laplace_preconditioner`, "
    "`mode='auto'`): the potential is quadratic, so one step is exact (previously L-BFGS: ~3000 iterations, "
    "3.6 s of a warm run), and the Hessian of the last Newton iterate is the one the preconditioner factorises. "
    "The backward_heat model applies the heat semigroup matrix-free (`heat_semigroup_apply`, two "
    "matrix-vector products per evaluation instead of forming the 128 × 128 semigroup from the traced T and D: "
    "gradient 0.076 → 0.016 ms)."),
    ("Chain methods: `auto` runs one chain per core (`parallel`: two worker threads, each running chains "
    "through the sequential chain's program); `vectorized` runs the 4 chains in lockstep in one program on one "
    "core. Results committed before 2026-12-05 ran `parallel` as a `pmap` over 2 CPU devices, whose steps "
    "needed both cores at once. Both methods start from the same keys; rounding differences between the two "
    "compiled programs make the chains drift apart, hence slightly different ESS."),
    ("Every worker (both tools) runs with `OPENBLAS_NUM_THREADS=1`: on this 2-core machine shared by several "
    "engineers a threaded OpenBLAS call stalls (a 154 × 154 Cholesky measured 0.2–0.7 s after `import jax` under "
    "load, 0.2 ms single-threaded); the problems are too small to gain from BLAS threads. It does not slow CUQIpy: "
    "its tight LinearRTO worker on backward_heat, run twice with and twice without the setting, alternately in "
    "one session (load 5), took 25.2 / 22.4 s with and 25.0 / 26.5 s without."),
    ("Even the `auto` (parallel) rows reach ESS 400 sooner than CUQIpy's accurate LinearRTO in this run; the "
    "largest remaining parts of a warm bayesbio run are the imports and building the InferenceData (the "
    "breakdown lines above), not the inference."),
    ("The exact rows (not MCMC) show the floor for a linear-Gaussian problem: with the posterior in closed form, "
    "draws are i.i.d. and cost microseconds each."),
]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_arguments(p)
    p.add_argument("--problems", default=None, help="comma-separated subset of backward_heat,deconvolution "
                   "(default both; --quick: backward_heat)")
    args = p.parse_args(argv)
    quick = bool(args.quick)
    size = {"chains": 2 if quick else 4, "warmup": 100 if quick else 200, "samples": 100 if quick else 200,
            "rto_burnin": 50 if quick else 100, "rto_draws": 200 if quick else 800,
            "direct_draws": 1000}
    for k in ("chains", "warmup", "samples"):
        if getattr(args, k) is not None:
            size[k] = getattr(args, k)
    problems = [s.strip() for s in (args.problems or ("backward_heat" if quick else ",".join(PROBLEMS))).split(",")]
    unknown = [s for s in problems if s not in PROBLEMS]
    if unknown:
        raise SystemExit(f"--problems: unknown {unknown}; choose from {list(PROBLEMS)}")
    out_dir = Path(args.out_dir)
    stem = f"{NAME}_quick" if quick else NAME
    import datetime as _dt

    result = {"benchmark": NAME, "title": TITLE, "quick": quick, "size": size, "target_ess": TARGET_ESS,
              "z_limit": Z_LIMIT, "rto_accurate": RTO_ACCURATE, "worker_env": WORKER_ENV,
              "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
              "machine": common.machine_info(), "problems": {}, "notes": NOTES}

    def say(msg):
        print(f"[{NAME}] {msg}", flush=True)

    for problem in problems:
        result["problems"][problem] = run_problem(problem, args, size, out_dir, out_dir / "logs", stem, say)
    result["machine"]["loadavg_at_end"] = list(os.getloadavg())
    versions = {}
    for pr in result["problems"].values():
        for res in pr["raw"].values():
            versions.update(res.get("versions", {}))
    result["versions"] = {k: v for k, v in versions.items() if k in ("jax", "numpyro", "bayesbio", "cuqipy", "numpy",
                                                                      "arviz")}
    # run.py's summary: one table of every problem's rows
    result["rows"] = [dict(r, run=f"{name}: {r['run']}") for name, pr in result["problems"].items() for r in pr["rows"]]
    result["summary_columns"] = COLUMNS
    json_path = common.write_json_atomic(out_dir / f"{stem}.json", {k: v for k, v in result.items()
                                                                      if k != "summary_columns"})
    md_path = common.write_text_atomic(out_dir / f"{stem}.md", render(result))
    say(f"wrote {json_path} and {md_path}")
    return result


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, cfg_path, out_path, t_spawn = sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
        cfg = json.loads(Path(cfg_path).read_text())
        out = WORKERS[kind](cfg, t_spawn)
        out["interpreter_start_seconds"] = T_MAIN - t_spawn
        common.write_json_atomic(out_path, out)
    else:
        main()
