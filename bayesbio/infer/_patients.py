"""Per-patient solver-failure counts of population models in an InferenceData.

:func:`add_patient_failures` stores the NUTS runner's per-patient totals (what is counted:
:mod:`bayesbio._patient_failures`) as two ``sample_stats`` variables with dims
``(chain, patient)``:

``patient_solver_failures``
    failed solves of each patient while sampling (the kept draws' trajectories);
``warmup_patient_solver_failures``
    the same during warm-up.

The patient dim is the model's ``patient`` dim with its coords when its length is the number
of patients counted (as in ``models/theophylline.py``), ``patient`` with coords 0..P-1 when the
model has no such dim, and ``solver_patient`` (0..P-1) when its ``patient`` dim has another
length.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bayesbio.infer._common import Prepared

__all__ = [
    "PATIENT_STATS",
    "add_patient_failures",
    "describe_patient_failures",
    "patient_dim",
    "patient_failure_table",
]

#: sample_stats variable of each phase
PATIENT_STATS = {"sampling": "patient_solver_failures", "warmup": "warmup_patient_solver_failures"}


def patient_dim(idata, prepared: Prepared, n_patients: int) -> tuple[str, list[Any]]:
    """The dim name and coords of ``n_patients`` counted patients (see the module docstring)."""
    coords = prepared.coords.get("patient")
    if coords is None and "patient" in idata.posterior.coords:
        coords = idata.posterior["patient"].values.tolist()
    if coords is None:
        return "patient", list(range(n_patients))
    if len(coords) == n_patients:
        return "patient", list(coords)
    return "solver_patient", list(range(n_patients))


def add_patient_failures(idata, prepared: Prepared, counts: Mapping[str, np.ndarray]) -> None:
    """Store ``counts`` (phase -> int array (chains, patients)) in ``idata.sample_stats``."""
    import xarray as xr

    chains = idata.sample_stats["chain"].values
    for phase, name in PATIENT_STATS.items():
        values = np.asarray(counts[phase], dtype=np.int64)
        dim, coords = patient_dim(idata, prepared, values.shape[1])
        coordinates = {"chain": chains, dim: coords}
        idata.sample_stats[name] = xr.DataArray(values, dims=("chain", dim), coords=coordinates)


def patient_failure_table(idata):
    """Patients with at least one failed solve, most failures first: a ``pandas.DataFrame``
    indexed by patient (coords of the patient dim) with integer columns ``sampling``,
    ``warm-up`` and ``total`` (summed over chains); ``None`` when the result has no
    per-patient counts or no patient failed. ``table.attrs["patients"]`` is the number of
    patients counted."""
    import pandas as pd

    stats = getattr(idata, "sample_stats", None)
    if stats is None or not any(name in stats for name in PATIENT_STATS.values()):
        return None
    columns = {}
    index = None
    for phase, label in (("sampling", "sampling"), ("warmup", "warm-up")):
        name = PATIENT_STATS[phase]
        if name not in stats:
            continue
        var = stats[name]
        dim = next(d for d in var.dims if d != "chain")
        columns[label] = np.asarray(var.sum("chain").values, dtype=np.int64)
        index = pd.Index(var[dim].values.tolist(), name=dim)
    table = pd.DataFrame(columns, index=index)
    table["total"] = table.sum(axis=1).astype(np.int64)
    n_patients = len(table)
    table = table[table["total"] > 0].sort_values("total", ascending=False, kind="stable")
    if table.empty:
        return None
    table.attrs["patients"] = n_patients
    return table


def describe_patient_failures(idata, *, top: int = 5) -> str | None:
    """One line naming the ``top`` patients with most failed solves (sampling + warm-up), or
    ``None`` when no patient failed (or the result has no per-patient counts)."""
    table = patient_failure_table(idata)
    if table is None:
        return None
    shown = table.head(top)
    parts = []
    for patient, row in shown.iterrows():
        phases = ", ".join(f"{label} {int(row[label])}" for label in ("sampling", "warm-up") if label in row)
        parts.append(f"{patient}: {int(row['total'])} ({phases})")
    more = f"; {len(table) - len(shown)} more" if len(table) > len(shown) else ""
    counted = f"{len(table)} of {table.attrs['patients']} had failed solves"
    return f"solver failures per {table.index.name}: {counted}; most: " + "; ".join(parts) + more
