"""Validation of the canonical interaction table.

The canonical table has columns ``user``, ``item``, ``timestamp`` and optionally ``rating``.
Loaders rename their source columns to these names and call :func:`validate_interactions`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import DataError

REQUIRED = ("user", "item", "timestamp")


def _first_bad_row(mask: pd.Series) -> int:
    return int(np.flatnonzero(mask.to_numpy())[0])


def require_columns(df: pd.DataFrame, columns, source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found columns {list(df.columns)}")


def validate_interactions(df: pd.DataFrame, source: str, duplicates: str = "error") -> tuple[pd.DataFrame, int]:
    """Check the canonical table and return ``(clean_df, n_duplicates_dropped)``.

    ``duplicates``: ``"error"`` raises on repeated (user, item, timestamp) events, ``"drop"`` keeps the
    first of each and reports how many were dropped, ``"keep"`` keeps them all (repeat consumption)."""
    require_columns(df, REQUIRED, source)
    if len(df) == 0:
        raise DataError(f"{source}: no interactions (the table is empty)")
    for col in ("user", "item", "timestamp") + (("rating",) if "rating" in df.columns else ()):
        na = df[col].isna()
        if na.any():
            row = _first_bad_row(na)
            raise DataError(f"{source}: column '{col}' has {int(na.sum())} missing/NaN value(s); first at row {row}")
    ts = pd.to_numeric(df["timestamp"], errors="coerce")
    bad = ts.isna()
    if bad.any():
        row = _first_bad_row(bad)
        raise DataError(
            f"{source}: column 'timestamp' must be numeric (unix time or an order index); "
            f"row {row} has {df['timestamp'].iloc[row]!r}"
        )
    out = df.copy()
    out["timestamp"] = ts.astype("int64")
    if "rating" in out.columns:
        r = pd.to_numeric(out["rating"], errors="coerce")
        if r.isna().any():
            row = _first_bad_row(r.isna())
            raise DataError(f"{source}: column 'rating' must be numeric; row {row} has {out['rating'].iloc[row]!r}")
        out["rating"] = r.astype("float32")
    # ids are kept as strings so that '007' and '7' stay distinct and vocabularies are portable
    for col in ("user", "item"):
        out[col] = out[col].astype(str)
    dup = out.duplicated(["user", "item", "timestamp"], keep="first")
    n_dup = int(dup.sum())
    if n_dup:
        if duplicates == "error":
            row = _first_bad_row(dup)
            raise DataError(
                f"{source}: {n_dup} duplicate (user, item, timestamp) event(s); first at row {row} "
                f"(user={out['user'].iloc[row]}, item={out['item'].iloc[row]}). "
                "Set data.duplicates=drop to keep the first of each, or data.duplicates=keep for repeat events."
            )
        if duplicates == "drop":
            out = out[~dup]
        elif duplicates != "keep":
            raise DataError(f"data.duplicates must be one of error/drop/keep, got {duplicates!r}")
    return out.reset_index(drop=True), (n_dup if duplicates == "drop" else 0)


def parse_int_ids(series: pd.Series, source: str, column: str) -> pd.Series:
    """Parse an id column that the format defines as integer, naming the first bad row."""
    val = pd.to_numeric(series, errors="coerce")
    bad = val.isna()
    if bad.any():
        row = _first_bad_row(bad)
        raise DataError(f"{source}: column '{column}' must hold integer ids; row {row} has {series.iloc[row]!r}")
    return val.astype("int64")
