"""Diagnostic reports: one self-contained HTML file per fitted result.

>>> idata = bb.sample_nuts("lotka_volterra")
>>> bb.report.write_report(idata, "lv_report.html")          # doctest: +SKIP

or from the command line, on a result written by ``bayesbio fit``::

    bayesbio report results/lotka_volterra.nc --out lv_report.html

The page opens offline in any browser: CSS inline, every figure an embedded PNG (data URI),
no JavaScript. It starts with a **verdict** (each failed or borderline diagnostic in plain
words, with what to do about it), then the run metadata, the ArviZ summary, sampler health
per chain (NUTS) or the ELBO trace and importance-sampling check (SVI/Laplace), trace and
rank plots, the most correlated parameter pairs, posterior predictive checks and PSIS-LOO.

Modules: :mod:`~bayesbio.report.diagnostics` (analysis: verdict and tables together, pure
functions), :mod:`~bayesbio.report.verdict` (thresholds and checks),
:mod:`~bayesbio.report.tables` (summary, chain health, components, PSIS-LOO),
:mod:`~bayesbio.report.figures` (matplotlib figures, Agg, as base64 PNG),
:mod:`~bayesbio.report.html` (page assembly).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

from bayesbio._io import write_atomic
from bayesbio.report import figures
from bayesbio.report.diagnostics import Analysis, Finding, analyse, diagnose, plot_components
from bayesbio.report.html import render

__all__ = [
    "Analysis",
    "Finding",
    "ReportWarning",
    "add_report_arguments",
    "analyse",
    "build_report",
    "cli_report",
    "diagnose",
    "report_main",
    "write_report",
]


class ReportWarning(UserWarning):
    """A part of the report (a figure, LOO) could not be produced; the rest was written."""


def _load(idata):
    if isinstance(idata, (str, os.PathLike)):
        import arviz as az

        path = Path(idata)
        if not path.is_file():
            from bayesbio.errors import OptionError

            raise OptionError(f"results file '{path}' does not exist")
        try:
            return az.from_netcdf(str(path), engine="h5netcdf")
        except Exception as exc:  # h5py/xarray raise many kinds
            from bayesbio.errors import OptionError

            raise OptionError(
                f"could not read '{path}' as an InferenceData NetCDF file: {type(exc).__name__}: {exc}"
            ) from exc
    return idata


def build_report(idata) -> tuple[str, Analysis]:
    """The report page as a string, and the :class:`Analysis` behind it.

    A figure that fails is left out and named under "Report problems" (with a
    :class:`ReportWarning`) rather than failing the whole report.
    """
    t0 = time.perf_counter()
    idata = _load(idata)
    analysis = analyse(idata)
    problems: list[str] = []

    def attempt(name, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - one bad figure must not sink the report
            message = f"{name} figure could not be drawn: {type(exc).__name__}: {exc}"
            problems.append(message)
            warnings.warn(message, ReportWarning, stacklevel=3)
            return None

    if analysis.loo_error:
        problems.append(f"PSIS-LOO could not be computed: {analysis.loo_error}")
    comps = plot_components(idata.posterior)
    n_total = sum(
        int(idata.posterior[v].size // max(1, idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]))
        for v in idata.posterior.data_vars
        if idata.posterior[v].dims[:2] == ("chain", "draw")
    )
    figs = {
        "n_components": len(comps),
        "n_components_total": n_total,
        "pair": attempt("pair", figures.pair_figure, idata, analysis.pairs, analysis.divergence_pair),
        "ppc": attempt("posterior predictive", figures.ppc_figures, idata) or [],
        "khat": attempt("Pareto-k", figures.khat_figure, analysis.loo),
    }
    if analysis.method in ("svi", "laplace"):
        figs["density"] = attempt("posterior density", figures.density_figure, idata, comps)
        figs["elbo"] = attempt("ELBO", figures.elbo_figure, idata)
    else:
        figs["trace"] = attempt("trace", figures.trace_figure, idata, comps)
        figs["rank"] = attempt("rank", figures.rank_figure, idata, comps)
        figs["energy"] = attempt("energy", figures.energy_figure, idata)
    page = render(analysis, figs, problems=problems, elapsed=time.perf_counter() - t0)
    return page, analysis


def _write_atomic(text: str, path: Path) -> Path:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return write_atomic(path, write)


def write_report(idata, path: str | os.PathLike) -> Path:
    """Write the diagnostics report of ``idata`` (an InferenceData, or the path of one saved as
    NetCDF) to ``path`` as a single self-contained HTML file; returns the path.

    The file is written to a temporary file in the same folder and renamed into place, so an
    interrupted call never leaves a partial report.
    """
    page, _ = build_report(idata)
    return _write_atomic(page, Path(path))


def cli_report(results: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Read a NetCDF result (``arviz.from_netcdf``) and write its report; ``out`` defaults to the
    results path with ``.html``. Returns the report's path."""
    results = Path(results)
    out_path = Path(out) if out else results.with_suffix(".html")
    return write_report(results, out_path)


def add_report_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``bayesbio report``: ``RESULTS.nc [--out report.html]``."""
    parser.add_argument("results", help="InferenceData NetCDF file (as written by `bayesbio fit`)")
    parser.add_argument("--out", help="output HTML path (default: RESULTS with the suffix .html)")
    return parser


def report_main(args: argparse.Namespace) -> int:
    """Run ``bayesbio report`` for parsed arguments: write the report, print the verdict."""
    t0 = time.perf_counter()
    page, analysis = build_report(args.results)
    out = Path(args.out) if args.out else Path(args.results).with_suffix(".html")
    _write_atomic(page, out)
    problems = analysis.problems
    if problems:
        print(f"{len(problems)} problem(s):")
        for f in problems:
            print(f"  - {f.check} [{f.severity}]: {f.message}")
            if f.suggestion:
                print(f"    suggestion: {f.suggestion}")
    else:
        print("No problems found.")
    size = out.stat().st_size / 1e6
    print(f"wrote {out} ({size:.2f} MB, {time.perf_counter() - t0:.1f} s)")
    return 0


def _standalone(argv=None) -> int:  # python -m bayesbio.report RESULTS.nc [--out ...]
    import matplotlib

    matplotlib.use("Agg")
    parser = add_report_arguments(argparse.ArgumentParser(prog="python -m bayesbio.report"))
    return report_main(parser.parse_args(argv))
