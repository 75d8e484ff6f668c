"""Dosing and observation records of one patient (host side, plain NumPy).

A patient's history is a list of :class:`Dose` records (oral/depot or IV bolus doses,
zero-order infusions, compartment resets) plus observation records. These are built with
:func:`bolus`, :func:`infusion`, :func:`repeat` and :func:`patient` (or read from a
NONMEM-style table by :func:`bayesbio.population.read_nonmem`) and turned into the padded
arrays of a :class:`~bayesbio.population.PopulationBatch` by
:func:`~bayesbio.population.make_batch`.

Conventions
-----------
* Compartments are **0-based** state indices here (``compartment=0`` is ``y[0]``); the NONMEM
  reader converts the 1-based ``CMT`` column.
* A bolus adds ``amount`` (times the bioavailability of its compartment) to the state at
  ``time``; the solution restarts exactly there (no smoothing).
* An infusion adds the constant ``rate`` (amount / time) to ``dy/dt`` of its compartment on
  ``[time, time + amount / rate)``; its start and end are restart points of the solution.
* A reset (NONMEM ``EVID`` 3, or 4 together with a dose) returns every state to the initial
  state ``y0`` before the doses at that time are given.
* An observation whose time equals an event time sees the state *after* the event, unless it
  is marked ``pre_dose`` (a trough sample drawn just before the dose); the NONMEM reader sets
  the flag from the record order (an observation row before a dose row at the same time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from bayesbio.errors import DataError, describe

__all__ = ["Dose", "Patient", "bolus", "infusion", "patient", "repeat", "reset"]


@dataclass(frozen=True)
class Dose:
    """One dosing event.

    Attributes
    ----------
    time : float
        Time of the dose (start of an infusion).
    amount : float
        Amount given (model units, e.g. mg); 0 for a pure reset.
    compartment : int
        0-based index of the state that receives the dose.
    rate : float
        0 for a bolus; otherwise the zero-order infusion rate (amount per time unit), and the
        infusion lasts ``amount / rate``.
    reset : bool
        Reset every state to ``y0`` at ``time`` before giving the dose (NONMEM EVID 3/4).
    """

    time: float
    amount: float
    compartment: int = 0
    rate: float = 0.0
    reset: bool = False

    @property
    def duration(self) -> float:
        """Infusion duration (0 for a bolus)."""
        return self.amount / self.rate if self.rate > 0 else 0.0

    @property
    def end(self) -> float:
        """End time of the infusion (``time`` for a bolus)."""
        return self.time + self.duration


def _finite(name: str, value, *, positive: bool = False, nonnegative: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a number; got {describe(value)}") from None
    if not math.isfinite(x):
        raise DataError(f"{name} must be finite; got {x}")
    if positive and not x > 0:
        raise DataError(f"{name} must be > 0; got {x}")
    if nonnegative and x < 0:
        raise DataError(f"{name} must be >= 0; got {x}")
    return x


def _compartment(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise DataError(f"{name} must be a non-negative integer (0-based state index); got {describe(value)}")
    return int(value)


def bolus(time: float, amount: float, compartment: int = 0) -> Dose:
    """An instantaneous dose: oral into a depot, or IV into the central compartment.

    Examples
    --------
    >>> bolus(0.0, 320.0, compartment=0)   # 320 mg into the depot (state 0) at t = 0
    Dose(time=0.0, amount=320.0, compartment=0, rate=0.0, reset=False)
    """
    return Dose(
        time=_finite("bolus: 'time'", time),
        amount=_finite("bolus: 'amount'", amount, positive=True),
        compartment=_compartment("bolus: 'compartment'", compartment),
    )


def infusion(
    time: float, amount: float, compartment: int = 0, *, rate: float | None = None, duration: float | None = None
) -> Dose:
    """A zero-order infusion of ``amount``, given either its ``rate`` or its ``duration``.

    Examples
    --------
    >>> infusion(2.0, 100.0, compartment=1, duration=0.5).rate   # 100 mg over 30 min
    200.0
    """
    amount = _finite("infusion: 'amount'", amount, positive=True)
    if (rate is None) == (duration is None):
        raise DataError(
            f"infusion: give exactly one of 'rate' and 'duration'; got rate={rate!r}, duration={duration!r}"
        )
    if rate is not None:
        rate = _finite("infusion: 'rate'", rate, positive=True)
    else:
        rate = amount / _finite("infusion: 'duration'", duration, positive=True)
    return Dose(
        time=_finite("infusion: 'time'", time),
        amount=amount,
        compartment=_compartment("infusion: 'compartment'", compartment),
        rate=rate,
    )


def reset(time: float) -> Dose:
    """Reset every state to the initial state at ``time`` (NONMEM EVID 3)."""
    return Dose(time=_finite("reset: 'time'", time), amount=0.0, compartment=0, rate=0.0, reset=True)


def repeat(dose: Dose, *, every: float, count: int) -> list[Dose]:
    """``dose`` and ``count - 1`` more copies every ``every`` time units (NONMEM ADDL/II:
    ``count = ADDL + 1``, ``every = II``).

    Examples
    --------
    >>> [d.time for d in repeat(bolus(0.0, 100.0), every=12.0, count=3)]
    [0.0, 12.0, 24.0]
    """
    every = _finite("repeat: 'every'", every, positive=True)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise DataError(f"repeat: 'count' must be an integer >= 1; got {describe(count)}")
    return [Dose(dose.time + i * every, dose.amount, dose.compartment, dose.rate, dose.reset) for i in range(count)]


@dataclass(frozen=True)
class Patient:
    """Every record of one patient: doses, observation times and values, covariates.

    Build it with :func:`patient`. ``obs_value`` is NaN where a record has no measurement
    (NONMEM MDV=1, EVID 2 prediction-only records): the prediction is computed there but
    does not enter the likelihood.
    """

    doses: tuple[Dose, ...]
    obs_time: np.ndarray
    obs_value: np.ndarray
    obs_compartment: np.ndarray
    pre_dose: np.ndarray
    covariates: Mapping[str, float] = field(default_factory=dict)
    id: Any = None

    @property
    def n_obs(self) -> int:
        return int(self.obs_time.shape[0])


def patient(
    doses: Sequence[Dose],
    obs_time,
    obs_value=None,
    *,
    obs_compartment=0,
    pre_dose=False,
    covariates: Mapping[str, float] | None = None,
    id: Any = None,
) -> Patient:
    """Records of one patient.

    Parameters
    ----------
    doses : sequence of Dose
        From :func:`bolus`, :func:`infusion`, :func:`reset`, :func:`repeat` (any order).
    obs_time : array, shape (n_obs,)
        Observation (or prediction-only) times, sorted in non-decreasing order.
    obs_value : array, shape (n_obs,), optional
        Measurements; NaN (or ``None`` for all) means prediction only.
    obs_compartment : int or array of int
        0-based index of the observed output for each record (carried to the batch as
        ``obs_cmt``; the model decides what it means, e.g. the state to divide by V).
    pre_dose : bool or array of bool
        Observations at exactly a dose time see the pre-dose state when True.
    covariates : dict, optional
        Baseline covariates, ``{name: value}``.
    id : optional
        The patient's identifier (kept for labels).
    """
    where = f"patient {id!r}" if id is not None else "patient"
    for d in doses:
        if not isinstance(d, Dose):
            raise DataError(f"{where}: 'doses' must contain Dose records (bolus(...), infusion(...)); got {describe(d)}")
    t = np.atleast_1d(np.asarray(obs_time, dtype=float))
    if t.ndim != 1:
        raise DataError(f"{where}: 'obs_time' must be 1-D; got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise DataError(f"{where}: 'obs_time' contains NaN or inf")
    if np.any(np.diff(t) < 0):
        i = int(np.argmax(np.diff(t) < 0))
        raise DataError(
            f"{where}: 'obs_time' must be sorted; obs_time[{i}] = {t[i]} is followed by {t[i + 1]}"
        )
    n = t.shape[0]
    v = np.full(n, np.nan) if obs_value is None else np.atleast_1d(np.asarray(obs_value, dtype=float))
    if v.shape != (n,):
        raise DataError(f"{where}: 'obs_value' must have shape ({n},) like obs_time; got {v.shape}")
    if np.any(np.isinf(v)):
        raise DataError(f"{where}: 'obs_value' contains inf; use NaN for a record without measurement")
    cmt = np.broadcast_to(np.asarray(obs_compartment), (n,)).astype(np.int64)
    if np.any(cmt < 0):
        raise DataError(f"{where}: 'obs_compartment' must be >= 0 (0-based); got {cmt.min()}")
    pre = np.broadcast_to(np.asarray(pre_dose, dtype=bool), (n,)).copy()
    covs = {}
    for k, val in (covariates or {}).items():
        covs[str(k)] = _finite(f"{where}: covariate '{k}'", val)
    return Patient(
        doses=tuple(sorted(doses, key=lambda d: d.time)),
        obs_time=t,
        obs_value=v,
        obs_compartment=cmt,
        pre_dose=pre,
        covariates=covs,
        id=id,
    )
