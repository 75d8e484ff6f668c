"""Chunk driver of the NUTS runner: groups of chains through compiled chunks, with checkpoints.

A *group* is a set of chains that one call of the compiled chunk advances together: one chain
(``"sequential"``, ``"parallel"``), all chains (``"vectorized"``) or one chain per row of a
device mesh. Groups are independent, so the driver can run several at once: with
``workers > 1`` each worker thread takes the next group that has not started and runs it from
its first to its last chunk, calling the same compiled program as a sequential run. XLA's CPU
client executes calls from several threads side by side (one core each), the Python work
between chunks is small, and a worker never waits for another worker's trajectories, unlike a
``pmap`` over CPU devices, which ends each chunk with the slowest chain
(``benchmarks/README.md``, levers log). Each chain's draws are those of a sequential run,
bit for bit.

Timings: each group adds up the wall time of its own warm-up and sampling chunks; a worker's
phase time is the sum over the groups it ran, and the run's is the largest over workers (the
last to finish; with one worker, the sum over groups). A checkpoint is written once the groups
together have run ``checkpoint_every`` iterations since the last one; it holds every group's state
at its last chunk boundary and the failure tallies of exactly the iterations before it, so a
killed run loses at most ``checkpoint_every - 1 + workers * chunk_size`` iterations in all, and a
resumed run repeats the same chunks from the same states and counts their failures once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from bayesbio.infer.checkpoint import save_checkpoint

__all__ = [
    "GroupProgress", "one_chain", "parallel_workers", "run_groups", "tree_concat", "tree_index", "worker_devices",
]


def parallel_workers() -> int:
    """Chains that ``chain_method="parallel"`` runs side by side: the CPU cores this process may
    use on a CPU backend, else the local accelerators."""
    if jax.default_backend() == "cpu":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return jax.local_device_count()


def worker_devices(workers: int) -> list:
    """The device of each parallel worker: on CPUs all share the default device (XLA's CPU client
    runs calls from several threads on their own cores, and one compiled program serves every
    worker); accelerators get one device each."""
    if jax.default_backend() == "cpu":
        return [None] * workers
    return list(jax.local_devices()[:workers])


def tree_index(tree, i):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def one_chain(chunk):
    """``chunk`` for a group of one chain without ``vmap`` (same leading axis of length 1):
    unbatched, NumPyro's tree building keeps its ``lax.cond``s, so the in-graph failure counter
    works (JAX does not support state effects in a ``vmap`` of ``cond``)."""

    def run(state, chain, n_active, data):
        out = chunk(tree_index(state, 0), chain[0], n_active, data)
        return jax.tree_util.tree_map(lambda x: x[None], out)

    return run


def tree_concat(trees, axis):
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=axis), *trees)


@dataclass
class GroupProgress:
    """Where one group of chains stands (also the unit a checkpoint stores)."""

    done: int = 0  # iterations run (warm-up and sampling)
    state: Any = None  # sampler state after ``done`` iterations (None: not started, or finished)
    collected: list = field(default_factory=list)  # per-chunk outputs of the sampling phase
    kept: Any = None  # the group's sampling outputs, once finished
    warmup_seconds: float = 0.0
    sampling_seconds: float = 0.0
    worker: int | None = None  # the worker that finished the group

    def as_dict(self) -> dict:
        return dict(done=self.done, state=self.state, collected=list(self.collected), kept=self.kept,
                    warmup_seconds=self.warmup_seconds, sampling_seconds=self.sampling_seconds,
                    worker=self.worker)


@dataclass
class DriverResult:
    kept: list  # per group, in group order: dict of (group chains, samples, ...)
    warmup_seconds: float
    sampling_seconds: float
    warmup_failures: np.ndarray  # in-graph failures during warm-up, per chain
    patient_failures: dict  # in-graph per-patient failures per phase: (chains, patients)


def run_groups(
    *,
    groups: list[np.ndarray],
    call: Callable[[int, Any, np.ndarray, int], tuple[Any, dict]],
    initial_state: Callable[[int], Any],
    warmup: int,
    total: int,
    chunk_size: int,
    workers: int = 1,
    n_chains: int,
    n_patients: int | None = None,
    checkpoint: str | None = None,
    checkpoint_every: int | None = None,
    checkpoint_extra: Callable[[np.ndarray], dict] | None = None,
    identity: dict | None = None,
    resumed: dict | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> DriverResult:
    """Run every group from its start (or its resumed state) to ``total`` iterations.

    ``call(worker, state, group_chain_ids, n) -> (state, out)`` runs one chunk of ``n`` active
    iterations for a group on that worker's device and returns ``out`` on the host;
    ``initial_state(group_index)`` gives a group's starting state. ``resumed`` is a checkpoint
    of an earlier run, as :func:`~bayesbio.infer.checkpoint.load_checkpoint` returns it.
    ``checkpoint_extra(done)`` adds the caller's tallies (failure logs) to each checkpoint,
    restricted to the iterations each chain has completed (``done[chain]``); ``on_chunk(n)``
    reports progress.
    """
    progress = [GroupProgress() for _ in groups]
    warmup_counted = np.zeros(n_chains, dtype=np.int64)
    patients_counted = {phase: np.zeros((n_chains, n_patients or 0), dtype=np.int64)
                        for phase in ("warmup", "sampling")}
    if resumed is not None:
        for gi, saved in resumed["groups"].items():
            progress[int(gi)] = GroupProgress(**saved)
        warmup_counted = np.asarray(resumed["warmup_failures"], dtype=np.int64).copy()
        patients_counted = {k: np.asarray(v, dtype=np.int64).copy()
                            for k, v in resumed["patient_failures_counted"].items()}
    lock = threading.Lock()
    stop = threading.Event()
    pending = [gi for gi, p in enumerate(progress) if p.kept is None]
    unsaved = [0]  # iterations run by all groups since the last checkpoint

    def save():  # under the lock: every group at a chunk boundary, tallies to match
        done = np.zeros(n_chains, dtype=np.int64)
        for g, p in zip(groups, progress):
            done[int(g[0]) : int(g[-1]) + 1] = total if p.kept is not None else p.done
        payload = dict(identity or {}, **(checkpoint_extra(done) if checkpoint_extra else {}))
        payload.update(
            groups={gi: p.as_dict() for gi, p in enumerate(progress)},
            warmup_failures=warmup_counted.copy(),
            patient_failures_counted={k: v.copy() for k, v in patients_counted.items()},
        )
        save_checkpoint(checkpoint, payload)
        unsaved[0] = 0

    def run_group(gi: int, worker: int) -> None:
        g, p = groups[gi], progress[gi]
        rows = slice(int(g[0]), int(g[-1]) + 1)
        state = p.state if p.state is not None else initial_state(gi)
        collected = p.collected  # appended under the lock: a checkpoint copies it (as_dict)
        done = p.done
        while done < total:
            if stop.is_set():
                return
            # chunks never straddle the warm-up/sampling boundary, so timings are exact
            boundary = warmup if done < warmup else total
            n = min(chunk_size, boundary - done)
            t0 = time.perf_counter()
            state, out = call(worker, state, g, n)
            dt = time.perf_counter() - t0
            phase = "warmup" if done < warmup else "sampling"
            out = dict(out)
            patient_failures = out.pop("patient_failures", None)  # per chain, not per iteration
            done += n
            with lock:  # the chunk's draws, tallies and the group's progress change together
                if phase == "sampling":
                    collected.append(jax.tree_util.tree_map(lambda x: x[:, :n], out))
                if patient_failures is not None:
                    patients_counted[phase][rows] += np.asarray(patient_failures)
                if phase == "warmup" and "failures" in out:
                    warmup_counted[rows] += np.asarray(out["failures"])[:, :n].sum(axis=1)
                if phase == "warmup":
                    p.warmup_seconds += dt
                else:
                    p.sampling_seconds += dt
                p.done, p.state = done, state
                if done == total:
                    p.kept, p.state, p.collected, p.worker = tree_concat(collected, axis=1), None, [], worker
                unsaved[0] += n
                if stop.is_set():
                    return
                if on_chunk is not None:
                    on_chunk(n)
                if checkpoint_every is not None and unsaved[0] >= checkpoint_every and done < total:
                    save()

    def work(worker: int) -> None:
        while not stop.is_set():
            with lock:
                if not pending:
                    return
                gi = pending.pop(0)
            run_group(gi, worker)

    if workers <= 1:
        work(0)
    else:
        errors: list[BaseException] = []

        def guarded(worker):
            try:
                work(worker)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(exc)
                stop.set()

        threads = [threading.Thread(target=guarded, args=(w,), name=f"bayesbio-chains-{w}", daemon=True)
                   for w in range(max(1, min(workers, len(pending))))]
        for t in threads:
            t.start()
        try:
            for t in threads:
                t.join()
        except BaseException:  # e.g. KeyboardInterrupt: the workers stop after their current chunk
            stop.set()
            for t in threads:  # wait for them (a second interrupt ends the wait)
                while t.is_alive():
                    t.join(0.1)
            raise
        if errors:
            raise errors[0]

    # a worker's phase time is the sum over the groups it finished; the run's is the largest
    per_worker: dict[int, list[float]] = {}
    for p in progress:
        w = per_worker.setdefault(p.worker, [0.0, 0.0])
        w[0] += p.warmup_seconds
        w[1] += p.sampling_seconds
    return DriverResult(
        kept=[p.kept for p in progress],
        warmup_seconds=max(w[0] for w in per_worker.values()),
        sampling_seconds=max(w[1] for w in per_worker.values()),
        warmup_failures=warmup_counted,
        patient_failures=patients_counted,
    )
