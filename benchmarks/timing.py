"""Timing of a compiled JAX function, shared by the microbenchmarks (``linear_pk_solvers.py``,
``warfarin_solvers.py``)."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def median_seconds_per_call(fn: Callable[..., Any], *args, calls: int, repeats: int):
    """``(seconds, result)``: the median over ``repeats`` of the mean time of ``calls`` calls of
    ``fn(*args)``, after one call that compiles it (not timed); ``result`` is the last call's."""
    import jax

    result = fn(*args)
    jax.block_until_ready(result)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            result = fn(*args)
        jax.block_until_ready(result)
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times), result
