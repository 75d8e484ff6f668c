"""Fit SBC batches in worker processes instead of threads.

Worker threads share one process and one compiled program; worker processes each load the
model, build their own :class:`~bayesbio.sbc.fit.BatchFitter` and compile it once. That costs
a start-up (imports, model preparation, compilation) per process, but nothing is shared between
fits running at once: the option for a model whose fits misbehave when threads run them together
(``benchmarks/results/sbc/README.md`` describes one whose resident memory grows without bound
with two threads and stays flat in one). Each process copies the parent's JAX settings
(:data:`JAX_SETTINGS`) before it loads anything, then compiles the same program from the same
model, data and settings, so on the same machine a replication's fit is the same as in the
parent or any thread (``tests/test_sbc_workers.py``); a worker that loads different data or
model code than the parent (a ``load_data`` that is not deterministic, a script edited since
the run started) stops with an error instead of fitting it.

Processes are started with ``spawn`` (a fresh interpreter: no copy of the parent's JAX
runtime or its threads), on the CPU only, so the model must be picklable: a bundled model's
name, a model script's path, or a function defined at module level of an importable module (or
of a script that calls :func:`~bayesbio.run_sbc` under ``if __name__ == "__main__":``; each
worker imports that script again).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import signal
import sys
import threading
from typing import Any, Callable, Iterable, Iterator

from bayesbio.errors import DataError, ModelError, OptionError

__all__ = ["FitterRecipe", "JAX_SETTINGS", "as_finished_in_processes", "check_sendable"]

#: JAX settings a worker process copies from its parent before it unpickles the model and data
#: (precision, platform and the persistent compilation cache; environment variables such as
#: ``XLA_FLAGS`` reach the workers anyway).
JAX_SETTINGS = (
    "jax_enable_x64", "jax_platforms", "jax_default_matmul_precision", "jax_threefry_partitionable",
    "jax_default_prng_impl", "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def jax_settings() -> dict[str, Any]:
    """The parent's values of :data:`JAX_SETTINGS` (those this JAX has)."""
    import jax

    return {name: getattr(jax.config, name) for name in JAX_SETTINGS if hasattr(jax.config, name)}


def check_sendable(model, data) -> None:
    """Raise :class:`~bayesbio.errors.OptionError` unless worker processes can receive ``model``
    and ``data`` and run on this backend (checked before the prior simulation, not after it)."""
    import jax

    if jax.default_backend() != "cpu":
        raise OptionError(f"parallel='processes': worker processes run on the CPU only, but JAX's backend is "
                          f"'{jax.default_backend()}'; expected parallel='threads' (or larger batches) there")
    main = sys.modules.get("__main__")
    if getattr(model, "__module__", None) == "__main__" and not getattr(main, "__file__", None):
        raise OptionError("parallel='processes': the model is a function defined interactively (a notebook or "
                          "`python -c`), which a worker process cannot import; expected a bundled model's name, a "
                          "model script's path or a function in an importable module, or use parallel='threads'")
    for field, value in (("model", model), ("data", data)):
        try:
            pickle.dumps(value)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means the same to the user
            raise OptionError(
                f"parallel='processes': the {field} cannot be sent to a worker process ({type(exc).__name__}: "
                f"{exc}); expected a bundled model's name, a model script's path or a function in an importable "
                "module (data: a dict of arrays or a path), or use parallel='threads'") from None


class FitterRecipe:
    """What a worker process needs to build the parent's fitter: the model and data as the user
    gave them, the resolved settings, tested parameters and observed sites, and what the
    parent's preparation gave (data fingerprint, model code digest), which the worker's must
    equal. Calling it builds the fitter (in whatever process calls it)."""

    def __init__(self, model, data, settings, params: list[str], observed: list[str], example_obs: dict, *,
                 fingerprint: str, model_code: str):
        self.model, self.data, self.settings = model, data, settings
        self.params, self.observed, self.example_obs = list(params), list(observed), example_obs
        self.fingerprint, self.model_code = fingerprint, model_code

    def __call__(self):
        from bayesbio.infer._common import prepare
        from bayesbio.sbc.checkpoint import code_digest
        from bayesbio.sbc.fit import BatchFitter

        prepared = prepare(self.model, self.data)
        if prepared.fingerprint != self.fingerprint:
            raise DataError(f"data: a worker process loaded data with fingerprint {prepared.fingerprint}, the SBC run "
                            f"{self.fingerprint}; expected the same data (is the model's load_data deterministic?)")
        if code_digest(prepared.spec.model) != self.model_code:
            raise ModelError(f"model: a worker process loaded other code for '{prepared.spec.name}' than the SBC run "
                             "started with (was the model script edited?); expected the same code")
        return BatchFitter(prepared, self.observed, self.params, self.settings, self.example_obs)


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (to be raised in the parent), else a RuntimeError naming it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any failure: send its text instead
        return RuntimeError(f"in an SBC worker process: {type(exc).__name__}: {exc}")


