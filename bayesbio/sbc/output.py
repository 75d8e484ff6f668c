"""Write SBC results atomically: ``sbc.json``, ``summary.md``, ``ranks.png``, ``ecdf_difference.png``.

Each file goes through :func:`bayesbio._io.write_atomic`; ``sbc.json`` is written last, so a
folder with an ``sbc.json`` holds a complete result. An existing result is never replaced
unless ``force=True``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bayesbio._io import write_atomic
from bayesbio.errors import OptionError

if TYPE_CHECKING:
    from bayesbio.sbc.run import SBCResult

__all__ = ["RESULT_FILES", "check_out_dir", "summary_markdown", "to_json", "write_results"]

RESULT_FILES = ("sbc.json", "summary.md", "ranks.png", "ecdf_difference.png")


def check_out_dir(out, *, force: bool) -> Path:
    """Refuse to overwrite an earlier result in ``out`` unless ``force``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OptionError(f"out: '{out}' exists and is not a folder; expected a folder for the SBC results")
    existing = [name for name in RESULT_FILES if (out / name).exists()]
    if existing and not force:
        raise OptionError(f"out: '{out}' already holds SBC results ({', '.join(existing)}); pass force=True "
                          "(--force) to replace them")
    return out


def to_json(result: "SBCResult", *, command: str | None = None) -> dict:
    s = result.settings
    return {
        "model": result.model,
        "passed": result.passed,
        "alpha": s.alpha,
        "correction": "holm",
        "test": f"chi-square on {s.bins} rank bins ({result.dof} degrees of freedom)",
        "seed": result.seed,
        "command": command,
        "settings": s.as_dict(),
        "n_draws": result.n_draws,
        "parameters": [
            {"name": k, "chi_square": result.chi_square[k], "p_value": result.p_values[k],
             "p_holm": result.p_holm[k], "ecdf_in_band": result.ecdf_in_band[k]}
            for k in result.ranks
        ],
        "ranks": {k: np.asarray(v).tolist() for k, v in result.ranks.items()},
        "ecdf_band": {"level": result.band.level, "gamma": result.band.gamma},
        "prior_draws": {"attempts": result.prior_attempts, "rejected": result.prior_rejected},
        "fits": {
            "divergences_total": int(np.sum(result.divergences)),
            "replications_with_divergences": int(np.sum(np.asarray(result.divergences) > 0)),
            "divergences": np.asarray(result.divergences).astype(int).tolist(),
            "mean_leapfrog_steps": np.round(np.asarray(result.mean_steps, dtype=float), 3).tolist(),
            "init_failures": result.init_failures,
        },
        "timings": result.timings,
        **result.metadata,
    }


def summary_markdown(result: "SBCResult", *, command: str | None = None) -> str:
    s = result.settings
    verdict = "PASSED" if result.passed else "FAILED"
    lines = [
        f"# SBC: {result.model}",
        "",
        f"**{verdict}** — {s.reps} replications, ranks among {result.n_draws} thinned NUTS draws "
        f"({s.chains} chain(s) x {s.warmup} warm-up + {s.draws} x thin {s.thin}); chi-square uniformity "
        f"test on {s.bins} bins, Holm-adjusted over {len(result.ranks)} parameters, pass if every "
        f"adjusted p >= {s.alpha}.",
        "",
        f"Prior draws: {result.prior_attempts} tried, {result.prior_rejected} rejected (failed solve or "
        f"non-finite data). Divergent transitions: {int(np.sum(result.divergences))} in "
        f"{int(np.sum(np.asarray(result.divergences) > 0))} of {s.reps} fits. Seed {result.seed}. "
        f"Wall time {result.timings.get('total_seconds', 0):.0f} s.",
        "",
    ]
    if s.init == "truth":
        lines += ["Chains started at each replication's true parameters (`init: truth`, an exact posterior "
                  "draw): this checks calibration at stationarity, not warm-up from a distant start.", ""]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    lines += ["| parameter | chi-square | p | Holm p | ECDF in 95% band |", "|---|---:|---:|---:|:---:|"]
    for k in result.ranks:
        lines.append(
            f"| {k} | {result.chi_square[k]:.2f} | {result.p_values[k]:.3f} | {result.p_holm[k]:.3f} | "
            f"{'yes' if result.ecdf_in_band[k] else 'no'} |"
        )
    lines += ["", "![rank histograms](ranks.png)", "", "![ECDF difference](ecdf_difference.png)", ""]
    return "\n".join(lines)


def _write_bytes(path: Path, payload: bytes) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(payload))


def write_results(result: "SBCResult", out, *, force: bool = False, command: str | None = None) -> Path:
    """Write the four result files into the folder ``out`` (created if needed); return it."""
    from bayesbio.sbc.plots import ecdf_difference_png, rank_histogram_png

    out = check_out_dir(out, force=force)
    _write_bytes(out / "ranks.png",
                 rank_histogram_png(result.ranks, result.n_draws, result.settings.bins, result.p_holm))
    _write_bytes(out / "ecdf_difference.png", ecdf_difference_png(result.ranks, result.n_draws, result.band))
    _write_bytes(out / "summary.md", summary_markdown(result, command=command).encode())
    _write_bytes(out / "sbc.json", (json.dumps(to_json(result, command=command), indent=1) + "\n").encode())
    return out
