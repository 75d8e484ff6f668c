"""Run every side-by-side benchmark (bayesbio vs Stan) — the target of ``make bench``.

    python benchmarks/run.py              # full length: 4 chains x 1000 warm-up x 1000 draws
    python benchmarks/run.py --quick      # smoke run of the harness (tiny chains, *_quick files)
    python benchmarks/run.py --only lotka_volterra

Each benchmark writes ``<out-dir>/<name>[_quick].json`` and ``.md`` (default out-dir
``benchmarks/results``); this script also writes ``<out-dir>/summary[_quick].md`` with the main
table of each. Options other than ``--only`` are passed to every benchmark (see
``benchmarks/README.md``).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import backward_uq  # noqa: E402
import common  # noqa: E402
import lotka_volterra  # noqa: E402
import population  # noqa: E402
import reaction_diffusion  # noqa: E402
import stiff  # noqa: E402

BENCHMARKS = {"lotka_volterra": lotka_volterra, "population": population, "stiff": stiff, "reaction_diffusion": reaction_diffusion,
              "backward_uq": backward_uq}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_arguments(p)
    p.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated benchmarks to run (default: all of {', '.join(BENCHMARKS)})",
    )
    return p


def forwarded(args: argparse.Namespace) -> list[str]:
    argv = [
        "--seed",
        str(args.seed),
        "--chain-method",
        args.chain_method,
        "--stan-cache",
        args.stan_cache,
        "--sides",
        args.sides,
        "--grad-calls",
        str(args.grad_calls),
        "--out-dir",
        str(args.out_dir),
    ]
    for name in ("chains", "warmup", "samples"):
        if getattr(args, name) is not None:
            argv += [f"--{name}", str(getattr(args, name))]
    if args.quick:
        argv.append("--quick")
    if args.no_warm_run:
        argv.append("--no-warm-run")
    if args.no_diagonal_run:
        argv.append("--no-diagonal-run")
    return argv


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"--only: unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    results, failed = {}, []
    t0 = time.time()
    for name in names:
        try:
            results[name] = BENCHMARKS[name].main(forwarded(args))
        except Exception:  # keep going: one broken side must not hide the other benchmarks
            traceback.print_exc()
            failed.append(name)

    suffix = "_quick" if args.quick else ""
    lines = ["# Benchmarks: bayesbio vs Stan", ""]
    if args.quick:
        lines += ["> **Quick smoke run**: the numbers only show that the harness works.", ""]
    for name, result in results.items():
        lines += [
            f"## {result['title']}",
            "",
            f"Details: [{name}{suffix}.md]({name}{suffix}.md)",
            "",
            common.markdown_table(result["rows"], result.get("summary_columns", common.MAIN_COLUMNS)),
            "",
        ]
    for name in failed:
        lines += [
            f"## {name}",
            "",
            "**Failed** — see the traceback printed by `benchmarks/run.py` and "
            f"`{Path(args.out_dir) / 'logs'}`.",
            "",
        ]
    lines += [f"Total wall time of this run: {time.time() - t0:.0f} s.", ""]
    path = common.write_text_atomic(Path(args.out_dir) / f"summary{suffix}.md", "\n".join(lines))
    print(f"wrote {path}")
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
