"""MovieLens-100K: GroupLens ``u.data`` / ``u.item``, or RecBole's ``ml-100k.inter`` / ``.item`` found
automatically (nothing downloads at import time; :func:`locate_ml100k` may fetch the ``recbole`` wheel from PyPI once)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pandas as pd

from ...config import DataConfig
from ...errors import AssetError, DataError
from ...hub.wheels import default_cache_dir, wheel_asset
from ...registry import register_source
from ..schema import parse_int_ids
from .atomic import load_recbole_atomic
from .files import check_dir, check_file, read_csv
from .raw import RawDataset

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]


def locate_ml100k(cache_dir: Path | None = None) -> Path:
    """Directory holding RecBole's ``ml-100k.inter``/``.item``.

    Order: ``$SEMCOLLAB_ML100K``; an installed ``recbole`` package; a copy extracted earlier into the
    cache; else ``pip download --no-deps recbole==1.2.1`` (PyPI only) and extract the two files."""
    env = os.environ.get("SEMCOLLAB_ML100K")
    if env:
        return Path(env)
    try:
        spec = importlib.util.find_spec("recbole")
        if spec and spec.submodule_search_locations:
            cand = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
            if (cand / "ml-100k.inter").exists():
                return cand
    except (ImportError, ValueError):
        pass
    target = Path(cache_dir or default_cache_dir()) / "recbole-ml-100k" / "ml-100k"
    members = {f: f"recbole/dataset_example/ml-100k/{f}" for f in ("ml-100k.inter", "ml-100k.item")}
    try:
        return wheel_asset("recbole==1.2.1", members, target)
    except AssetError as exc:
        raise DataError(
            f"could not obtain MovieLens-100K (no recbole package installed): {exc}\n"
            "Point SEMCOLLAB_ML100K (or data.path) at a folder with ml-100k.inter and ml-100k.item."
        ) from None


def load_ml100k_raw(directory: Path) -> RawDataset:
    """GroupLens ``u.data`` (tab: user item rating timestamp) and ``u.item`` (pipe, latin-1)."""
    directory = check_dir(directory, "u.data")
    data_path = check_file(directory / "u.data")
    inter = read_csv(data_path, sep="\t", header=None, names=["user", "item", "rating", "timestamp"], dtype=str)
    for col in ("user", "item"):
        inter[col] = parse_int_ids(inter[col], str(data_path), col).astype(str)
    items = None
    item_path = directory / "u.item"
    if item_path.exists():
        check_file(item_path)
        raw = read_csv(item_path, encoding="latin-1", sep="|", header=None, dtype=str, keep_default_na=False)
        if raw.shape[1] != 24:
            raise DataError(f"{item_path}: expected 24 '|' separated columns, found {raw.shape[1]}")
        flags = raw.iloc[:, 5:]
        bad = ~flags.isin(["0", "1"])
        if bad.to_numpy().any():
            row, col = (int(x[0]) for x in bad.to_numpy().nonzero())
            raise DataError(f"{item_path}: genre flag column {col + 5} must be 0 or 1; row {row} has "
                            f"{flags.iat[row, col]!r}")
        flags = flags.astype(int).to_numpy()
        genres = [" ".join(g for g, f in zip(ML100K_GENRES, row) if f) for row in flags]
        items = pd.DataFrame({"item": raw[0], "title": raw[1], "release_date": raw[2], "genres": genres})
    if items is None:
        items = pd.DataFrame({"item": inter["item"].unique()})
    fields = [c for c in ("title", "genres", "release_date") if c in items.columns]
    return RawDataset("ml-100k", inter, items, fields, [data_path] + ([item_path] if item_path.exists() else []))


@register_source("ml-100k", help="MovieLens-100K: data.path with u.data (GroupLens) or ml-100k.inter (RecBole); "
                 "found automatically without one")
def ml100k_source(cfg: DataConfig, arg: str | None) -> RawDataset:
    path = Path(cfg.path) if cfg.path else locate_ml100k(cfg.cache_dir)
    if (path / "u.data").exists():
        return load_ml100k_raw(path)
    return load_recbole_atomic(path, "ml-100k")
