"""Padded, batched event arrays of a population: the data every batched solve consumes.

:func:`make_batch` turns a list of :class:`~bayesbio.population.Patient` records into a
:class:`PopulationBatch`: NumPy arrays whose **leading axis is the patient** (so the batch
can be ``vmap``-ed, or sharded across devices along that axis), padded to the largest number
of segments / observations / doses with masks.

Segments
--------
Each patient's time line is cut at every *event time*: the first record when it precedes
every dose, every dose time, every infusion end and the last record; when a dose is given at the last event time, a
last, zero-length segment starts there (so that the records after it see the dose). Between two consecutive event times the right-hand
side is smooth (infusion rates are constant), so :func:`~bayesbio.population.solve_patient`
integrates segment by segment and restarts exactly at each event: a segment starts from the
previous segment's end state, reset to ``y0`` where ``seg_reset`` is set, plus the bolus
amounts ``seg_bolus`` given at its start; during it the constant infusion input
``seg_rate`` is added to ``dy/dt``. Padding segments have zero length, no dose and no input.

Every observation record is assigned to the segment that contains it (``obs_segment``): an
observation at an event time belongs to the segment that *starts* there (it sees the
post-dose state) unless it is ``pre_dose``, then to the one that *ends* there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bayesbio.errors import DataError, describe
from bayesbio.population.dosing import Patient

__all__ = ["PopulationBatch", "as_batch", "make_batch", "scan_segments"]


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class PopulationBatch:
    """Padded event arrays of ``P`` patients (leading axis), a JAX pytree.

    Shapes: ``P`` patients, ``E`` segments, ``O`` observation records, ``D`` dose records,
    ``S`` states, all padded to the population maximum.

    Attributes
    ----------
    seg_start, seg_end : float (P, E)
        Segment boundaries (event times); padding segments have ``start == end``.
    seg_bolus : float (P, E, S)
        Bolus amounts added to each state at the segment start.
    seg_rate : float (P, E, S)
        Zero-order infusion input (amount / time) to each state during the segment.
    seg_reset : bool (P, E)
        Reset the state to ``y0`` at the segment start (before its boluses).
    obs_time : float (P, O)
        Observation (and prediction-only) times; padding repeats the last time.
    obs_segment : int (P, O)
        Segment of each record.
    obs_value : float (P, O)
        Measurements; NaN where there is no measurement (padding, MDV=1, EVID 2) — exactly the
        convention of :func:`bayesbio.observe`, so ``obs_value`` can be passed as ``obs``.
    obs_cmt : int (P, O)
        0-based output/compartment index of each record (what the model observes).
    obs_valid : bool (P, O)
        The record exists (False on padding); ``obs_mask`` below is the likelihood mask.
    dose_time, dose_amount, dose_rate : float (P, D); dose_cmt : int (P, D); dose_valid : bool (P, D)
        The dose records themselves (padding: amount 0, ``dose_valid`` False), kept for
        plots and for rebuilding regimens; the solve uses the segment arrays.
    """

    seg_start: Any
    seg_end: Any
    seg_bolus: Any
    seg_rate: Any
    seg_reset: Any
    obs_time: Any
    obs_segment: Any
    obs_value: Any
    obs_cmt: Any
    obs_valid: Any
    dose_time: Any
    dose_amount: Any
    dose_rate: Any
    dose_cmt: Any
    dose_valid: Any

    @property
    def n_patients(self) -> int:
        return int(np.shape(self.obs_time)[0])

    @property
    def n_states(self) -> int:
        return int(np.shape(self.seg_bolus)[-1])

    @property
    def obs_mask(self):
        """bool (P, O): records with a measurement (enter the likelihood)."""
        import jax.numpy as jnp

        xp = np if isinstance(self.obs_value, np.ndarray) else jnp
        return xp.isfinite(self.obs_value) & self.obs_valid

    def to_dict(self) -> dict[str, np.ndarray]:
        """Plain dict of NumPy arrays (the form a model script's ``load_data`` returns)."""
        return {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def patient(self, i: int) -> "PopulationBatch":
        """The batch of patient ``i`` alone (leading axis kept, size 1)."""
        return jax.tree_util.tree_map(lambda x: x[i : i + 1], self)


_FIELDS = tuple(f.name for f in dataclasses.fields(PopulationBatch))


def as_batch(events: PopulationBatch | Mapping[str, Any]) -> PopulationBatch:
    """A :class:`PopulationBatch` from itself or from its :meth:`~PopulationBatch.to_dict`
    form (model data are dicts of arrays); raises :class:`~bayesbio.errors.DataError` naming
    missing fields."""
    if isinstance(events, PopulationBatch):
        return events
    if not isinstance(events, Mapping):
        raise DataError(f"events: expected a PopulationBatch or its to_dict() form; got {describe(events)}")
    missing = [k for k in _FIELDS if k not in events]
    if missing:
        raise DataError(
            f"events: missing field(s) {missing}; build the events with bayesbio.population.make_batch "
            "or read_nonmem and pass batch.to_dict()"
        )
    return PopulationBatch(**{k: events[k] for k in _FIELDS})


def _segments(p: Patient, n_states: int, where: str):
    for d in p.doses:
        if d.compartment >= n_states:
            raise DataError(
                f"{where}: dose at time {d.time} goes into compartment {d.compartment} (0-based), but the "
                f"model has n_states={n_states} (valid: 0..{n_states - 1})"
            )
    times = [d.time for d in p.doses] + [d.end for d in p.doses]
    times.append(float(p.obs_time[-1]))
    if float(p.obs_time[0]) < min(times):  # records before the first dose: start there
        times.append(float(p.obs_time[0]))
    events = np.unique(np.asarray(times, dtype=float))
    # segment k runs from events[k] to events[k + 1]; the last one has zero length and starts at
    # the last event time, so that doses given there are seen by records after them
    start = events
    end = np.append(events[1:], events[-1])
    n_seg = events.size
    bolus = np.zeros((n_seg, n_states))
    rate = np.zeros((n_seg, n_states))
    do_reset = np.zeros(n_seg, dtype=bool)
    for d in p.doses:
        k = int(np.searchsorted(events, d.time))  # exact: d.time is one of the events
        if d.reset:
            do_reset[k] = True
        if d.rate > 0:
            active = (start >= d.time) & (start < d.end)
            rate[active, d.compartment] += d.rate
        elif d.amount > 0:
            bolus[k, d.compartment] += d.amount
    # observations -> segments: the last event at or before the record, or the segment ending
    # there for a pre-dose record at an event time
    seg = np.searchsorted(events, p.obs_time, side="right") - 1
    at_event = np.isin(p.obs_time, events)
    seg = np.where(p.pre_dose & at_event & (seg > 0), seg - 1, seg)
    if n_seg > 1 and not (bolus[-1].any() or do_reset[-1]):
        # nothing happens at the last event time: the trailing zero-length segment is not needed
        n_seg -= 1
        start, end, bolus, rate, do_reset = start[:-1], end[:-1], bolus[:-1], rate[:-1], do_reset[:-1]
        seg = np.minimum(seg, n_seg - 1)
    return start, end, bolus, rate, do_reset, seg


def make_batch(patients: Sequence[Patient], *, n_states: int) -> PopulationBatch:
    """Pad the records of every patient into one :class:`PopulationBatch`.

    Parameters
    ----------
    patients : sequence of Patient
        From :func:`~bayesbio.population.patient` (or :func:`~bayesbio.population.read_nonmem`).
    n_states : int
        Number of ODE states; every dose compartment must be below it.

    Examples
    --------
    >>> from bayesbio.population import bolus, infusion, patient, make_batch
    >>> p = patient([bolus(0, 100, 0), infusion(12, 50, 1, duration=1)], [1, 12, 13, 24])
    >>> b = make_batch([p], n_states=2)
    >>> b.seg_start.tolist(), b.obs_segment.tolist()
    ([[0.0, 12.0, 13.0]], [[0, 1, 2, 2]])
    """
    if isinstance(n_states, bool) or not isinstance(n_states, (int, np.integer)) or n_states < 1:
        raise DataError(f"make_batch: 'n_states' must be a positive integer; got {describe(n_states)}")
    patients = list(patients)
    if not patients:
        raise DataError("make_batch: 'patients' is empty")
    for p in patients:
        if not isinstance(p, Patient):
            raise DataError(f"make_batch: expected Patient records (bayesbio.population.patient); got {describe(p)}")
    parts = []
    for i, p in enumerate(patients):
        where = f"patient {p.id!r}" if p.id is not None else f"patient #{i}"
        if p.n_obs == 0:
            raise DataError(f"{where}: has no observation or prediction records (nothing to solve for)")
        parts.append(_segments(p, int(n_states), where))
    P = len(patients)
    E = max(part[0].size for part in parts)
    O = max(p.n_obs for p in patients)
    D = max(1, max(len(p.doses) for p in patients))
    S = int(n_states)
    out = dict(
        seg_start=np.zeros((P, E)), seg_end=np.zeros((P, E)), seg_bolus=np.zeros((P, E, S)),
        seg_rate=np.zeros((P, E, S)), seg_reset=np.zeros((P, E), bool),
        obs_time=np.zeros((P, O)), obs_segment=np.zeros((P, O), np.int32), obs_value=np.full((P, O), np.nan),
        obs_cmt=np.zeros((P, O), np.int32), obs_valid=np.zeros((P, O), bool),
        dose_time=np.zeros((P, D)), dose_amount=np.zeros((P, D)), dose_rate=np.zeros((P, D)),
        dose_cmt=np.zeros((P, D), np.int32), dose_valid=np.zeros((P, D), bool),
    )
    for i, (p, (start, end, bolus, rate, rst, seg)) in enumerate(zip(patients, parts)):
        n, m = start.size, p.n_obs
        t_last = end[-1]
        out["seg_start"][i, :n], out["seg_end"][i, :n] = start, end
        out["seg_start"][i, n:] = out["seg_end"][i, n:] = t_last
        out["seg_bolus"][i, :n], out["seg_rate"][i, :n], out["seg_reset"][i, :n] = bolus, rate, rst
        out["obs_time"][i, :m], out["obs_time"][i, m:] = p.obs_time, p.obs_time[-1]
        out["obs_segment"][i, :m], out["obs_segment"][i, m:] = seg, seg[-1]
        out["obs_value"][i, :m] = p.obs_value
        out["obs_cmt"][i, :m] = p.obs_compartment
        out["obs_valid"][i, :m] = True
        for j, d in enumerate(p.doses):
            out["dose_time"][i, j], out["dose_amount"][i, j] = d.time, d.amount
            out["dose_rate"][i, j], out["dose_cmt"][i, j], out["dose_valid"][i, j] = d.rate, d.compartment, True
    return PopulationBatch(**out)


def segment_defaults(events, y0=None, bioavailability=None):
    """``(n_states, dtype, y0, f_bio)`` for one patient's solve: the initial state (default
    zeros) and the dose fractions (default ones) as arrays of JAX's default float type."""
    n_states = events.seg_bolus.shape[-1]
    dtype = jnp.result_type(float)
    y0 = jnp.zeros(n_states, dtype) if y0 is None else jnp.asarray(y0, dtype)
    f_bio = jnp.ones(n_states, dtype) if bioavailability is None else jnp.asarray(bioavailability, dtype)
    return n_states, dtype, y0, f_bio


def scan_segments(propagate, y0, f_bio, events, dtype):
    """Walk one patient's segments (one row of a batch) and read every record off its own segment.

    Each segment starts from the previous segment's end state, reset to ``y0`` where
    ``seg_reset`` is set, plus its bolus doses (times ``f_bio``); ``propagate(y_start, ts,
    start, end, rate) -> (ys (T, S), failed)`` solves it at ``ts`` (the records clipped to the
    segment, then its end) with the constant input ``f_bio * rate``. Returns the states at the
    records (O, S) and whether any segment failed.
    """
    obs_time = jnp.asarray(events.obs_time, dtype)

    def segment(y, seg):
        start, end, bolus, rate, do_reset = seg
        y = jnp.where(do_reset, y0, y) + f_bio * bolus
        ts = jnp.concatenate([jnp.clip(obs_time, start, end), end[None]])
        ys, failed = propagate(y, ts, start, end, f_bio * rate)
        return ys[-1], (ys[:-1], failed)

    xs = (
        jnp.asarray(events.seg_start, dtype), jnp.asarray(events.seg_end, dtype),
        jnp.asarray(events.seg_bolus, dtype), jnp.asarray(events.seg_rate, dtype), jnp.asarray(events.seg_reset),
    )
    if xs[0].shape[0] == 1:
        # one segment (e.g. a single dose at the first record): no scan, so the initial state
        # stays a constant and an ODE solver integrates no sensitivities with respect to it
        _, (ys_seg, failed_seg) = segment(y0, tuple(x[0] for x in xs))
        ys_seg, failed_seg = ys_seg[None], failed_seg[None]
    else:
        _, (ys_seg, failed_seg) = jax.lax.scan(segment, y0, xs)
    # ys_seg: (n_segments, n_obs, n_states); each record reads its own segment
    idx = jnp.asarray(events.obs_segment)[None, :, None]
    return jnp.take_along_axis(ys_seg, idx, axis=0)[0], jnp.any(failed_seg)
