"""Helpers for tabular input (CSV files read with pandas)."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from bayesbio.errors import DataError, describe

__all__ = ["require_columns"]


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
