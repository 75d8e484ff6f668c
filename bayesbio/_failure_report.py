"""Counting failed solves while a bayesbio runner traces a model.

A runner (NUTS, SVI, Laplace) sets :data:`_failure_context` around the model it traces; every
solve (:func:`bayesbio.solve`, the population and PDE solvers) calls :func:`_report_failure`
with its failure flag, which adds to an in-graph counter (a ``jax.Ref``) or, where JAX refuses
that, sends the failure to the host. Outside a runner nothing is counted.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp


@dataclass
class _FailureContext:
    chain: Any
    iteration: Any
    record: Callable[[Any, Any, Any], None]
    #: a ``jax.Ref`` (int32 scalar) that failures are added to inside the compiled program, or
    #: None. With a counter, no host callback is emitted, so the program can be stored in JAX's
    #: persistent compilation cache (JAX never caches programs with host callbacks).
    counter: Any = None
    #: per-patient failures of population solves (:mod:`bayesbio._patient_failures`): the number
    #: of patients counted (None: none), a ``jax.Ref`` (int32, that many) and a host fallback
    #: ``record_patients(chain, iteration, failed)``
    n_patients: int | None = None
    patient_counter: Any = None
    record_patients: Callable[[Any, Any, Any], None] | None = None


_failure_context: contextvars.ContextVar[_FailureContext | None] = contextvars.ContextVar(
    "bayesbio_failure_context", default=None
)


def _count(counter, increment, record, chain, iteration, payload, when) -> None:
    """Add ``increment`` to the in-graph ``counter`` (a ``jax.Ref``) when there is one and JAX
    accepts the add; otherwise, where ``when``, send ``record(chain, iteration, payload)`` to
    the host (nothing without ``record``). Shared by the per-chain and per-patient tallies."""
    if counter is not None:
        try:
            counter[...] += increment.astype(counter.dtype)
            return
        except Exception:  # noqa: BLE001
            # JAX refuses to add a batched value (a solve inside the model's own jax.vmap) to
            # the unbatched counter; such solves are counted by the host callback below.
            pass
    if record is None:
        return

    def _emit(_):
        jax.debug.callback(record, chain, iteration, payload)

    jax.lax.cond(when, _emit, lambda _: None, None)


def _report_failure(failed: jax.Array) -> None:
    ctx = _failure_context.get()
    if ctx is None:
        return
    _count(ctx.counter, jnp.any(failed), ctx.record, ctx.chain, ctx.iteration, failed, failed)
