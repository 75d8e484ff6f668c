"""Helpers for tabular input (CSV files read with pandas)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from bayesbio.errors import DataError, describe

__all__ = ["numeric_column", "read_table", "require_columns"]


def read_table(path, **read_csv_options) -> pd.DataFrame:
    """``pandas.read_csv(path)``, with a :class:`DataError` naming the file when it is missing,
    empty or not parseable (instead of pandas' or the OS's own exception)."""
    import os

    if not os.path.isfile(path):
        raise DataError(f"data file '{os.fspath(path)}' does not exist")
    try:
        return pd.read_csv(path, **read_csv_options)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file '{os.fspath(path)}' is empty; expected a CSV table with a header") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"data file '{os.fspath(path)}' is not a readable CSV table: {exc}") from None


def require_columns(table, columns: Sequence[str], *, source: str = "table") -> None:
    """Raise :class:`~bayesbio.errors.DataError` naming every missing column of ``table``."""
    if not isinstance(table, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame; got {describe(table)}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {missing}; expected columns {list(columns)}, "
            f"found {list(table.columns)}"
        )
    if len(table) == 0:
        raise DataError(f"{source}: the table has no rows")


def numeric_column(
    table,
    column: str,
    *,
    source: str = "table",
    allow_missing: bool = False,
    positive: bool = False,
    nonnegative: bool = False,
    increasing: bool = False,
) -> np.ndarray:
    """Column ``column`` of ``table`` as a float array, checked; else a :class:`DataError`.

    The message names the source, the column, the first offending row (0-based, as pandas
    counts) and its value. ``allow_missing``: empty cells/NaN are kept as NaN (missing
    records, e.g. for :func:`bayesbio.observe`); otherwise they are an error. ``positive`` /
    ``nonnegative`` restrict the non-missing values; ``increasing`` requires strictly
    increasing values (sorted, no duplicates), as time columns need.
    """
    require_columns(table, [column], source=source)
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    if raw.dtype == bool:
        raise DataError(f"{source}: column '{column}' must be numeric; got booleans")
    bad_text = np.isnan(values) & raw.notna().to_numpy()
    if bad_text.any():
        row = int(np.argmax(bad_text))
        raise DataError(
            f"{source}: column '{column}' must be numeric; row {row} holds {raw.iloc[row]!r}"
        )
    if np.isinf(values).any():
        row = int(np.argmax(np.isinf(values)))
        raise DataError(f"{source}: column '{column}' must be finite; row {row} holds {values[row]}")
    missing = np.isnan(values)
    if missing.any() and not allow_missing:
        raise DataError(
            f"{source}: column '{column}' has a missing value (empty or NaN) in row {int(np.argmax(missing))}; "
            "expected a value in every row"
        )
    for flag, bad, expected in (
        (positive, values <= 0, "positive"),
        (nonnegative, values < 0, "non-negative"),
    ):
        if flag and np.any(bad & ~missing):
            row = int(np.argmax(bad & ~missing))
            raise DataError(
                f"{source}: column '{column}' must be {expected}; row {row} holds {values[row]:g}"
            )
    if increasing:
        steps = np.diff(values)
        if np.any(steps <= 0):
            row = int(np.argmax(steps <= 0)) + 1
            what = "duplicates" if steps[row - 1] == 0 else "is smaller than"
            raise DataError(
                f"{source}: column '{column}' must be strictly increasing (sorted, no duplicates); "
                f"row {row} ({values[row]:g}) {what} row {row - 1} ({values[row - 1]:g})"
            )
    return values
