"""Reader for NONMEM-style population datasets (one row per record), via pandas.

Columns (standard NONMEM names; map other spellings with ``columns={"TIME": "TIME_h", ...}``):

========  ========  ===========================================================================
column    needed    meaning
========  ========  ===========================================================================
ID        yes       subject identifier; each subject's rows must be contiguous
TIME      yes       record time, non-decreasing within a subject
DV        with obs  dependent variable (the measurement) of observation records
AMT       with dose dose amount (> 0 on dose records)
EVID      no        0 observation, 1 dose, 2 other (prediction-only record), 3 reset,
                    4 reset and dose. Without the column: 1 where AMT > 0, else 0.
CMT       no        1-based compartment: where a dose goes, what an observation measures
                    (``default_dose_cmt`` / ``default_obs_cmt`` where absent or 0)
MDV       no        1 = no measurement on this record (EVID 0 rows with MDV 1 become
                    prediction-only); without the column MDV is 0 for observations
RATE      no        0 or missing = bolus; > 0 = zero-order infusion rate (AMT / time).
                    -1 / -2 (rate or duration modelled) are not supported
DUR       no        infusion duration (> 0), an alternative to RATE (as in rxode2/nlmixr2)
ADDL, II  no        ADDL additional doses every II time units after this one
SS        no        steady-state doses are not supported (must be 0 or missing)
========  ========  ===========================================================================

Covariate columns named in ``covariates=`` are read as baseline (per-subject) values; they
must be constant within a subject. Every malformed record raises
:class:`~bayesbio.errors.DataError` naming the row (0-based position in the table), the ID and
the column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from bayesbio.errors import DataError, describe
from bayesbio.population.batch import PopulationBatch, make_batch
from bayesbio.population.dosing import Dose, Patient, patient

__all__ = ["PopulationData", "read_nonmem", "EVID_SUPPORTED"]

#: NONMEM event identifiers this reader understands.
EVID_SUPPORTED = {0: "observation", 1: "dose", 2: "other (prediction-only)", 3: "reset", 4: "reset and dose"}

_STANDARD = ("ID", "TIME", "DV", "AMT", "EVID", "CMT", "MDV", "RATE", "DUR", "ADDL", "II", "SS")


@dataclass(frozen=True)
class PopulationData:
    """A population dataset: per-patient records, their padded batch and covariates.

    Attributes
    ----------
    patients : tuple of Patient
        One record set per subject, in order of first appearance.
    batch : PopulationBatch
        ``make_batch(patients, n_states=...)``.
    ids : numpy array (P,)
        Subject identifiers, in batch order.
    covariates : dict of numpy arrays (P,)
        Baseline covariates by column name.
    """

    patients: tuple[Patient, ...]
    batch: PopulationBatch
    ids: np.ndarray
    covariates: dict[str, np.ndarray]

    @property
    def n_patients(self) -> int:
        return len(self.patients)

    def to_dict(self) -> dict[str, Any]:
        """Model data: ``{"events": batch.to_dict(), "covariates": {...}}`` plus ``"id"`` when
        the identifiers are numeric (model data must be numeric)."""
        out: dict[str, Any] = {"events": self.batch.to_dict()}
        if self.covariates:
            out["covariates"] = {k: np.asarray(v, float) for k, v in self.covariates.items()}
        if self.ids.dtype.kind in "biuf":
            out["id"] = np.asarray(self.ids)
        return out


def _id_text(ident) -> str:
    if isinstance(ident, np.generic):
        ident = ident.item()
    return repr(ident) if isinstance(ident, str) else f"{ident:g}" if isinstance(ident, float) else str(ident)


def _where(row: int, ident, column: str | None = None) -> str:
    where = f"row {row} (ID {_id_text(ident)})"
    return f"{where}, column {column}" if column else where


def _numeric(table: pd.DataFrame, col: str, source: str) -> np.ndarray:
    values = pd.to_numeric(table[col], errors="coerce").to_numpy(float)
    bad = np.isnan(values) & table[col].notna().to_numpy()
    if bad.any():
        r = int(np.argmax(bad))
        raise DataError(f"{source}: row {r}, column {col}: expected a number; got {table[col].iloc[r]!r}")
    return values


def _as_int(values: np.ndarray, name: str, rows_ids, source: str) -> None:
    frac = ~np.isnan(values) & (values != np.round(values))
    if frac.any():
        r = int(np.argmax(frac))
        raise DataError(f"{source}: {_where(r, rows_ids[r], name)}: expected an integer; got {values[r]}")


def read_nonmem(
    source: str | os.PathLike | pd.DataFrame,
    *,
    n_states: int,
    columns: Mapping[str, str] | None = None,
    covariates: Sequence[str] = (),
    default_dose_cmt: int = 1,
    default_obs_cmt: int | None = None,
) -> PopulationData:
    """Read a NONMEM-style dataset into per-patient records and a padded batch.

    Parameters
    ----------
    source : path or DataFrame
        A CSV file or a table with the columns described in the module docstring.
    n_states : int
        Number of ODE states; ``CMT`` must lie in ``1..n_states``.
    columns : dict, optional
        ``{standard name: column in the table}`` for columns spelled differently, e.g.
        ``{"TIME": "TIME_h", "DV": "DV_conc_mg_per_L"}``.
    covariates : sequence of str
        Covariate columns (baseline, constant within a subject), returned by name.
    default_dose_cmt : int
        1-based compartment of doses without a ``CMT`` value (NONMEM's default dose
        compartment is the first one, e.g. the depot).
    default_obs_cmt : int, optional
        1-based compartment of observations without a ``CMT`` value; required when such
        records exist.

    Returns
    -------
    PopulationData
        Compartments are converted to 0-based indices (``obs_cmt``, dose compartments).

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"ID": [1, 1, 1], "TIME": [0.0, 1.0, 2.0], "AMT": [100.0, 0, 0],
    ...                       "EVID": [1, 0, 0], "CMT": [1, 2, 2], "DV": [None, 5.1, 3.9]})
    >>> data = read_nonmem(table, n_states=2)
    >>> data.batch.obs_value.tolist(), data.batch.obs_cmt.tolist()
    ([[5.1, 3.9]], [[1, 1]])
    """
    src = str(source) if not isinstance(source, pd.DataFrame) else "NONMEM table"
    if isinstance(source, pd.DataFrame):
        table = source.reset_index(drop=True)
    else:
        try:
            table = pd.read_csv(source)
        except FileNotFoundError:
            raise DataError(f"read_nonmem: file '{source}' does not exist") from None
        except Exception as exc:
            raise DataError(f"read_nonmem: could not read '{source}' as CSV: {exc}") from None
    if isinstance(n_states, bool) or not isinstance(n_states, (int, np.integer)) or n_states < 1:
        raise DataError(f"read_nonmem: 'n_states' must be a positive integer; got {describe(n_states)}")
    mapping = {k: k for k in _STANDARD}
    for k, v in (columns or {}).items():
        if k not in _STANDARD:
            raise DataError(f"read_nonmem: 'columns' maps unknown standard column {k!r}; known: {list(_STANDARD)}")
        mapping[k] = v
    for k in ("ID", "TIME"):
        if mapping[k] not in table.columns:
            raise DataError(
                f"{src}: missing required column {mapping[k]!r} ({k}); found columns {list(table.columns)}; "
                f"map another name with columns={{{k!r}: 'your_column'}}"
            )
    if len(table) == 0:
        raise DataError(f"{src}: the table has no rows")
    for c in covariates:
        if c not in table.columns:
            raise DataError(f"{src}: covariate column {c!r} not found; found columns {list(table.columns)}")
    has = {k: mapping[k] in table.columns for k in _STANDARD}
    n = len(table)

    ids = table[mapping["ID"]].to_numpy()
    if pd.isna(table[mapping["ID"]]).any():
        r = int(np.argmax(pd.isna(table[mapping["ID"]]).to_numpy()))
        raise DataError(f"{src}: row {r}, column {mapping['ID']}: missing ID")
    col = {k: (_numeric(table, mapping[k], src) if has[k] else None) for k in _STANDARD if k != "ID"}
    time = col["TIME"]
    if np.isnan(time).any() or np.isinf(time).any():
        r = int(np.argmax(~np.isfinite(time)))
        raise DataError(f"{src}: {_where(r, ids[r], mapping['TIME'])}: TIME must be a finite number; got {time[r]}")
    amt = col["AMT"] if has["AMT"] else np.zeros(n)
    amt_missing = np.isnan(amt)
    if has["EVID"]:
        evid = col["EVID"]
        _as_int(evid, mapping["EVID"], ids, src)
        if np.isnan(evid).any():
            r = int(np.argmax(np.isnan(evid)))
            raise DataError(f"{src}: {_where(r, ids[r], mapping['EVID'])}: missing EVID")
        bad = ~np.isin(evid, list(EVID_SUPPORTED))
        if bad.any():
            r = int(np.argmax(bad))
            raise DataError(
                f"{src}: {_where(r, ids[r], mapping['EVID'])}: unsupported EVID {evid[r]:g}; expected NONMEM "
                f"event ids {EVID_SUPPORTED} (rxode2's 101/102... codes: convert to EVID 1 with CMT)"
            )
        evid = evid.astype(int)
    else:
        evid = np.where(np.nan_to_num(amt) > 0, 1, 0)
    is_dose = np.isin(evid, (1, 4))
    bad = is_dose & (amt_missing | (np.nan_to_num(amt) <= 0))
    if bad.any():
        r = int(np.argmax(bad))
        what = "missing" if amt_missing[r] else f"{amt[r]:g}"
        raise DataError(
            f"{src}: {_where(r, ids[r], mapping['AMT'])}: dose record (EVID {evid[r]}) without a positive "
            f"amount; got AMT {what}" + ("" if has["AMT"] else f" (no {mapping['AMT']!r} column)")
        )
    mdv = np.zeros(n) if not has["MDV"] else np.nan_to_num(col["MDV"], nan=0.0)
    if has["MDV"] and (~np.isin(mdv, (0, 1))).any():
        r = int(np.argmax(~np.isin(mdv, (0, 1))))
        raise DataError(f"{src}: {_where(r, ids[r], mapping['MDV'])}: MDV must be 0 or 1; got {mdv[r]:g}")
    dv = col["DV"] if has["DV"] else np.full(n, np.nan)
    is_obs = evid == 0
    bad = is_obs & (mdv == 0) & np.isnan(dv)
    if bad.any():
        r = int(np.argmax(bad))
        raise DataError(
            f"{src}: {_where(r, ids[r], mapping['DV'])}: observation (EVID 0, MDV 0) with a missing DV; "
            "set MDV=1 (or EVID 2) for a record without a measurement"
            + ("" if has["DV"] else f" (no {mapping['DV']!r} column)")
        )
    if has["DV"] and np.isinf(dv).any():
        r = int(np.argmax(np.isinf(dv)))
        raise DataError(f"{src}: {_where(r, ids[r], mapping['DV'])}: DV is infinite")
    if has["SS"]:
        ss = np.nan_to_num(col["SS"])
        if (ss != 0).any():
            r = int(np.argmax(ss != 0))
            raise DataError(f"{src}: {_where(r, ids[r], mapping['SS'])}: steady-state doses (SS={ss[r]:g}) are not supported")
    rate = np.nan_to_num(col["RATE"]) if has["RATE"] else np.zeros(n)
    bad = is_dose & (rate < 0)
    if bad.any():
        r = int(np.argmax(bad))
        raise DataError(
            f"{src}: {_where(r, ids[r], mapping['RATE'])}: RATE {rate[r]:g} (modelled rate/duration) is not "
            "supported; give the infusion rate (> 0) or its duration in a DUR column"
        )
    dur = np.nan_to_num(col["DUR"]) if has["DUR"] else np.zeros(n)
    bad = is_dose & ((dur < 0) | ((dur > 0) & (rate > 0)))
    if bad.any():
        r = int(np.argmax(bad))
        raise DataError(
            f"{src}: {_where(r, ids[r], mapping['DUR'])}: DUR must be >= 0 and not given together with RATE > 0; "
            f"got DUR {dur[r]:g}, RATE {rate[r]:g}"
        )
    addl = np.nan_to_num(col["ADDL"]) if has["ADDL"] else np.zeros(n)
    ii = np.nan_to_num(col["II"]) if has["II"] else np.zeros(n)
    if has["ADDL"]:
        _as_int(addl, mapping["ADDL"], ids, src)
    bad = is_dose & ((addl < 0) | ((addl > 0) & (ii <= 0)))
    if bad.any():
        r = int(np.argmax(bad))
        raise DataError(
            f"{src}: {_where(r, ids[r], mapping['ADDL'])}: ADDL must be >= 0 and needs II > 0; got ADDL {addl[r]:g}, II {ii[r]:g}"
        )

    cmt_raw = col["CMT"] if has["CMT"] else np.full(n, np.nan)
    if has["CMT"]:
        _as_int(cmt_raw, mapping["CMT"], ids, src)
    cmt_given = ~np.isnan(cmt_raw) & (cmt_raw != 0)
    cmt = np.where(cmt_given, cmt_raw, np.nan)
    cmt = np.where(~cmt_given & is_dose, default_dose_cmt, cmt)
    needs_obs_cmt = ~cmt_given & np.isin(evid, (0, 2))
    if needs_obs_cmt.any():
        if default_obs_cmt is None:
            r = int(np.argmax(needs_obs_cmt))
            raise DataError(
                f"{src}: {_where(r, ids[r], mapping['CMT'])}: observation record without a compartment; add a CMT "
                "column or pass default_obs_cmt= (1-based)"
            )
        cmt = np.where(needs_obs_cmt, default_obs_cmt, cmt)
    check = np.isin(evid, (0, 1, 2, 4))
    bad = check & ((cmt < 1) | (cmt > n_states))
    if bad.any():
        r = int(np.argmax(bad))
        raise DataError(
            f"{src}: {_where(r, ids[r], mapping['CMT'])}: unknown compartment CMT={cmt[r]:g}; the model has "
            f"n_states={n_states} compartments (valid CMT 1..{n_states})"
        )
    cmt0 = np.where(np.isnan(cmt), 0, cmt - 1).astype(int)

    # subjects: contiguous blocks, times sorted within each
    codes, uniques = pd.factorize(table[mapping["ID"]], sort=False)
    change = np.flatnonzero(np.diff(codes) != 0) + 1
    starts = np.concatenate([[0], change])
    block_codes = codes[starts]
    if len(np.unique(block_codes)) != len(block_codes):
        seen: dict[int, int] = {}
        for s, c in zip(starts, block_codes):
            if c in seen:
                raise DataError(
                    f"{src}: ID {_id_text(uniques[c])} appears in two separate blocks (rows {seen[c]} and {s}); "
                    "sort the table by ID (keeping each subject's record order)"
                )
            seen[c] = s
    ends = np.append(starts[1:], n)
    patients, cov_values = [], {c: [] for c in covariates}
    for s, e in zip(starts, ends):
        ident = ids[s].item() if isinstance(ids[s], np.generic) else ids[s]
        t = time[s:e]
        if (np.diff(t) < 0).any():
            j = int(np.argmax(np.diff(t) < 0))
            raise DataError(
                f"{src}: {_where(s + j + 1, ident, mapping['TIME'])}: times are not sorted within the subject: "
                f"TIME {t[j + 1]:g} follows {t[j]:g} (row {s + j})"
            )
        for c in covariates:
            v = pd.to_numeric(table[c].iloc[s:e], errors="coerce").to_numpy(float)
            if np.isnan(v).any():
                r = s + int(np.argmax(np.isnan(v)))
                raise DataError(f"{src}: {_where(r, ident, c)}: covariate missing or not numeric; got {table[c].iloc[r]!r}")
            if (v != v[0]).any():
                r = s + int(np.argmax(v != v[0]))
                raise DataError(
                    f"{src}: {_where(r, ident, c)}: covariate changes within the subject ({v[0]:g} -> {table[c].iloc[r]!r}); "
                    "only baseline (constant) covariates are supported"
                )
            cov_values[c].append(v[0])
        doses: list[Dose] = []
        obs_rows = []
        for r in range(s, e):
            ev = evid[r]
            if ev in (3, 4):
                doses.append(Dose(time[r], 0.0, 0, 0.0, True))
            if ev in (1, 4):
                d_rate = rate[r] if rate[r] > 0 else (amt[r] / dur[r] if dur[r] > 0 else 0.0)
                for k in range(int(addl[r]) + 1):
                    doses.append(Dose(time[r] + k * ii[r], float(amt[r]), int(cmt0[r]), float(d_rate), False))
            if ev in (0, 2):
                obs_rows.append(r)
        if not obs_rows:
            raise DataError(f"{src}: ID {_id_text(ident)} (rows {s}..{e - 1}) has no observation or EVID 2 record")
        obs_rows = np.asarray(obs_rows)
        dose_rows = np.asarray([r for r in range(s, e) if evid[r] in (1, 3, 4)], dtype=int)
        # an observation row before a dose row at the same time is a pre-dose (trough) sample
        pre = np.array([any(time[d] == time[r] and d > r for d in dose_rows) for r in obs_rows], dtype=bool)
        values = np.where((evid[obs_rows] == 0) & (mdv[obs_rows] == 0), dv[obs_rows], np.nan)
        patients.append(
            patient(
                doses, time[obs_rows], values, obs_compartment=cmt0[obs_rows], pre_dose=pre,
                covariates={c: cov_values[c][-1] for c in covariates}, id=ident,
            )
        )
    batch = make_batch(patients, n_states=int(n_states))
    return PopulationData(
        patients=tuple(patients),
        batch=batch,
        ids=np.asarray([p.id for p in patients]),
        covariates={c: np.asarray(v, float) for c, v in cov_values.items()},
    )
