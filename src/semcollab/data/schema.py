"""Validation of the canonical interaction table.

The canonical table has columns ``user``, ``item``, ``timestamp`` and optionally ``rating``.
Loaders rename their source columns to these names and call :func:`validate_interactions`."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from ..errors import DataError

REQUIRED = ("user", "item", "timestamp")


def _first_bad_row(mask: pd.Series) -> int:
    return int(np.flatnonzero(mask.to_numpy())[0])


def require_columns(df: pd.DataFrame, columns, source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found columns {list(df.columns)}")


def _describe(value) -> str:
    return "an empty/missing value" if value is None or (isinstance(value, str) and value.strip() == "") \
        or (isinstance(value, float) and np.isnan(value)) else repr(value)


def _seconds_from_datetimes(dt: pd.Series) -> pd.Series:
    """UTC datetimes -> seconds since the epoch: int64 when every value is a whole second, else float64.

    float64 seconds keep microseconds for present-day dates; should that ever merge two distinct
    instants (nanosecond data), the exact int64 count in the column's own unit is kept instead."""
    naive = dt.dt.tz_convert(None) if getattr(dt.dt, "tz", None) is not None else dt
    unit = np.datetime_data(naive.dtype)[0]
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    ticks = naive.astype("int64")
    if (ticks % per_second == 0).all():
        return (ticks // per_second).astype("int64")
    secs = ticks / per_second
    if secs.nunique() < ticks.nunique():
        return ticks
    return secs.astype("float64")


def _numeric_timestamps(ts: pd.Series, source: str, column: str, original: pd.Series) -> pd.Series:
    """Finite numeric timestamps: int64 when every value is integral (and exact), else float64 (never truncated)."""
    if pd.api.types.is_bool_dtype(ts):
        raise DataError(f"{source}: column '{column}' holds booleans, not timestamps")
    ts = ts.reset_index(drop=True)
    if pd.api.types.is_integer_dtype(ts) and not ts.isna().any() and (len(ts) == 0 or ts.max() <= 2**63 - 1):
        return ts.astype("int64")
    values = ts.to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: column '{column}' must hold finite numbers; row {row} has "
                        f"{_describe(original.iloc[row])}")
    if np.all(values == np.floor(values)) and np.all(np.abs(values) < 2**53):
        return pd.Series(values.astype("int64"), index=ts.index)
    return pd.Series(values, index=ts.index, dtype="float64")


def parse_timestamps(series: pd.Series, source: str, column: str = "timestamp") -> pd.Series:
    """Parse a time column: numbers (unix time or an order index) or date strings, never truncated.

    * numbers stay numbers: int64 when all are integral, float64 otherwise (fractions keep the order);
    * datetime columns and date strings become seconds since 1970-01-01 UTC (naive dates count as UTC),
      int64 when every value is a whole second, else float64 with the sub-second part. Strings are
      parsed as ISO 8601 (``2020-01-02``, ``2020-01-02T10:00:00.5``, with or without a UTC offset); a
      column in another single format that pandas can infer from its first value (``01/02/2020``) works too;
    * a column mixing dates with anything else (numbers, junk, empty cells) is a DataError naming the
      first value that is not a date; nothing is silently turned into NaT."""
    series = series.reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(series):
        na = series.isna()
        if na.any():
            row = _first_bad_row(na)
            raise DataError(f"{source}: column '{column}' has a missing date at row {row}")
        return _seconds_from_datetimes(series)
    if pd.api.types.is_numeric_dtype(series):
        return _numeric_timestamps(series, source, column, series)
    text = series.astype(object)
    num = pd.to_numeric(text, errors="coerce")
    if num.notna().all():
        return _numeric_timestamps(num, source, column, series)
    is_str = text.map(lambda v: isinstance(v, str))
    dates = pd.Series(pd.NaT, index=series.index, dtype="datetime64[ns, UTC]")
    if is_str.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                dates = pd.to_datetime(text.where(is_str), format="ISO8601", errors="coerce", utc=True)
            except (ValueError, TypeError, OverflowError):
                pass
            if dates.isna().any():
                first = text[is_str & (text.astype(str).str.strip() != "")]
                fmt = guess_datetime_format(str(first.iloc[0])) if len(first) else None
                if fmt:
                    try:
                        alt = pd.to_datetime(text.where(is_str), format=fmt, errors="coerce", utc=True)
                        if alt.notna().sum() > dates.notna().sum():
                            dates = alt
                    except (ValueError, TypeError, OverflowError):
                        pass
    if dates.notna().any():
        bad = dates.isna()
        if not bad.any():
            return _seconds_from_datetimes(dates)
        row = _first_bad_row(bad)
        raise DataError(
            f"{source}: column '{column}' holds dates, but row {row} has {_describe(series.iloc[row])}, "
            "which is not a date in the same format (use ISO 8601, e.g. 2020-01-02T10:00:00.5)"
        )
    row = _first_bad_row(num.isna())
    raise DataError(
        f"{source}: column '{column}' must be numeric (unix time or an order index) or ISO 8601 dates; "
        f"row {row} has {_describe(series.iloc[row])}"
    )


