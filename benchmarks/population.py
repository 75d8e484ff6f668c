"""Benchmark: population PK scaling with the number of patients, bayesbio vs Stan.

The bundled ``theophylline`` model (one compartment, first-order absorption, log-normal
between-subject variability on ka, CL, V, non-centred; additive error), its concentrations
solved by RK45 (``model_scripts/theophylline_rk45.py``; the bundled model itself uses the
closed form, ``solver="analytic"``, which Stan's side has no counterpart of here), on simulated
populations of N = 10, 100, 1,000 and 10,000 patients (``models/theophylline.py``
``simulate_table``: nlmixr2's Theoph estimates as truth, 6–10 samples per patient), against
``stan/population_pk.stan`` (the same model, priors and data; ``ode_rk45_tol`` per patient at
the same tolerances) for N <= ``--stan-max-n`` (default 1,000).

    python benchmarks/population.py                      # 4 x 1000 x 1000, N = 10 .. 10,000
    python benchmarks/population.py --quick              # 2 x 100 x 100, N = 10, 100, 1,000
    python benchmarks/population.py --sizes 10,100 --sides bayesbio
    python benchmarks/population.py --solver rk45-centred --sizes 1000   # both sides centred

Every (N, side) pair runs in fresh worker processes through ``common.run_benchmark`` (one
``population_N<N>[_quick].json/md`` each, with the full per-parameter tables); this script
adds ``population[_quick].json/md``: wall time per effective sample of the population
parameters, and bayesbio's cost of one log-density gradient (the batched solve of every
patient plus its sensitivities), against N. Only the population parameters count for ESS
(``ka_pop``, ``cl_pop``, ``v_pop``, ``omega_*``, ``sigma``), on both sides.

``--solver`` picks other pairs of the same posterior (``VARIANTS``): both sides in closed form
(``analytic``; Stan ``stan/population_pk_analytic.stan``), bayesbio's side centred and
Laplace-whitened against Stan's non-centred program (``rk45-whitened``, ``analytic-whitened``)
or against a centred Stan program (``rk45-centred``, ``analytic-centred``); each writes its own
``population_<variant>_N<N>`` files (``--help`` lists them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402

NAME = "population"
STAN_FILE = HERE / "stan" / "population_pk.stan"
#: the bundled theophylline model solved by RK45 (the bundled model itself now uses the closed form)
BAYESBIO_MODEL = str(HERE / "model_scripts" / "theophylline_rk45.py")
WHITENED_RK45 = str(HERE / "model_scripts" / "theophylline_rk45_whitened.py")
WHITENED_ANALYTIC = str(HERE / "model_scripts" / "theophylline_analytic_whitened.py")
#: ``--solver``: which bayesbio model script and Stan program run. ``closed_form``: both sides in closed form (the
#: bundled model as it is; its Stan twin); ``whitened``: bayesbio's side centred, NUTS in Laplace-whitened
#: coordinates (prefit="laplace"); ``stan_eta``: the Stan program's random effects, ``eta_z`` (non-centred: the
#: standard normals) or ``eta`` (centred; the fairness check of a whitened comparison). The same posterior in all.
VARIANTS = {
    "rk45": {"name": NAME, "stan_file": STAN_FILE, "bayesbio_model": BAYESBIO_MODEL},
    "analytic": {"name": f"{NAME}_analytic", "stan_file": HERE / "stan" / "population_pk_analytic.stan",
                 "bayesbio_model": "theophylline", "closed_form": True},
    "rk45-whitened": {"name": f"{NAME}_whitened", "stan_file": STAN_FILE, "bayesbio_model": WHITENED_RK45,
                      "whitened": True},
    "rk45-centred": {"name": f"{NAME}_centred", "stan_file": HERE / "stan" / "population_pk_centred.stan",
                     "bayesbio_model": WHITENED_RK45, "whitened": True, "stan_eta": "eta"},
    "analytic-whitened": {"name": f"{NAME}_analytic_whitened",
                          "stan_file": HERE / "stan" / "population_pk_analytic.stan",
                          "bayesbio_model": WHITENED_ANALYTIC, "closed_form": True, "whitened": True},
    "analytic-centred": {"name": f"{NAME}_analytic_centred",
                         "stan_file": HERE / "stan" / "population_pk_analytic_centred.stan",
                         "bayesbio_model": WHITENED_ANALYTIC, "closed_form": True, "whitened": True,
                         "stan_eta": "eta"},
}
for _v in VARIANTS.values():
    _v.setdefault("closed_form", False)
    _v.setdefault("whitened", False)
    _v.setdefault("stan_eta", "eta_z")
PARAMS = ["ka_pop", "cl_pop", "v_pop", "omega_ka", "omega_cl", "omega_v", "sigma"]
# the tolerances of model_scripts/theophylline_rk45.py (make_model("rk45", rtol=1e-6, atol=1e-6, max_steps=5000))
RTOL, ATOL, MAX_STEPS = 1e-6, 1e-6, 5000
FULL_SIZES = (10, 100, 1000, 10000)
QUICK_SIZES = (10, 100, 1000)
DATA_SEED = 20240611

COLUMNS = [
    ("N patients", "n_patients", "d"),
    ("side", "side", ""),
    ("chains × warm-up × draws", "run_length", ""),
    ("pre-fit s", "prefit_seconds", ".1f"),
    ("warm-up s", "warmup_seconds", ".1f"),
    ("sampling s", "sampling_seconds", ".1f"),
    ("min bulk ESS", "min_ess_bulk", ".0f"),
    ("max R-hat", "max_r_hat", ".3f"),
    ("s per ESS (sampling)", "seconds_per_ess", ".3g"),
    ("ESS/s (sampling)", "ess_per_second", ".3g"),
    ("bayesbio / Stan ESS/s", "speedup", ".3g"),
    ("end-to-end s", "end_to_end_seconds", ".0f"),
    ("ESS/s (end to end)", "ess_per_end_to_end_second", ".3g"),
    ("bayesbio / Stan (end to end)", "speedup_end_to_end", ".3g"),
    ("Stan metric", "stan_metric", ""),
    ("gradient evals", "gradient_evaluations", "d"),
    ("one gradient ms", "one_gradient_ms", ".3g"),
    ("divergences", "divergences", "d"),
    ("machine", "machine", ""),
    ("run date", "run_date", ""),
    ("commit", "git_commit", ""),
]


def stan_data(table) -> dict:
    """Stan data from the same table the bayesbio model reads (one source for both sides)."""
    import numpy as np

    table = table.sort_values(["subject", "time_h"], kind="stable")
    subjects = table["subject"].to_numpy()
    _, first, counts = np.unique(subjects, return_index=True, return_counts=True)
    order = np.argsort(first)
    first, counts = first[order], counts[order]
    per_patient = table.groupby("subject", sort=False).first()
    return {
        "P": int(len(first)),
        "N": int(len(table)),
        "start": [int(s) + 1 for s in first],
        "len": [int(c) for c in counts],
        "time": [float(t) for t in table["time_h"]],
        "conc": [float(c) for c in table["conc_mg_per_L"]],
        "dose": [float(d) for d in (per_patient["dose_mg_per_kg"] * per_patient["weight_kg"])],
        "rtol": RTOL,
        "atol": ATOL,
        "max_num_steps": MAX_STEPS,
    }


def simulate(n_patients: int, folder: Path) -> tuple[Path, dict]:
    import jax

    jax.config.update("jax_enable_x64", True)
    from bayesbio.models.theophylline import simulate_table

    table = simulate_table(n_patients, seed=DATA_SEED)
    path = folder / f"population_N{n_patients}.csv"
    table.to_csv(path, index=False)
    return path, stan_data(table)


def bayesbio_chain_starts(data_path: Path, chains: int, seed: int, model: str = BAYESBIO_MODEL,
                          random_effects: str = "eta_z") -> list[dict]:
    """The constrained points where bayesbio's chains start, one dict per chain, for Stan's ``init``.

    Reproduces the start of ``bb.sample_nuts(model, data_path, chains=chains,
    seed=seed)``: the model's pre-fit (its ``nuts_prefit``, ``"svi"`` or ``"laplace"``) with the same random stream,
    then the same per-chain draw (or fall-back) that its chains start from. Stan's interface
    takes initial values but no initial metric, so the Stan side starts at the same points with
    its own unit metric. ``random_effects`` names the Stan program's random-effect matrix: ``"eta_z"``
    (non-centred: the standard normals) or ``"eta"`` (centred: the random effects themselves).
    """
    if random_effects not in ("eta_z", "eta"):
        raise ValueError(f"random_effects: expected 'eta_z' or 'eta', got {random_effects!r}")
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    from bayesbio.infer import nuts
    from bayesbio.infer._common import FailureLog, prepare

    prepared = prepare(model, str(data_path))
    prefit = prepared.spec.prefit
    if prefit not in ("svi", "laplace"):
        raise SystemExit(f"{model} sets nuts_prefit = {prefit!r}, not 'svi' or 'laplace': update this benchmark")
    sampler = nuts._Sampler(
        prepared, log=FailureLog(), target_accept=common.TARGET_ACCEPT, dense_mass=False,
        max_tree_depth=common.MAX_TREE_DEPTH, warmup=1,
        init_strategy=prepared.spec.init_strategy or nuts.init_to_uniform(radius=2.0),
    )
    key = jax.random.PRNGKey(seed)
    fitted = nuts._run_prefit(sampler, key, chains, prefit)
    states, _ = jax.device_get(sampler.initial_states(key, chains, prefit=fitted))
    z = sampler.sites(states.z)  # whitened coordinates (prefit="laplace") -> the model's sites
    constrain = sampler.postprocess_gen(prepared.data)
    starts = []
    for c in range(chains):
        point = constrain(jax.tree.map(lambda x: x[c], z))
        omega = np.array([point[f"omega_{k}"] for k in ("ka", "cl", "v")])
        if random_effects == "eta_z" and "eta_z" not in point:  # centred model, non-centred Stan: eta / omega
            point = dict(point, eta_z=np.asarray(point["eta"]) / omega)
        if random_effects == "eta" and "eta" not in point:  # non-centred model, centred Stan: omega * eta_z
            point = dict(point, eta=np.asarray(point["eta_z"]) * omega)
        starts.append({name: np.asarray(point[name]).tolist() for name in [*PARAMS, random_effects]})
    return starts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_arguments(p)
    p.add_argument("--sizes", default=None, help="comma-separated numbers of patients (default 10,100,1000,10000; --quick: 10,100,1000)")
    p.add_argument("--stan-max-n", type=int, default=1000, help="run Stan only up to this many patients (default 1000)")
    p.add_argument(
        "--stan-start", choices=["bayesbio", "stan"], default="bayesbio",
        help="bayesbio (default): Stan's chains start at the points bayesbio's chains start from (its "
        "pre-fit draws); stan: Stan's own uniform(-2, 2) start on the unconstrained scale",
    )
    p.add_argument(
        "--solver", choices=sorted(VARIANTS), default="rk45",
        help="rk45 (default): both sides solve the ODE (bayesbio's fused RK45, Stan's ode_rk45_tol); analytic: "
        "both sides in closed form (the bundled model, stan/population_pk_analytic.stan); rk45-whitened: as rk45, "
        "bayesbio's side centred with prefit='laplace' (model_scripts/theophylline_rk45_whitened.py); rk45-centred: "
        "as rk45-whitened, Stan's program centred too (stan/population_pk_centred.stan); analytic-whitened, "
        "analytic-centred: the same pairs in closed form. Results: "
        + ", ".join(f"{k} {v['name']}_N<N>" for k, v in VARIANTS.items()) + " (.json/.md), and a summary without _N<N>",
    )
    p.add_argument(
        "--summary-only", action="store_true",
        help="run nothing: rewrite the summary (population.json/.md) from the per-N results already in --out-dir",
    )
    return p


def _run_length(settings) -> str | None:
    keys = ("chains", "warmup", "samples")
    if any(settings.get(k) is None for k in keys):
        return None  # an old result without its run length: the row's column stays empty
    return " × ".join(str(settings[k]) for k in keys)


def _run_on(result) -> dict:
    """CPU model, date and run length of one per-N result (the summary merges runs from different
    sessions, and of different lengths)."""
    return {"machine": (result.get("machine") or {}).get("cpu_model") or "unknown CPU",
            "run_date": str(result.get("created_at", ""))[:10] or "undated",
            "run_length": _run_length(result.get("settings") or {}),
            # runs before commit 6ae2c54 did not record it
            "git_commit": (result.get("machine") or {}).get("git_commit") or "not recorded"}


def _side_row(n, side, res, params, run_on=None, warmup=None):
    if not res:
        return None
    diag = res.get("diagnostics") or {}
    ess, samp = diag.get("min_ess_bulk"), res.get("sampling_seconds")
    e2e = res.get("end_to_end_seconds")
    stan_metric = None
    if side == "Stan" and warmup is not None:
        # a short warm-up run without explicit windows adapted no metric (stan_side.adaptation_windows)
        short = bool(common.adaptation_windows(warmup))
        stan_metric = "unit (not adapted)" if short and not res.get("adaptation_windows") else "adapted"
    return {
        "n_patients": n,
        "side": side,
        "prefit_seconds": res.get("prefit_seconds"),
        "warmup_seconds": res.get("warmup_seconds"),
        "sampling_seconds": samp,
        "min_ess_bulk": ess,
        "max_r_hat": diag.get("max_r_hat"),
        "seconds_per_ess": samp / ess if ess and samp else None,
        "ess_per_second": ess / samp if ess and samp else None,
        "end_to_end_seconds": e2e,
        "ess_per_end_to_end_second": ess / e2e if ess and e2e else None,
        "stan_metric": stan_metric,
        "gradient_evaluations": res.get("gradient_evaluations"),
        "one_gradient_ms": res["one_gradient_seconds"] * 1e3 if res.get("one_gradient_seconds") else None,
        "divergences": res.get("divergences"),
        **(run_on or {}),
    }


def render(result) -> str:
    s = result["settings"]
    lines = [f"# {result['title']}", ""]
    lengths = {row["run_length"] for row in result["table"] if row.get("run_length")}
    if result.get("quick"):
        lines += ["> **Quick run** (short chains, possibly on a busy machine): the numbers show that the "
                  "harness works and the trend; they are not the final figures.", ""]
    lines += [
        (f"{next(iter(lengths)) if lengths else _run_length(s)} (chains × warm-up × draws) per run"
         if len(lengths) <= 1 else
         "Run lengths differ between sizes (column \"chains × warm-up × draws\"; the bayesbio/Stan ratios are "
         "always taken within one run)") + f", seed {s['seed']}; "
        f"bayesbio chain method `{s['chain_method']}`; Stan chains concurrent. ESS: minimum bulk ESS over the "
        f"population parameters {', '.join(PARAMS)}. Machine of the latest run in this summary: "
        f"{result['machine'].get('cpu_model')}, {result['machine'].get('cpu_count')} logical CPUs, load average "
        f"at start {', '.join(f'{x:.1f}' for x in result['machine'].get('loadavg_at_start', []))}.",
        "",
        common.markdown_table(result["table"], COLUMNS),
        "",
    ]
    machines = {row["machine"] for row in result["table"] if row.get("machine")}
    if len(machines) > 1:
        lines += [
            f"**The rows come from runs on {len(machines)} different machines** (columns \"machine\" and \"run date\": "
            "the per-N results of separate sessions are merged). Compare seconds only between rows of one "
            "machine; the bayesbio/Stan ratio is always taken within one run.",
            "",
        ]
    lines += [
        f"Per-N details (start-up, posterior agreement, versions): `{result['benchmark']}_N<N>" + ("_quick" if result.get("quick") else "")
        + ".md`. bayesbio's one-gradient time is measured inside a compiled loop (one chain); Stan's is an upper "
        "bound (sampling time / leapfrog steps).",
        "",
    ]
    lines += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parser().parse_args(argv)
    variant = VARIANTS[args.solver]
    name = variant["name"]
    sizes = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else (QUICK_SIZES if args.quick else FULL_SIZES)
    size = common.run_size(args)
    whitened, closed = variant["whitened"], variant["closed_form"]
    stan_centred = variant["stan_eta"] == "eta"
    title_suffix = ((", both in closed form" if closed else "")
                    + (f"; bayesbio centred + whitened, Stan {'centred' if stan_centred else 'non-centred'}"
                       if whitened else ""))
    stan_file = f"`stan/{Path(variant['stan_file']).name}`"
    if whitened:  # (only the whitened variants name their script and Stan's parameterisation)
        stan_program = (f"its centred program ({stan_file}: `eta ~ normal(0, omega)` sampled directly, like "
                        "bayesbio's side) with its diagonal metric" if stan_centred else
                        f"its non-centred program ({stan_file}) with its diagonal metric, as in the plain "
                        f"`{'analytic' if closed else 'rk45'}` comparison")
        bb_script = f"model_scripts/{Path(variant['bayesbio_model']).name}"
    notes = [
        "Same posterior on both sides: the priors, likelihood and non-centred random effects of "
        "`models/theophylline.py`, and the same simulated table (Stan data built from it)."
        if not whitened else
        "Same posterior on both sides (priors, likelihood and simulated table of `models/theophylline.py`), in "
        "different coordinates: bayesbio samples the centred random effects "
        f"(`make_model(\"{'analytic' if closed else 'rk45'}\", centered=True)`, `{bb_script}`) "
        "in coordinates whitened by the per-patient block Hessian at its mean-field pre-fit's mean "
        f"(`prefit=\"laplace\"`, `bayesbio/infer/whiten.py`); Stan samples {stan_program}.",
        (f"ODE: bayesbio's fused RK45 with forward sensitivities (`solve_population`, all patients in one vmapped "
         f"solve; `model_scripts/theophylline_rk45.py`); Stan `ode_rk45_tol` patient by patient; rtol {RTOL:g}, "
         f"atol {ATOL:g}, max steps {MAX_STEPS} (Stan counts steps between output times)."
         + (f" bayesbio's script here: `{bb_script}`, the same solve." if whitened else ""))
        if not closed else
        ("Closed form on both sides: bayesbio's " + (f"`{bb_script}`" if whitened else "bundled model")
         + " (`solve_population(..., solver=\"analytic\")`, all patients in one vmapped call); Stan "
         f"{stan_file}, the textbook one-compartment formula vectorised over all observations."),
        f"Data: `simulate_table(N, seed={DATA_SEED})` from `models/theophylline.py` (nlmixr2 Theoph estimates as "
        "truth, 4 mg/kg oral dose, 6–10 jittered samples per patient between 0.25 and 24 h).",
    ]
    if args.stan_start == "bayesbio":
        notes.append(
            "Start: both sides' chains start at the same points, bayesbio's (the model's pre-fit draws, "
            "`bayesbio_chain_starts`"
            + ("; for Stan's non-centred program `eta_z = eta / omega`). "
               if whitened and not stan_centred else "). ")
            + ("bayesbio's warm-up also starts from the pre-fit's variances as its inverse metric"
               if not whitened else
               "bayesbio's warm-up starts from the unit metric in its whitened coordinates")
            + "; PyStan 3 takes no initial metric, so Stan's warm-up starts from the unit metric, as by default. "
            "The pre-fit's seconds are in bayesbio's build time (and its own column), not in warm-up or sampling."
        )
    else:
        notes.append("Start: each side's own (Stan: uniform(-2, 2) on the unconstrained scale; bayesbio: the model's "
                     "pre-fit draws).")
    short_warmup_note = (
        "Warm-up under 150 iterations: Stan gets its adaptation windows explicitly (15%/75%/10% of the warm-up, "
        "as NumPyro's schedule for bayesbio), since with its default buffers Stan 2.35 adapts no metric at all "
        "(`stan_side.adaptation_windows`). Results created before 2026-12-06 lack this and ran Stan on the unit "
        "metric; each per-N file says which applies."
    )
    if common.adaptation_windows(size["warmup"]):
        notes.append(short_warmup_note)
    def summarise():
        # this run's sizes, plus per-N results of earlier runs with the same seed and start (any run length)
        # (e.g. Stan's side of small N and bayesbio's of large N run separately); the others are left out
        merged = dict(runs)
        for n in FULL_SIZES:
            path = Path(args.out_dir) / f"{name}_N{n}{'_quick' if args.quick else ''}.json"
            if n in merged or not path.exists():
                continue
            old = json.loads(path.read_text())
            # run lengths may differ between sizes (each row names its own); seed and start may not
            same = old["settings"].get("seed") == args.seed
            same = same and old["settings"].get("stan_start", "stan") == args.stan_start
            # results from before the solver was recorded are plain rk45 ones
            same = same and old["settings"].get("solver", "rk45") == args.solver
            if same:
                merged[n] = old
        table, rows = [], []
        for n, res in sorted(merged.items()):
            run_on = _run_on(res)
            bb_row = _side_row(n, "bayesbio", res.get("bayesbio_cold"), PARAMS, run_on)
            st_row = _side_row(n, "Stan", res.get("stan"), PARAMS, run_on, warmup=res["settings"].get("warmup"))
            if bb_row and st_row and bb_row["ess_per_second"] and st_row["ess_per_second"]:
                bb_row["speedup"] = bb_row["ess_per_second"] / st_row["ess_per_second"]
            if bb_row and st_row and bb_row["ess_per_end_to_end_second"] and st_row["ess_per_end_to_end_second"]:
                bb_row["speedup_end_to_end"] = bb_row["ess_per_end_to_end_second"] / st_row["ess_per_end_to_end_second"]
            table += [r for r in (st_row, bb_row) if r]
            for r in res["rows"]:
                rows.append(dict(r, run=f"N={n}: {r['run']}"))
        stem = f"{name}_quick" if args.quick else name
        result = {
            "benchmark": name,
            "title": "Population PK scaling (theophylline model, simulated patients): bayesbio vs Stan"
            + title_suffix,
            "quick": bool(args.quick),
            "settings": {**size, "run_lengths": {str(n): _run_length(r["settings"]) for n, r in sorted(merged.items())},
                         "seed": args.seed, "chain_method": args.chain_method, "sizes": sorted(merged),
                         "stan_max_n": args.stan_max_n, "stan_start": args.stan_start},
            # the machine of the latest merged run (each row names its own: columns "machine", "run date")
            "machine": max(merged.values(), key=lambda r: str(r.get("created_at", "")))["machine"]
            if merged else common.machine_info(),
            "table": table,
            "rows": rows,
            # the note on short warm-ups follows the merged rows, not this command's warm-up
            "notes": [x for x in notes if x != short_warmup_note] + (
                [short_warmup_note] if any(common.adaptation_windows(r["settings"].get("warmup") or 0)
                                           for r in merged.values()) else []),
        }
        common.write_json_atomic(Path(args.out_dir) / f"{stem}.json", result)
        md = common.write_text_atomic(Path(args.out_dir) / f"{stem}.md", render(result))
        print(f"wrote {md}", flush=True)
        return result

    runs = {}
    if args.summary_only:
        return summarise()
    with tempfile.TemporaryDirectory(prefix="bayesbio-population-bench-") as tmp:
        for n in sizes:
            data_path, sdata = simulate(n, Path(tmp))
            if closed:  # the closed form takes no solver settings
                sdata = {k: v for k, v in sdata.items() if k not in ("rtol", "atol", "max_num_steps")}
            sides = [s.strip() for s in args.sides.split(",") if s.strip()]
            if n > args.stan_max_n:
                sides = [s for s in sides if s != "stan"]
            if not sides:
                continue
            sub = argparse.Namespace(**vars(args))
            sub.sides = ",".join(sides)
            stan_init = None
            if "stan" in sides and args.stan_start == "bayesbio":
                stan_init = bayesbio_chain_starts(data_path, size["chains"], args.seed, variant["bayesbio_model"],
                                                  variant["stan_eta"])
            runs[n] = common.run_benchmark(
                sub,
                name=f"{name}_N{n}",
                title=f"Population PK, N = {n} patients: bayesbio vs Stan" + title_suffix,
                bayesbio_model=variant["bayesbio_model"],
                bayesbio_data=str(data_path),
                stan_file=variant["stan_file"],
                stan_data=sdata,
                params=PARAMS,
                notes=notes,
                extra_settings={"n_patients": n, "solver": args.solver, "rtol": RTOL, "atol": ATOL, "max_steps": MAX_STEPS,
                                "stan_start": args.stan_start},
                stan_init=stan_init,
            )
            summarise()  # after every N, so a run stopped later keeps the sizes done so far
    result = summarise()
    print(render(result))
    return result


if __name__ == "__main__":
    main()
