"""MovieLens-1M: GroupLens ``ratings.dat`` and ``movies.dat``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...config import DataConfig
from ...errors import DataError
from ...registry import register_source
from ..schema import parse_int_ids
from .files import check_dir, check_file, read_text
from .raw import RawDataset


def _split_lines(path: Path, sep: str, n_fields: int, encoding: str = "latin-1") -> list[list[str]]:
    """Non-blank lines split on ``sep``; a line without exactly ``n_fields`` fields names its row."""
    lines = read_text(path, encoding).splitlines()
    rows = []
    for lineno, ln in enumerate(lines):
        if not ln:
            continue
        parts = ln.split(sep)
        if len(parts) != n_fields:
            raise DataError(f"{path}: row {lineno} does not have {n_fields} {sep!r} separated fields: {ln[:200]!r}")
        rows.append(parts)
    return rows


def load_ml1m_raw(directory: Path) -> RawDataset:
    """GroupLens ML-1M ``ratings.dat`` and ``movies.dat`` (``::`` separated, latin-1)."""
    directory = check_dir(directory, "ratings.dat")
    rpath = check_file(directory / "ratings.dat")
    inter = pd.DataFrame(_split_lines(rpath, "::", 4), columns=["user", "item", "rating", "timestamp"])
    for col in ("user", "item"):
        inter[col] = parse_int_ids(inter[col], str(rpath), col).astype(str)
    mpath = directory / "movies.dat"
    if mpath.exists():
        check_file(mpath)
        items = pd.DataFrame(_split_lines(mpath, "::", 3), columns=["item", "title", "genres"])
        items["genres"] = items["genres"].str.replace("|", " ", regex=False)
    else:
        items = pd.DataFrame({"item": inter["item"].unique()})
    fields = [c for c in ("title", "genres") if c in items.columns]
    return RawDataset("ml-1m", inter, items, fields, [rpath] + ([mpath] if mpath.exists() else []))


@register_source("ml-1m", help="MovieLens-1M: data.path is the folder with ratings.dat and movies.dat")
def ml1m_source(cfg: DataConfig, arg: str | None) -> RawDataset:
    if not cfg.path:
        raise DataError("ml-1m needs data.path pointing at the folder with ratings.dat and movies.dat")
    return load_ml1m_raw(Path(cfg.path))
