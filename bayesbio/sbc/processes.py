"""Fit SBC batches in worker processes instead of threads.

Worker threads share one process and one compiled program; worker processes each load the
model, build their own :class:`~bayesbio.sbc.fit.BatchFitter` and compile it once. That costs
a start-up (imports, model preparation, compilation) per process, but nothing is shared between
fits running at once: the option for a model whose fits misbehave when threads run them together
(``benchmarks/results/sbc/README.md`` describes one whose resident memory grows without bound
with two threads and stays flat in one). Each process compiles the same program from the same
model, data and settings, so a replication's fit is the same as in the parent or any thread
(``tests/test_sbc_workers.py``).

Processes are started with ``spawn`` (a fresh interpreter: no copy of the parent's JAX
runtime or its threads), so the model must be picklable: a bundled model's name, a script's
path, a :class:`~bayesbio.ModelSpec` of such a script, or a function defined at module level.
"""

from __future__ import annotations

import multiprocessing
import pickle
from typing import Any, Callable, Iterable, Iterator

from bayesbio.errors import OptionError

__all__ = ["FitterRecipe", "as_finished_in_processes"]

# the fitter of this worker process (built once by _start_worker), or the error building it raised
_FITTER: Any = None
_START_ERROR: BaseException | None = None


class FitterRecipe:
    """What a worker process needs to build the parent's fitter: the model and data as the user
    gave them, and the resolved settings, tested parameters, observed sites and JAX precision.
    Calling it builds the fitter (in whatever process calls it)."""

    def __init__(self, model, data, settings, params: list[str], observed: list[str],
                 example_obs: dict, x64: bool):
        self.model, self.data, self.settings = model, data, settings
        self.params, self.observed, self.example_obs, self.x64 = list(params), list(observed), example_obs, x64

    def check_picklable(self) -> None:
        """Raise :class:`~bayesbio.errors.OptionError` naming what cannot be sent to a process."""
        for field, value in (("model", self.model), ("data", self.data)):
            try:
                pickle.dumps(value)
            except Exception as exc:  # noqa: BLE001 - any pickling failure means the same to the user
                raise OptionError(
                    f"parallel='processes': the {field} cannot be sent to a worker process ({type(exc).__name__}: "
                    f"{exc}); expected a bundled model's name or a model script's path (data: a dict of arrays "
                    "or a path), or use parallel='threads'") from None

    def __call__(self):
        import jax

        jax.config.update("jax_enable_x64", self.x64)
        from bayesbio.infer._common import prepare
        from bayesbio.sbc.fit import BatchFitter

        prepared = prepare(self.model, self.data)
        return BatchFitter(prepared, self.observed, self.params, self.settings, self.example_obs)


def _start_worker(recipe: bytes) -> None:
    global _FITTER, _START_ERROR
    try:  # unpickled here, not by multiprocessing: a failure is reported, not respawned forever
        _FITTER = pickle.loads(recipe)()
    except BaseException as exc:  # noqa: BLE001 - reported with the first batch (a pool would respawn forever)
        _START_ERROR = exc


def _fit_in_worker(task):
    start, args = task
    if _START_ERROR is not None:
        raise _START_ERROR
    return start, _FITTER.fit_batch(*args)


def as_finished_in_processes(recipe: Callable[[], Any], inputs: Callable[[int], tuple], starts: Iterable[int],
                             workers: int) -> Iterator[tuple[int, Any]]:
    """Yield ``(start, fitter.fit_batch(*inputs(start)))`` for each of ``starts`` as the batches
    finish, fitted by ``workers`` spawned processes that each build their fitter with
    ``recipe()``. The first error of any batch is raised here; leaving the loop (an error, an
    interrupt, an abandoned generator) terminates the processes at once."""
    starts = list(starts)
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(processes=min(workers, len(starts)), initializer=_start_worker,
                        initargs=(pickle.dumps(recipe),))
    try:
        yield from pool.imap_unordered(_fit_in_worker, ((start, inputs(start)) for start in starts), chunksize=1)
        pool.close()
    finally:
        pool.terminate()
        pool.join()
