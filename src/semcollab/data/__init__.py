"""Datasets: the sources (one file per format, found by name in the registry), filters, leakage-free splits
and the prepared-data cache."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from ..config import DataConfig
from ..errors import DataError, UnknownIdError
from ..hub.wheels import default_cache_dir
from ..registry import find_source, list_sources, source_entry
from .cache import CacheError, cache_key, entry_dir, load_split_cache, save_split
from .dataset import EvalSet, Split, prepare
from .sources.amazon import load_amazon
from .sources.atomic import load_recbole_atomic
from .sources.collm import load_collm_ctr
from .sources.ml1m import load_ml1m_raw
from .sources.ml100k import load_ml100k_raw
from .sources.raw import CTRData, RawDataset, ctr_from_ratings
from .sources.s3rec import load_s3rec
from .sources.table import load_table

# the dataset forms in the order the "unknown dataset" message has always listed them; plugin sources follow
_BUILTIN_FORM_ORDER = ("ml-100k", "ml-1m", "s3rec", "atomic", "amazon", "table")

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


def _dataset_forms() -> str:
    """``ml-100k, ml-1m, ..., amazon or table``: how each interactions source is named."""
    names = list_sources("interactions")
    order = {n: i for i, n in enumerate(_BUILTIN_FORM_ORDER)}
    forms = [source_entry(n).usage for n in sorted(names, key=lambda n: (order.get(n, len(order)), n))]
    return ", ".join(forms[:-1]) + " or " + forms[-1] if len(forms) > 1 else "".join(forms)


def load_raw(cfg: DataConfig) -> RawDataset:
    """Read the source named by ``cfg.name`` (see :class:`~semcollab.config.DataConfig`): a registered dataset
    source (:func:`semcollab.registry.register_source`), ``name`` or ``name:<argument>``, or one of its aliases."""
    found = find_source(cfg.name)
    if found is None or found[0].kind != "interactions":
        raise DataError(f"unknown dataset {cfg.name!r}; use {_dataset_forms()}")
    entry, arg = found
    return entry.load(cfg, arg)


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
    """CTR data: a click-data source such as ``collm-ml-1m`` as it is, else a rating > 3 temporal split of
    ``cfg.name``. ``allow_pickle``: read CoLLM-format pickles other than the known split (unpickling runs code)."""
    found = find_source(cfg.name)
    if found is not None and found[0].kind == "ctr":
        entry, arg = found
        return entry.load(cfg, arg, allow_pickle=allow_pickle)
    return ctr_from_ratings(load_raw(cfg), 3.0, cfg.valid_frac, cfg.test_frac)
