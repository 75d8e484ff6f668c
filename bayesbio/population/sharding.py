"""The patient axis of a population solve, sharded across devices with ``jax.shard_map``.

When a mesh with a ``"patients"`` axis is active (:func:`jax.set_mesh`, e.g. through
``bayesbio.sample_nuts(..., devices=8)``; see :mod:`bayesbio.parallel`),
:func:`~bayesbio.population.solve_population` and
:func:`~bayesbio.population.solve_population_with_status` call
:func:`solve_population_sharded` instead of one ``vmap`` over every patient:

1. the patients are padded to a multiple of the number of devices along ``"patients"``
   with *fully masked* patients (:func:`pad_batch`: zero-length segments, no dose, no
   measurement; their parameters repeat the last real patient's, so every number stays
   finite), and the outputs of the padding are cut off again;
2. ``jax.shard_map`` gives each device its block of ``P_pad / n`` patients; the device runs
   the same ``vmap``-ed solve as a single device would, with its *own* adaptive step-size
   loops: devices never wait for each other inside a solve (an automatically partitioned
   ``vmap`` would all-reduce the loop condition after every step);
3. the model then computes the likelihood from the solution as usual; XLA partitions the
   sums and inserts the collectives (all-reduce) that give the log density, and the
   transpose of ``shard_map`` does the same for the gradient (population-wide parameters
   are replicated, so their cotangents are summed over devices).

Every patient is solved by exactly the same operations as without a mesh, so the
solution is identical; only the summation order of the log density changes (differences
of a few units in the last place, ~1e-13 relative in x64).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, PartitionSpec

from bayesbio.ode import ODESolution
from bayesbio.parallel import PATIENT_AXIS, padded_size
from bayesbio.population.batch import PopulationBatch, as_batch

__all__ = ["pad_batch", "patient_axis_size", "solve_population_sharded"]


def patient_axis_size() -> int | None:
    """Devices along ``"patients"`` of the mesh in context when it is not yet manual (the
    caller is outside any patient ``shard_map``), else None. Works inside ``jax.jit``."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or PATIENT_AXIS not in mesh.axis_names:
        return None
    i = mesh.axis_names.index(PATIENT_AXIS)
    if mesh.axis_types[i] == AxisType.Manual:
        return None
    return int(mesh.axis_sizes[i])


def _pad_rows(x, n_rows: int, fill=None):
    """``x`` with ``n_rows`` rows appended (copies of its last row, or ``fill``)."""
    if n_rows == 0:
        return x
    xp = np if isinstance(x, np.ndarray) else jnp
    if fill is None:
        tail = xp.repeat(x[-1:], n_rows, axis=0)
    else:
        tail = xp.full((n_rows,) + tuple(np.shape(x)[1:]), fill, dtype=x.dtype)
    return xp.concatenate([x, tail], axis=0)


#: field -> value of a padding patient (None: repeat the last patient's row)
_PAD_FILL = {
    "seg_start": 0.0, "seg_end": 0.0, "seg_bolus": 0.0, "seg_rate": 0.0, "seg_reset": False,
    "obs_time": 0.0, "obs_segment": 0, "obs_value": np.nan, "obs_cmt": 0, "obs_valid": False,
    "dose_time": 0.0, "dose_amount": 0.0, "dose_rate": 0.0, "dose_cmt": 0, "dose_valid": False,
}


def pad_batch(events, n_patients: int) -> PopulationBatch:
    """``events`` padded with fully masked patients up to ``n_patients``.

    A padding patient has zero-length segments at time 0, no dose, no infusion and no
    measurement (``obs_valid`` False, ``obs_value`` NaN), so its solve takes no step and it
    adds nothing to a likelihood masked by ``obs_mask`` (or by ``observe``'s NaN rule).
    """
    batch = as_batch(events)
    extra = int(n_patients) - batch.n_patients
    if extra < 0:
        raise ValueError(f"pad_batch: cannot pad {batch.n_patients} patients down to {n_patients}")
    return PopulationBatch(**{
        f.name: _pad_rows(getattr(batch, f.name), extra, _PAD_FILL[f.name])
        for f in dataclasses.fields(PopulationBatch)
    })


