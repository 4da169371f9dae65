"""Any CSV / TSV / Parquet table of interactions with named columns (``--dataset table``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...config import DataConfig
from ...errors import DataError
from ...registry import register_source
from ..schema import id_strings, parse_timestamps
from .files import read_table, require_table_columns, text_column
from .raw import RawDataset


def load_table(
    path: Path, user_col: str = "user", item_col: str = "item", time_col: str = "timestamp",
    rating_col: str | None = None, items_path: Path | None = None, item_text_cols: list[str] | None = None,
    name: str | None = None,
) -> RawDataset:
    """Any CSV/TSV/Parquet table with named user/item/time columns (+ optional item table).

    * ids are strings exactly as written (``007`` and ``7`` are two users); Parquet integer ids print
      plainly (``7``);
    * the time column may hold numbers (int64 kept when integral, float64 otherwise, so sub-second order
      survives), ISO 8601 dates or a datetime column (seconds since the epoch, UTC); see
      :func:`~semcollab.data.schema.parse_timestamps`;
    * ``items_path``: an item table keyed by ``item_col`` (read as strings too, so its ids join the
      interactions exactly). Its text fields are ``item_text_cols`` if given, else **every other column
      in file order**, numeric ones included (rendered as text, e.g. ``year: 1995``); missing cells give
      ``''``. Items without a row in the item table get empty text; a repeated item id is an error.

    Every error names the file, the column and the first offending row."""
    path = Path(path)
    roles = {"user_col": user_col, "item_col": item_col, "time_col": time_col}
    if rating_col:
        roles["rating_col"] = rating_col
    if len(set(roles.values())) != len(roles):
        raise DataError(f"{path}: the same column is configured for two roles ({roles}); give each its own column")
    df = read_table(path)
    require_table_columns(df, list(roles.values()), path)
    src = str(path)
    inter = pd.DataFrame({
        "user": id_strings(df[user_col], src, user_col),
        "item": id_strings(df[item_col], src, item_col),
        "timestamp": parse_timestamps(df[time_col], src, time_col),
    })
    if rating_col:
        raw_r = df[rating_col].reset_index(drop=True)
        r = pd.to_numeric(raw_r.astype(object).where(raw_r.astype(object) != "", None), errors="coerce")
        if r.isna().any():
            row = int(r.isna().to_numpy().nonzero()[0][0])
            raise DataError(f"{path}: column '{rating_col}' must be numeric; row {row} has {raw_r.iloc[row]!r}")
        inter["rating"] = r
    if items_path is not None:
        ipath = Path(items_path)
        table = read_table(ipath)
        require_table_columns(table, [item_col], ipath)
        ids = id_strings(table[item_col], str(ipath), item_col)
        dup = ids.duplicated()
        if dup.any():
            row = int(dup.to_numpy().nonzero()[0][0])
            raise DataError(f"{ipath}: column '{item_col}' repeats item id {ids.iloc[row]!r}; first repeat at row {row}")
        fields = list(item_text_cols) if item_text_cols else [c for c in table.columns if c != item_col]
        require_table_columns(table, fields, ipath)
        if item_col in fields or "item" in fields:
            raise DataError(f"{ipath}: item text column(s) {fields} include the id column or a column named "
                            "'item'; rename it or leave it out of data.item_text_cols")
        items = pd.DataFrame({"item": ids})
        for c in fields:
            items[c] = text_column(table[c])
    else:
        items, fields = pd.DataFrame({"item": pd.unique(inter["item"])}), []
    return RawDataset(name or path.stem, inter, items, fields, [path] + ([Path(items_path)] if items_path else []))


@register_source("table", help="a CSV / TSV / Parquet table: data.path, data.user_col / item_col / time_col")
def table_source(cfg: DataConfig, arg: str | None) -> RawDataset:
    if not cfg.path:
        raise DataError("table needs data.path (CSV/TSV/Parquet) and data.user_col/item_col/time_col")
    return load_table(Path(cfg.path), cfg.user_col, cfg.item_col, cfg.time_col, cfg.rating_col,
                      Path(cfg.meta_path) if cfg.meta_path else None, cfg.item_text_cols)
