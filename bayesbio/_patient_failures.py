"""Per-patient counts of failed population solves (active only while a bayesbio runner traces
a model).

:func:`bayesbio.population.solve_population` reports its per-patient failure flags here. Each
call is counted once per chain, as every other solve (:func:`bayesbio._failure_report._report_failure`:
the call failed when any patient's solve failed), and once for every patient whose solve
failed in it. So for one evaluation of the model with a single population solve, a patient
whose solve failed counts 1, the others 0, and the chain count 1. Over a run, for a model with
one population solve and no other solve, per chain and phase (warm-up, sampling)::

    max over patients  <=  chain count (evaluations in which any patient failed)  <=  sum over patients

(other solves add to the chain count only). The NUTS runner stores the totals as
``sample_stats.patient_solver_failures`` and ``warmup_patient_solver_failures``, dims
``(chain, patient)`` (:mod:`bayesbio.infer._patients`), carried through checkpoints.

Which solves are counted per patient: the runner tracks one population, the patient count of
the model's first population solve (in trace order, :func:`recording_population_sizes`).
Every population solve over that many patients adds to the same per-patient counts (a PK and
a PD solve of the same patients add up per patient: a patient failing in both counts 2 for
that evaluation); a solve over a different number of patients is counted only per chain.

Where the count is kept: in a ``jax.Ref`` (``patient_counter`` of the failure context,
created per sampler iteration) inside the compiled program, without a host callback, as the
per-chain counter; when JAX refuses the in-graph add (a solve inside the model's own
``jax.vmap``) or there is no counter (vectorised chains), through a host callback into
``record_patients`` (:meth:`bayesbio.infer._common.FailureLog.record_patients`). Vectorised
chains therefore count per patient by host callback, with the same over-count as their chain
count (:func:`bayesbio.sample_nuts`); the sequential and parallel (threaded) chains keep the sampler
program free of host callbacks. SVI and Laplace fits count per chain only.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import jax
import jax.numpy as jnp

from bayesbio._failure_report import _count, _failure_context, _report_failure

__all__ = ["recording_population_sizes", "report_patient_failures"]

_population_sizes: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "bayesbio_population_sizes", default=None
)


@contextlib.contextmanager
def recording_population_sizes() -> Iterator[list[int]]:
    """Collect the number of patients of every population solve traced inside the block, in
    order (``bayesbio.infer._common.prepare`` uses it to learn a model's population size)."""
    sizes: list[int] = []
    token = _population_sizes.set(sizes)
    try:
        yield sizes
    finally:
        _population_sizes.reset(token)


def report_patient_failures(failed: jax.Array) -> None:
    """Count a population solve's failure flags ``failed`` (one per patient, shape (P,)): once
    per chain when any patient failed, and per patient where the runner tracks ``P`` patients."""
    failed = jnp.asarray(failed)
    _report_failure(jnp.any(failed))
    n = int(failed.shape[-1]) if failed.ndim else 1
    sizes = _population_sizes.get()
    if sizes is not None:
        sizes.append(n)
    ctx = _failure_context.get()
    if ctx is None or ctx.n_patients is None or failed.ndim != 1 or n != ctx.n_patients:
        return
    _count(ctx.patient_counter, failed, ctx.record_patients, ctx.chain, ctx.iteration, failed, jnp.any(failed))
