"""run_sbc: prior draws -> simulated data -> NUTS fits -> rank statistics and their tests."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bayesbio.errors import OptionError
from bayesbio.infer._common import check_seed, prepare, show_progress, software_versions
from bayesbio.sbc import stats
from bayesbio.sbc.checkpoint import check_draws, code_digest, load_progress, save_progress
from bayesbio.sbc.fit import BatchFitter
from bayesbio.sbc.processes import FitterRecipe, check_sendable
from bayesbio.sbc.settings import SBCSettings, resolve_settings
from bayesbio.sbc.simulate import simulate

__all__ = ["SBCResult", "run_sbc"]

#: Simultaneous coverage of the ECDF band drawn in the plots and reported per parameter.
ECDF_LEVEL = 0.95


@dataclass
class SBCResult:
    """Ranks of every scalar parameter and their uniformity tests.

    ``ranks[label]`` has one rank (``0 .. n_draws``) per replication; ``p_values`` are the
    chi-square uniformity p-values, ``p_holm`` the Holm-adjusted ones. ``passed`` is true when
    every adjusted p-value is at least ``settings.alpha``.
    """

    model: str
    settings: SBCSettings
    seed: int
    n_draws: int
    ranks: dict[str, np.ndarray]
    chi_square: dict[str, float]
    dof: int
    p_values: dict[str, float]
    p_holm: dict[str, float]
    ecdf_in_band: dict[str, bool]
    band: stats.EcdfBand
    prior_attempts: int
    prior_rejected: int
    divergences: np.ndarray
    mean_steps: np.ndarray
    init_failures: int
    timings: dict[str, float]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(min(self.p_holm.values()) >= self.settings.alpha)

    def table(self):
        """One row per scalar parameter: chi-square statistic, p-value, Holm p, ECDF in band."""
        import pandas as pd

        return pd.DataFrame(
            {
                "chi_square": self.chi_square,
                "p_value": self.p_values,
                "p_holm": self.p_holm,
                "ecdf_in_band": self.ecdf_in_band,
            }
        ).rename_axis("parameter")

    def write(self, out, *, force: bool = False, command: str | None = None):
        """Write ``sbc.json``, ``summary.md``, ``ranks.png`` and ``ecdf_difference.png`` into ``out``."""
        from bayesbio.sbc.output import write_results

        return write_results(self, out, force=force, command=command)


def _labels(name: str, shape: tuple, dims: dict, coords: dict) -> list[tuple[tuple, str]]:
    if not shape:
        return [((), name)]
    names = dims.get(name, [])
    out = []
    for index in np.ndindex(*shape):
        parts = []
        for axis, i in enumerate(index):
            dim = names[axis] if axis < len(names) else None
            values = coords.get(dim) if dim is not None else None
            parts.append(str(values[i]) if values is not None and i < len(values) else str(i))
        out.append((index, f"{name}[{', '.join(parts)}]"))
    return out


def run_sbc(model, data=None, *, seed: int = 0, progress: bool | None = None, checkpoint=None,
            resume: bool = False, force: bool = False, workers: int = 1, parallel: str = "threads",
            **settings) -> SBCResult:
    """Simulation-based calibration of NUTS on a model (Talts et al. 2018).

    For each of ``reps`` replications: draw the parameters from the prior (restricted to
    where the model can be solved, see :mod:`bayesbio.sbc.simulate`), simulate data on the
    model's design, fit it with NUTS and rank every true scalar parameter among the thinned
    posterior draws. Calibrated inference makes each parameter's ranks uniform; the chi-square
    test of binned ranks checks that, with the Holm correction over parameters.

    Parameters
    ----------
    model : str, ModelSpec or callable
        As for :func:`bayesbio.sample_nuts` (a bare function needs ``data``).
    data : dict, path or None
        The design (``None``: the model's bundled data). Its observed values are replaced by
        simulated ones; its missing records (NaN) stay missing.
    seed : int
        Seed of every random choice.
    progress : bool, optional
        Progress bar over replications (default: only on an interactive terminal).
    checkpoint : path, optional
        File that keeps the finished fits after every batch (written atomically; see
        :mod:`bayesbio.sbc.checkpoint`). The CLI keeps it in the output folder until the results
        are written.
    resume : bool
        Continue from ``checkpoint``: its replications are not refitted, and the result is
        bit-identical (same machine) to an uninterrupted run. The checkpoint must come from the
        same model (and model code), data, seed, settings, precision, backend and package
        versions; anything else is refused with an error naming what differs.
    force : bool
        Replace an existing ``checkpoint`` file when not resuming (otherwise refused: it holds
        an unfinished run's fits). It is replaced at the first save, not before.
    workers : int
        Batches fitted at once, each by its own thread through the one compiled program (or by
        its own process, see ``parallel``): on a CPU with several cores, XLA runs each thread's
        fit on its own core (use up to one worker per core). A replication's fit is the same whichever worker fits it, so this
        changes the wall time only, and a run may be resumed with a different number of
        workers. Batches finish in any order; the checkpoint keeps each one as it finishes.
        Default: one.
    parallel : {"threads", "processes"}
        How several ``workers`` run: threads through the one compiled program (default), or
        spawned worker processes that each load the model and compile their own copy of the same
        program (:mod:`bayesbio.sbc.processes`: a start-up cost per process, nothing shared
        between fits; CPU only; the model and data must be picklable, e.g. a bundled model's
        name or a script's path, and a script calling this needs an ``if __name__ ==
        "__main__":`` guard). On the same machine with the same JAX settings the fits are the
        same either way.
    **settings
        Any field of :class:`~bayesbio.sbc.settings.SBCSettings` (``reps``, ``warmup``,
        ``draws``, ``thin``, ``chains``, ``batch``, ``params``, ...), overriding the model
        script's ``sbc`` dict, which overrides the defaults.

    Returns
    -------
    SBCResult
        Call ``result.write(out_dir)`` for the JSON, table and plots.

    Examples
    --------
    >>> result = bb.run_sbc("lotka_volterra", reps=200)      # doctest: +SKIP
    >>> result.passed, result.table()                         # doctest: +SKIP
    """
    seed = check_seed(seed)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise OptionError(f"workers: expected a positive integer (batches fitted at once); got {workers!r}")
    if parallel not in ("threads", "processes"):
        raise OptionError(f"parallel: expected 'threads' or 'processes'; got {parallel!r}")
    if parallel == "processes" and workers > 1:
        check_sendable(model, data)
    t0 = time.perf_counter()
    prepared = prepare(model, data)
    s = resolve_settings(prepared.spec.sbc, settings, model_name=prepared.spec.name)
    if s.prefit is None:  # as `bayesbio fit`: the model script's pre-fit (recorded in the results)
        s = dataclasses.replace(s, prefit=prepared.spec.prefit or "none")
    if s.prefit not in ("none", "svi", "map"):
        raise OptionError(f"SBC of model '{prepared.spec.name}': its pre-fit '{s.prefit}' does not run inside SBC's "
                          "compiled replications yet; pass prefit='svi' (or 'none' or 'map')")
    params = list(s.params) if s.params is not None else list(prepared.latent)
    unknown = [p for p in params if p not in prepared.latent]
    if unknown:
        raise OptionError(
            f"SBC setting 'params': {unknown} are not latent variables of '{prepared.spec.name}'; "
            f"expected some of {prepared.latent}"
        )
    # checked before the (possibly long) prior simulation
    identity = {"model": prepared.spec.name, "model_code": code_digest(prepared.spec.model),
                "settings": s.as_dict(), "seed": seed, "data_fingerprint": prepared.fingerprint,
                "x64": bool(jax.config.jax_enable_x64), "backend": jax.default_backend(),
                "versions": software_versions()}
    if resume and checkpoint is None:
        raise OptionError("resume: needs the checkpoint file to resume from (checkpoint=...)")
    if checkpoint is not None and not resume and not force and Path(checkpoint).exists():
        raise OptionError(f"checkpoint: '{checkpoint}' exists (an unfinished SBC run's fits); pass resume=True "
                          "to continue it or force=True to replace it")
    done, seconds_before = (load_progress(checkpoint, identity) if resume else (None, 0.0))
    n_done = 0 if done is None else len(done.divergences)

    key_prior, key_fit = jax.random.split(jax.random.PRNGKey(seed))
    # a start at the truth needs every latent site's true value, not only the tested ones
    simulated = list(prepared.latent) if s.init == "truth" else params
    sim = simulate(prepared, key_prior, s.reps, params=simulated, max_attempts=s.max_prior_attempts)
    t_sim = time.perf_counter()
    if done is not None:
        check_draws(checkpoint, done, {k: (s.chains * s.draws,) + sim.params[k].shape[1:] for k in params})
    example_obs = {k: v[0] for k, v in sim.observations.items()}
    fitter = BatchFitter(prepared, list(sim.observations), params, s, example_obs)
    recipe = None
    if parallel == "processes" and workers > 1:
        recipe = FitterRecipe(model, data, s, params, list(sim.observations), example_obs,
                              fingerprint=prepared.fingerprint, model_code=identity["model_code"])
    bar = None
    if show_progress(progress):
        from tqdm.auto import tqdm

        bar = tqdm(total=s.reps, initial=n_done, desc=f"SBC {prepared.spec.name}", unit="fit")

    def save(fits_so_far):
        save_progress(checkpoint, identity, fits_so_far, seconds_before + time.perf_counter() - t_sim)

    fits = fitter.fit(jax.random.split(key_fit, s.reps), sim.observations,
                      truths=sim.params if s.init == "truth" else None,
                      on_batch=bar.update if bar is not None else None, done=done,
                      on_progress=save if checkpoint is not None else None, workers=int(workers),
                      processes=recipe)
    if bar is not None:
        bar.close()
    t_fit = time.perf_counter()

    n_draws = s.chains * s.draws
    all_ranks: dict[str, np.ndarray] = {}
    for name in params:
        truth, draws = sim.params[name], fits.draws[name]
        for index, label in _labels(name, truth.shape[1:], prepared.dims, prepared.coords):
            sel = (slice(None),) + index
            all_ranks[label] = stats.ranks(truth[sel], draws[(slice(None), slice(None)) + index])
    tests = {k: stats.chi_square_uniformity(r, n_draws, s.bins) for k, r in all_ranks.items()}
    labels = list(all_ranks)
    adjusted = stats.holm([tests[k][2] for k in labels])
    band = stats.ecdf_band(s.reps, n_draws, level=ECDF_LEVEL)
    return SBCResult(
        model=prepared.spec.name,
        settings=s,
        seed=seed,
        n_draws=n_draws,
        ranks=all_ranks,
        chi_square={k: tests[k][0] for k in labels},
        dof=next(iter(tests.values()))[1],
        p_values={k: tests[k][2] for k in labels},
        p_holm=dict(zip(labels, (float(p) for p in adjusted))),
        ecdf_in_band={k: stats.ecdf_in_band(r, n_draws, band) for k, r in all_ranks.items()},
        band=band,
        prior_attempts=sim.attempts,
        prior_rejected=sim.rejected,
        divergences=fits.divergences,
        mean_steps=fits.mean_steps,
        init_failures=int(np.sum(~fits.init_ok)),
        timings={"simulate_seconds": t_sim - t0, "fit_seconds": seconds_before + t_fit - t_sim,
                 "total_seconds": seconds_before + time.perf_counter() - t0,
                 **({"resumed_after_replications": n_done} if resume else {})},
        metadata={"data_fingerprint": prepared.fingerprint, "model_source": prepared.spec.source,
                  "versions": identity["versions"], "x64": identity["x64"],
                  "workers": int(workers), "parallel": parallel if workers > 1 else "none"},
    )
