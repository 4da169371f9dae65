"""RecBole atomic files: ``<name>.inter`` and optionally ``<name>.item`` (``--dataset atomic:<name>``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...config import DataConfig
from ...errors import DataError
from ...registry import register_source
from ..schema import require_columns
from .files import check_dataset_name, check_dir, check_file, read_csv
from .raw import RawDataset


def read_atomic(path: Path) -> pd.DataFrame:
    """Read one RecBole atomic file (``name:type`` headers, tab separated); drops the type suffix."""
    path = check_file(path)
    df = read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


def load_recbole_atomic(directory: Path, name: str | None = None) -> RawDataset:
    """Load ``<dir>/<name>.inter`` and, if present, ``<dir>/<name>.item`` (RecBole atomic format)."""
    directory = Path(directory)
    name = check_dataset_name(name, "atomic") if name else directory.name
    check_dir(directory, f"{name}.inter")
    inter_path = directory / f"{name}.inter"
    inter = read_atomic(inter_path)
    cols = {"user_id": "user", "item_id": "item", "timestamp": "timestamp", "rating": "rating"}
    require_columns(inter, ["user_id", "item_id", "timestamp"], str(inter_path))
    inter = inter[[c for c in cols if c in inter.columns]].rename(columns=cols)
    item_path = directory / f"{name}.item"
    if item_path.exists():
        check_file(item_path)
        items = read_atomic(item_path).rename(columns={"item_id": "item"})
        require_columns(items, ["item"], str(item_path))
        text_fields = [c for c in items.columns if c != "item"]
        # RecBole's ml-100k uses 'movie_title' and 'class'; give them readable names
        items = items.rename(columns={"movie_title": "title", "class": "genres", "release_year": "year"})
        text_fields = [{"movie_title": "title", "class": "genres", "release_year": "year"}.get(c, c) for c in text_fields]
    else:
        items = pd.DataFrame({"item": inter["item"].unique()})
        text_fields = []
    return RawDataset(name, inter, items, text_fields, [inter_path] + ([item_path] if item_path.exists() else []))


@register_source("atomic", argument="<name>", help="RecBole atomic files: data.path is the folder with <name>.inter")
def atomic_source(cfg: DataConfig, arg: str | None) -> RawDataset:
    if not cfg.path:
        raise DataError("atomic datasets need data.path (the folder with <name>.inter)")
    return load_recbole_atomic(Path(cfg.path), arg)