def _exit_with_parent() -> None:
    """End this worker process as soon as its parent is gone (killed, not only exited), instead
    of finishing a batch nobody will read."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="bayesbio-sbc-parent-watch", daemon=True).start()


def _worker_main(settings: dict, recipe: bytes, tasks, results) -> None:
    """A worker process: copy the parent's JAX settings, build the fitter (the recipe is
    unpickled only then, so that arrays in it get the parent's precision, and a failure is
    reported like any other error), then fit batches from ``tasks`` until the ``None``."""
    _exit_with_parent()
    try:
        import jax

        for name, value in settings.items():
            jax.config.update(name, value)
        fitter = pickle.loads(recipe)()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put((None, None, _portable(exc)))
        return
    while (task := tasks.get()) is not None:
        start, args = task
        try:
            results.put((start, fitter.fit_batch(*args), None))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            results.put((start, None, _portable(exc)))
            return


def _died(process, exitcode: int) -> RuntimeError:
    if exitcode < 0:
        how = f"killed by signal {-exitcode}" + (" (SIGKILL: e.g. the kernel's out-of-memory killer)"
                                                 if exitcode == -signal.SIGKILL else "")
    else:
        how = f"exit status {exitcode}" + ("; a script that calls run_sbc with parallel='processes' needs an "
                                           "`if __name__ == '__main__':` guard" if exitcode == 1 else "")
    return RuntimeError(f"SBC worker process {process.name} died ({how}) before reporting its batch; with a "
                        "checkpoint, the batches finished before it are kept there (resume with --resume / "
                        "resume=True)")


def as_finished_in_processes(recipe: Callable[[], Any], inputs: Callable[[int], tuple], starts: Iterable[int],
                             workers: int, *, poll_seconds: float = 1.0) -> Iterator[tuple[int, Any]]:
    """Yield ``(start, fitter.fit_batch(*inputs(start)))`` for each of ``starts`` as the batches
    finish, fitted by ``workers`` spawned processes that each build their fitter with
    ``recipe()``. The first error of any batch is raised here, and so is the death of a worker
    (e.g. killed for memory: a RuntimeError naming its signal, instead of waiting forever for
    its batch); leaving the loop (an error, an interrupt, an abandoned generator) terminates the
    processes at once."""
    starts = list(starts)
    context = multiprocessing.get_context("spawn")
    tasks, results = context.Queue(), context.Queue()
    for start in starts:
        tasks.put((start, inputs(start)))
    n = min(workers, len(starts))
    for _ in range(n):
        tasks.put(None)
    blob, settings = pickle.dumps(recipe), jax_settings()
    processes = [context.Process(target=_worker_main, args=(settings, blob, tasks, results), name=f"bayesbio-sbc-{w}",
                                 daemon=True) for w in range(n)]
    for process in processes:
        process.start()
    try:
        pending = len(starts)
        while pending:
            try:
                start, out, exc = results.get(timeout=poll_seconds)
            except queue.Empty:
                for process in processes:
                    if process.exitcode not in (None, 0):
                        raise _died(process, process.exitcode) from None
                if not any(process.is_alive() for process in processes):
                    try:  # every worker has exited: whatever they sent is readable by now
                        start, out, exc = results.get(timeout=5 * poll_seconds)
                    except queue.Empty:
                        raise RuntimeError(f"SBC worker processes exited with {pending} batches unfinished") from None
                else:
                    continue
            if exc is not None:
                raise exc
            pending -= 1
            yield start, out
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join()
        tasks.cancel_join_thread()
        results.cancel_join_thread()