def solve_population_sharded(
    rhs: Callable,
    params: Any,
    events,
    *,
    shared: Any = None,
    y0=None,
    bioavailability=None,
    n_shards: int | None = None,
    **solver_options,
) -> ODESolution:
    """:func:`~bayesbio.population.solve_population_with_status` with the patients split
    over the ``"patients"`` axis of the active mesh (see the module docstring).

    Parameters
    ----------
    rhs, params, events, shared, y0, bioavailability, **solver_options
        As for :func:`~bayesbio.population.solve_population_with_status`.
    n_shards : int, optional
        Devices along ``"patients"`` (default: read from the active mesh).

    Returns
    -------
    ODESolution
        ``ys`` (P, O, n_states), ``failed`` (P,): exactly the unsharded results.
    """
    from bayesbio.population.batched import solve_population_with_status

    n_shards = patient_axis_size() if n_shards is None else int(n_shards)
    if n_shards is None:
        raise ValueError("solve_population_sharded: no mesh with a 'patients' axis is active (jax.set_mesh)")
    batch = as_batch(events)
    n_patients = batch.n_patients
    n_pad = padded_size(n_patients, n_shards)
    extra = n_pad - n_patients
    n_states = batch.n_states

    def per_patient(x):
        return x is not None and jnp.shape(x) == (n_patients, n_states)

    rows = PartitionSpec(PATIENT_AXIS)
    everywhere = PartitionSpec()
    padded_params = jax.tree_util.tree_map(lambda x: _pad_rows(jnp.asarray(x), extra), params)
    y0_in = _pad_rows(jnp.asarray(y0), extra) if per_patient(y0) else y0
    bio_in = _pad_rows(jnp.asarray(bioavailability), extra) if per_patient(bioavailability) else bioavailability

    def local(p, ev, y0_l, bio_l, shared_l):
        sol = solve_population_with_status(
            rhs, p, ev, shared=shared_l, y0=y0_l, bioavailability=bio_l, **solver_options
        )
        return sol.ys, sol.failed

    in_specs = (
        rows, rows, rows if per_patient(y0) else everywhere, rows if per_patient(bioavailability) else everywhere,
        everywhere,
    )
    # check_vma=False: the solvers start their loops from constants (not "varying" per device);
    # the gradient of replicated inputs (shared, y0) is still summed over devices, as tested
    mapped = jax.shard_map(
        local, in_specs=in_specs, out_specs=(rows, rows), axis_names={PATIENT_AXIS}, check_vma=False
    )
    # jit: also when called eagerly, trace the map (JAX's eager shard_map path rejects a map
    # that is manual in "patients" only, when the mesh also has a "chains" axis)
    ys, failed = jax.jit(mapped)(padded_params, pad_batch(batch, n_pad), y0_in, bio_in, shared)
    if extra:
        ys, failed = ys[:n_patients], failed[:n_patients]
    return ODESolution(ys=ys, failed=failed)


def dispatch_population_solve(rhs, params, batch: PopulationBatch, **options) -> ODESolution | None:
    """The hook of :func:`~bayesbio.population.solve_population_with_status`: checks the
    memory the solve will need per device (:mod:`bayesbio.population.memory`), then returns
    the sharded solve when a ``"patients"`` mesh is active, else None (solve in place)."""
    from bayesbio.population.memory import check_device_memory

    n_shards = patient_axis_size()
    check_device_memory(batch, params, shared=options.get("shared"), n_shards=n_shards or 1)
    if n_shards is None:
        return None
    return solve_population_sharded(rhs, params, batch, n_shards=n_shards, **options)