def validate_interactions(df: pd.DataFrame, source: str, duplicates: str = "error") -> tuple[pd.DataFrame, int]:
    """Check the canonical table and return ``(clean_df, n_duplicates_dropped)``.

    Ids become strings exactly as given (``'007'`` and ``'7'`` stay distinct; an empty id is an error).
    Timestamps go through :func:`parse_timestamps`: int64 when integral, else float64, never truncated.

    ``duplicates``: ``"error"`` raises on repeated (user, item, timestamp) events, ``"drop"`` keeps the
    first of each and reports how many were dropped, ``"keep"`` keeps them all (repeat consumption)."""
    require_columns(df, REQUIRED, source)
    if duplicates not in ("error", "drop", "keep"):
        raise DataError(f"data.duplicates must be one of error/drop/keep, got {duplicates!r}")
    if len(df) == 0:
        raise DataError(f"{source}: no interactions (the table is empty)")
    df = df.reset_index(drop=True)
    for col in ("user", "item", "timestamp") + (("rating",) if "rating" in df.columns else ()):
        na = df[col].isna()
        if na.any():
            row = _first_bad_row(na)
            raise DataError(f"{source}: column '{col}' has {int(na.sum())} missing/NaN value(s); first at row {row}")
    out = df.copy()
    out["timestamp"] = parse_timestamps(df["timestamp"], source, "timestamp")
    if "rating" in out.columns:
        r = pd.to_numeric(out["rating"].astype(object), errors="coerce")
        bad = ~np.isfinite(r.to_numpy(dtype="float64", na_value=np.nan))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{source}: column 'rating' must be a finite number; row {row} has "
                            f"{_describe(df['rating'].iloc[row])}")
        out["rating"] = r.astype("float32")
    # ids are kept as strings so that '007' and '7' stay distinct and vocabularies are portable
    for col in ("user", "item"):
        out[col] = id_strings(df[col], source, col)
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
    return out.reset_index(drop=True), (n_dup if duplicates == "drop" else 0)


def id_strings(series: pd.Series, source: str, column: str) -> pd.Series:
    """An id column as strings, exactly as written: text stays as is (``'007'``), integers print plainly
    (``7``), integral floats (an integer column that went through NaN) print as integers. A missing or
    empty id is a DataError naming the first such row."""
    series = series.reset_index(drop=True)
    na = series.isna()
    if na.any():
        raise DataError(f"{source}: column '{column}' has {int(na.sum())} missing id(s); first at row "
                        f"{_first_bad_row(na)}")
    if pd.api.types.is_float_dtype(series):
        vals = series.to_numpy(dtype="float64")
        if np.all(np.isfinite(vals)) and np.all(vals == np.floor(vals)) and np.all(np.abs(vals) < 2**63):
            series = pd.Series(vals.astype("int64"))
        else:
            series = pd.Series([repr(float(v)) for v in vals])
    if pd.api.types.is_object_dtype(series):
        series = series.map(lambda v: v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v)
    out = series.astype(str)
    empty = out.str.strip() == ""
    if empty.any():
        raise DataError(f"{source}: column '{column}' has {int(empty.sum())} empty id(s); first at row "
                        f"{_first_bad_row(empty)}")
    return out


def parse_int_ids(series: pd.Series, source: str, column: str) -> pd.Series:
    """Parse an id column that the format defines as integer, naming the first bad row."""
    val = pd.to_numeric(series, errors="coerce")
    bad = val.isna()
    if bad.any():
        row = _first_bad_row(bad)
        raise DataError(f"{source}: column '{column}' must hold integer ids; row {row} has {series.iloc[row]!r}")
    return val.astype("int64")
