"""Memory of a population likelihood per device, and a clear error when it does not fit.

Model of the memory (bytes, one evaluation of the log density *and its gradient*)
---------------------------------------------------------------------------------
With ``P`` patients split over ``n`` devices (``P_dev = ceil(P / n)`` per device), ``E``
segments (dosing events), ``O`` observation records, ``S`` states, ``D`` dose records per
patient (padded maxima of the :class:`~bayesbio.population.PopulationBatch`), ``q``
parameters that reach the right-hand side per patient (its own plus the population-wide
``shared`` ones, counted element by element) and ``b`` bytes per number (8 in double
precision, 4 with ``--float32``), the default forward-sensitivity solve needs, per device,

.. math::

    M \\approx 1.25 \\, b \\, \\Big( P_{dev} \\big[\\underbrace{E (O+1) S (2 + k)}_{\\text{kept for
    the gradient}} + \\underbrace{(O + 9) S (1 + k)}_{\\text{solver working set}}\\big]
    + P \\, \\underbrace{\\big[E (3 + 2S) + 5 (O + D)\\big]}_{\\text{data}} \\Big),
    \\qquad k = S + q \\;(k = q \\text{ for one segment})

* **kept for the gradient**: for every segment the solution and its ``S × k`` forward
  sensitivities at the ``O + 1`` output times (``k`` columns: the segment's start state
  ``S``, absent when there is one segment, and the ``q`` parameters; the infusion rates are
  data and get no columns), stored between the forward pass
  and the reverse pass, plus the solution and its cotangent;
* **solver working set**: the coupled state-and-sensitivity system of one segment (output
  buffer and Runge–Kutta stages), live one segment at a time;
* **data**: the padded event arrays of *all* ``P`` patients: the runners pass the data to
  the compiled sampler as one replicated argument, so every device holds a full copy;
* **1.25**: XLA's temporaries beyond these arrays. Calibrated against XLA's own accounting
  (``compiled.memory_analysis()``, temporaries + arguments + outputs of the compiled
  value-and-gradient program, CPU, x64, one device): without the factor the formula came
  to 0.77-1.52 times XLA's figure for 1-3 states, 1-5 segments and 3-40 records per patient
  (a chain of first-order compartments, 64 patients; re-measured 2026-12-06).

So the memory is **linear in the patients per device** and in ``E·O``, and quadratic in
the number of states (``S·k``); it does not depend on the number of solver steps (the
forward-sensitivity method keeps no step history; only ``sensitivity="adjoint"`` does,
``~ max_steps`` per patient and segment, which this estimate does not cover). The data term
does not shrink with more devices; with ``E = 2, O = 6, S = 2, D = 2, q = 3`` it is about
1/7 of the rest at one device, so it dominates beyond ~7 devices.
``tests/test_sharding.py`` checks the estimate against ``compiled.memory_analysis()``.

Not covered: vectorised chains (``chain_method="vectorized"``) evaluate every chain at once
(multiply the solve terms by the number of chains); after sampling, the pointwise
log-likelihood and posterior predictive (:mod:`bayesbio.infer._idata`) evaluate up to 4096
draws at once without gradients, which for a large population can need more memory than
the sampler itself.

The check
---------
:func:`check_device_memory` runs when a population solve is traced. It compares the
estimate with the memory of one device: the value of the environment variable
``BAYESBIO_DEVICE_MEMORY`` (bytes, or with a unit: ``"80GB"``, ``"16GiB"``, ``"512MiB"``;
``"off"`` disables the check) or else what JAX reports (``device.memory_stats()
["bytes_limit"]``, known on GPUs; CPUs report nothing and are not checked). When the
estimate is larger it raises :class:`~bayesbio.errors.OptionError` naming the number of
devices needed.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from bayesbio.errors import OptionError
from bayesbio.population.batch import PopulationBatch, as_batch

__all__ = ["MEMORY_ENV", "PopulationMemory", "check_device_memory", "device_memory_limit", "population_memory"]

MEMORY_ENV = "BAYESBIO_DEVICE_MEMORY"

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _format_bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def parse_bytes(text: str) -> int:
    """``"16GiB"`` -> 17179869184; plain integers are bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise OptionError(
            f"{MEMORY_ENV}: expected a number of bytes, optionally with a unit (e.g. 80GB, 16GiB, 512MiB) "
            f"or 'off'; got {text!r}"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass(frozen=True)
class PopulationMemory:
    """Estimated memory of one log-density-and-gradient evaluation (see the module docstring)."""

    n_patients: int
    n_segments: int
    n_obs: int
    n_states: int
    n_doses: int
    n_params: int
    itemsize: int

    def _numbers(self) -> tuple[int, int]:
        E, O, S, D, q = self.n_segments, self.n_obs, self.n_states, self.n_doses, self.n_params
        k = q if E == 1 else S + q  # one segment: its start state is a constant (no columns)
        solve = E * (O + 1) * S * (2 + k) + (O + 9) * S * (1 + k)
        data = E * (3 + 2 * S) + 5 * (O + D)
        return solve, data

    @property
    def solve_bytes_per_patient(self) -> float:
        """Bytes per patient *on its device* (the solve and its gradient)."""
        return 1.25 * self._numbers()[0] * self.itemsize

    @property
    def data_bytes_per_patient(self) -> float:
        """Bytes per patient *on every device* (the replicated event arrays)."""
        return 1.25 * self._numbers()[1] * self.itemsize

    @property
    def bytes_per_patient(self) -> int:
        """Both, on one device."""
        return int(self.solve_bytes_per_patient + self.data_bytes_per_patient)

    def per_device(self, n_devices: int = 1) -> int:
        """Bytes on each of ``n_devices`` devices sharing the patients."""
        local = math.ceil(self.n_patients / int(n_devices))
        return int(self.solve_bytes_per_patient * local + self.data_bytes_per_patient * self.n_patients)

    def devices_needed(self, device_bytes: int) -> int:
        """Smallest number of devices on which the estimate fits in ``device_bytes`` each;
        0 when no number does (the replicated data alone, or one patient, do not fit)."""
        room = int(device_bytes) - self.data_bytes_per_patient * self.n_patients
        fit = int(room // self.solve_bytes_per_patient) if room > 0 else 0
        if fit < 1:
            return 0
        return math.ceil(self.n_patients / fit)


def _count_params(params: Any, n_patients: int, shared: Any) -> int:
    q = 0
    for leaf in jax.tree_util.tree_leaves(params):
        q += int(np.prod(np.shape(leaf)[1:], dtype=int))  # per patient: drop the patient axis
    for leaf in jax.tree_util.tree_leaves(shared):
        q += int(np.prod(np.shape(leaf), dtype=int))
    return q


def population_memory(events, params: Any = None, *, shared: Any = None, n_params: int | None = None,
                      itemsize: int | None = None) -> PopulationMemory:
    """The memory model of a population solve for a batch (see the module docstring).

    Parameters
    ----------
    events : PopulationBatch or dict
        The batch.
    params, shared : pytree, optional
        Per-patient (patient axis first) and population-wide parameters of the right-hand
        side, to count ``q``; or give ``n_params`` directly.
    itemsize : int, optional
        Bytes per number (default: 8 with ``jax_enable_x64``, else 4).

    Examples
    --------
    >>> from bayesbio.population import bolus, make_batch, patient
    >>> batch = make_batch([patient([bolus(0, 100, 0)], [1.0, 2.0, 4.0])] * 1000, n_states=2)
    >>> m = population_memory(batch, n_params=3, itemsize=8)
    >>> m.bytes_per_patient, m.per_device(4) < m.per_device(1)
    (1630, True)
    """
    batch: PopulationBatch = as_batch(events)
    if n_params is None:
        n_params = _count_params(params, batch.n_patients, shared)
    if itemsize is None:
        itemsize = 8 if jax.config.jax_enable_x64 else 4
    return PopulationMemory(
        n_patients=batch.n_patients, n_segments=int(np.shape(batch.seg_start)[1]),
        n_obs=int(np.shape(batch.obs_time)[1]), n_states=batch.n_states,
        n_doses=int(np.shape(batch.dose_time)[1]), n_params=int(n_params), itemsize=int(itemsize),
    )


def device_memory_limit(device=None) -> tuple[int | None, str]:
    """(bytes of one device or None when unknown, where the figure comes from)."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text.lower() == "off":
        return None, f"{MEMORY_ENV}=off"
    if text:
        return parse_bytes(text), f"{MEMORY_ENV}={text}"
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats()
    except (RuntimeError, NotImplementedError):  # some backends do not implement it
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"JAX memory_stats of {device.platform} device {device.id}"
    return None, f"{device.platform} devices report no memory limit"


def check_device_memory(events, params: Any = None, *, shared: Any = None, n_shards: int = 1,
                        device_bytes: int | None = None) -> PopulationMemory:
    """Raise :class:`~bayesbio.errors.OptionError` when the population solve will not fit.

    ``n_shards`` is the number of devices sharing the patients; ``device_bytes`` overrides
    :func:`device_memory_limit`. Returns the estimate.
    """
    memory = population_memory(events, params, shared=shared)
    source = "the 'device_bytes' argument"
    if device_bytes is None:
        device_bytes, source = device_memory_limit()
    if device_bytes is None:
        return memory
    need = memory.per_device(n_shards)
    if need <= device_bytes:
        return memory
    n_needed = memory.devices_needed(device_bytes)
    where = f"{memory.n_patients} patients on {n_shards} device(s)"
    shapes = (f"{memory.n_segments} segments, {memory.n_obs} observation records, {memory.n_states} states, "
              f"{memory.n_params} parameters per patient: ~{_format_bytes(memory.bytes_per_patient)} per patient")
    if n_needed == 0:
        advice = (
            f"no number of devices helps: every device holds the event arrays of all patients "
            f"(~{_format_bytes(memory.data_bytes_per_patient * memory.n_patients)}); fit fewer patients or "
            "records per device, or use devices with more memory"
        )
    else:
        advice = (f"use at least {n_needed} devices (bayesbio fit --devices {n_needed}, or "
                  f"sample_nuts(..., devices={n_needed}); on several hosts see bayesbio.distributed)")
    raise OptionError(
        f"devices: the population likelihood needs about {_format_bytes(need)} per device ({where}; {shapes}) "
        f"but one device has {_format_bytes(device_bytes)} ({source}); {advice}"
    )
