"""Datasets: loaders, filters, leakage-free splits and the prepared-data cache."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from ..config import DataConfig
from ..errors import DataError, UnknownIdError
from .cache import CacheError, cache_key, entry_dir, load_split_cache, save_split
from .dataset import EvalSet, Split, prepare
from .loaders import (
    CTRData,
    RawDataset,
    ctr_from_ratings,
    default_cache_dir,
    find_shared,
    load_amazon,
    load_collm_ctr,
    load_ml1m_raw,
    load_ml100k_raw,
    load_recbole_atomic,
    load_s3rec,
    load_table,
    locate_ml100k,
)

S3REC_ALIASES = {"beauty": "Beauty", "sports": "Sports_and_Outdoors", "toys": "Toys_and_Games", "yelp": "Yelp"}

__all__ = [
    "CTRData",
    "CacheError",
    "DataError",
    "EvalSet",
    "RawDataset",
    "Split",
    "UnknownIdError",
    "ctr_from_ratings",
    "load_amazon",
    "load_collm_ctr",
    "load_ctr",
    "load_ml1m_raw",
    "load_ml100k_raw",
    "load_raw",
    "load_recbole_atomic",
    "load_s3rec",
    "load_split",
    "load_table",
    "prepare",
]


def _shared_file(rel: str) -> Path:
    shared = find_shared()
    if shared is None:
        raise DataError(f"cannot find the shared/ asset folder for {rel}; set data.path or SEMCOLLAB_SHARED")
    return shared / rel


def load_raw(cfg: DataConfig) -> RawDataset:
    """Read the source named by ``cfg.name`` (see :class:`~semcollab.config.DataConfig`)."""
    name = cfg.name
    key = name.lower()
    if key == "ml-100k":
        path = Path(cfg.path) if cfg.path else locate_ml100k(cfg.cache_dir)
        if (path / "u.data").exists():
            return load_ml100k_raw(path)
        return load_recbole_atomic(path, "ml-100k")
    if key == "ml-1m":
        if not cfg.path:
            raise DataError("ml-1m needs data.path pointing at the folder with ratings.dat and movies.dat")
        return load_ml1m_raw(Path(cfg.path))
    if key.startswith("s3rec:") or key in S3REC_ALIASES:
        ds = name.split(":", 1)[1] if ":" in name else S3REC_ALIASES[key]
        ds = S3REC_ALIASES.get(ds.lower(), ds)
        path = Path(cfg.path) if cfg.path else _shared_file(f"data/s3rec/{ds}.txt")
        return load_s3rec(path, ds)
    if key.startswith("atomic:"):
        if not cfg.path:
            raise DataError("atomic datasets need data.path (the folder with <name>.inter)")
        return load_recbole_atomic(Path(cfg.path), name.split(":", 1)[1])
    if key == "amazon":
        if not cfg.path:
            raise DataError("amazon needs data.path (reviews JSON lines) and optionally data.meta_path")
        return load_amazon(Path(cfg.path), Path(cfg.meta_path) if cfg.meta_path else None)
    if key == "table":
        if not cfg.path:
            raise DataError("table needs data.path (CSV/TSV/Parquet) and data.user_col/item_col/time_col")
        return load_table(Path(cfg.path), cfg.user_col, cfg.item_col, cfg.time_col, cfg.rating_col,
                          Path(cfg.meta_path) if cfg.meta_path else None, cfg.item_text_cols)
    raise DataError(
        f"unknown dataset {name!r}; use ml-100k, ml-1m, s3rec:<Beauty|Sports_and_Outdoors|Toys_and_Games|Yelp>, "
        "atomic:<name>, amazon or table"
    )


_SPLIT_KEYS = ("duplicates", "min_rating", "user_k", "item_k", "split", "valid_frac", "test_frac")


def load_split(cfg: DataConfig, log=None) -> Split:
    """Load, prepare and split a dataset, reusing the Parquet cache when source and settings match.

    A damaged cache entry (bad checksum, missing file, junk meta.json, no meta.json) is deleted and
    rebuilt, with a warning naming the folder. A cache that cannot be written (read-only folder, full
    disk) is a warning too: the split is still returned and no partial entry is left behind."""
    raw = load_raw(cfg)
    settings = {k: getattr(cfg, k) for k in _SPLIT_KEYS}
    settings.update(name=raw.name, text_fields=raw.text_fields, default_template=raw.default_template,
                    columns=[cfg.user_col, cfg.item_col, cfg.time_col, cfg.rating_col, cfg.item_text_cols])
    if not cfg.cache:
        return prepare(raw, **{k: settings[k] for k in _SPLIT_KEYS})
    key = cache_key(raw.sources, settings)
    directory = entry_dir(Path(cfg.cache_dir or default_cache_dir()), raw.name, key, log)
    if directory.exists():
        try:
            split = load_split_cache(directory)
        except CacheError as exc:
            msg = f"prepared-data cache entry {directory} was damaged ({exc.reason}); it is deleted and rebuilt"
            warnings.warn(msg, stacklevel=2)
            if log:
                log(msg)
            try:
                if directory.is_dir() and not directory.is_symlink():
                    shutil.rmtree(directory)
                else:
                    directory.unlink()
            except OSError as rm_exc:
                warnings.warn(f"could not delete the damaged cache entry {directory}: {rm_exc}", stacklevel=2)
        else:
            if log:
                log(f"using cached prepared data {directory}")
            return split
    split = prepare(raw, **{k: settings[k] for k in _SPLIT_KEYS})
    try:
        save_split(split, directory)
    except OSError as exc:
        warnings.warn(f"could not write the prepared-data cache {directory}: {exc}; continuing without it",
                      stacklevel=2)
    return split


def load_ctr(cfg: DataConfig, allow_pickle: bool = False) -> CTRData:
    """CTR data: the CoLLM pickles for ``collm-ml-1m``, else a rating > 3 temporal split of ``cfg.name``.
    ``allow_pickle``: read CoLLM-format pickles other than the known split (unpickling runs code)."""
    if cfg.name.lower() in ("collm-ml-1m", "collm"):
        path = Path(cfg.path) if cfg.path else _shared_file("data/collm/ml-1m.zip")
        return load_collm_ctr(path, allow_pickle=allow_pickle)
    return ctr_from_ratings(load_raw(cfg), 3.0, cfg.valid_frac, cfg.test_frac)


