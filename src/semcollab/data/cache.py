"""Parquet cache of prepared splits, keyed by a hash of the source files' content and the data config.

A changed source file or filter setting gives a new key, so stale data is never reused. Each entry
records checksums of its files; reading a damaged entry raises :class:`CacheError` (never returns bad
data), and :func:`semcollab.data.load_split` then deletes and rebuilds it with a warning. Writing is
atomic: an entry is assembled in a temporary folder and renamed into place, and a failed write (read-only
folder, full disk) leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from ..errors import (
    CacheError,  # noqa: F401  (defined in errors.py)
    DataError,
)
from ..hub.wheels import remove_stale_temporaries
from .dataset import Split
from .vocab import Vocab

FORMAT_VERSION = 3  # 2: ids read as written, timestamps not truncated (float64 when fractional);
#                      3: meta.json carries default_template, stats carry items_without_text



def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_key(sources: list[Path], settings: dict) -> str:
    h = hashlib.sha256()
    h.update(str(FORMAT_VERSION).encode())
    for s in sorted(Path(p) for p in sources):
        h.update(s.name.encode())
        h.update(file_digest(s).encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# save_split's temporaries: ".tmp-<pid>-<random>" (and ".tmp-<random>" from versions before the PID was in the name)
_TMP = re.compile(r"\.tmp-(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+")


def entry_dir(cache_dir: Path, name: str, key: str, log=None) -> Path:
    """``<cache_dir>/prepared/<name>-<key>``, refused (DataError) unless it stays inside ``<cache_dir>/prepared``
    (dataset names are checked where they are parsed; this is the second line). Temporaries that a killed
    ``data prepare`` left in that folder are removed here (with a log line)."""
    root = Path(cache_dir) / "prepared"
    directory = root / f"{name}-{key}"
    try:
        inside = directory.resolve().parent == root.resolve()
    except (OSError, RuntimeError, ValueError):
        inside = False
    if not inside or "/" in name or "\\" in name or name.startswith(".tmp-"):
        raise DataError(f"dataset name {name!r} would put its prepared-data cache at {directory}, outside "
                        f"data.cache_dir ({cache_dir}); a dataset name must be a plain file name")
    remove_stale_temporaries(root, _TMP, log)
    return directory


_TABLES = ("train", "valid", "test", "items", "users", "item_ids")


def save_split(split: Split, directory: Path) -> None:
    """Write ``split`` to ``directory`` atomically. Raises OSError (after removing its temporary folder)
    when the cache cannot be written; an entry another process wrote first is kept as is."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".tmp-{os.getpid()}-"))  # PID: see entry_dir
    try:
        split.train.to_parquet(tmp / "train.parquet")
        split.valid.to_parquet(tmp / "valid.parquet")
        split.test.to_parquet(tmp / "test.parquet")
        split.items.astype(str).to_parquet(tmp / "items.parquet")
        pd.DataFrame({"raw_id": split.user_vocab.ids}).to_parquet(tmp / "users.parquet")
        pd.DataFrame({"raw_id": split.item_vocab.ids}).to_parquet(tmp / "item_ids.parquet")
        meta = {
            "format": FORMAT_VERSION, "name": split.name, "protocol": split.protocol,
            "text_fields": split.text_fields, "default_template": split.default_template, "stats": split.stats,
            "checksums": {t: file_digest(tmp / f"{t}.parquet") for t in _TABLES},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        if directory.exists():  # a concurrent writer got there first; entries with one key are identical
            shutil.rmtree(tmp)
            return
        try:
            tmp.rename(directory)
        except OSError:
            if not (directory / "meta.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # lost a race against an identical entry
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_split_cache(directory: Path) -> Split:
    """Read a cache entry, verifying its format version and checksums; CacheError if anything is off."""
    directory = Path(directory)
    meta_path = directory / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict):
            raise CacheError(f"meta.json holds a {type(meta).__name__}, not an object")
        if meta.get("format") != FORMAT_VERSION:
            raise CacheError(f"format {meta.get('format')!r}, expected {FORMAT_VERSION}")
        for t in _TABLES:
            if file_digest(directory / f"{t}.parquet") != meta["checksums"][t]:
                raise CacheError(f"checksum mismatch for {t}.parquet")
        frames = {t: pd.read_parquet(directory / f"{t}.parquet") for t in _TABLES}
        split = Split(
            meta["name"], meta["protocol"], frames["train"], frames["valid"], frames["test"],
            Vocab(frames["users"]["raw_id"].to_numpy(), 0, "user"),
            Vocab(frames["item_ids"]["raw_id"].to_numpy(), 1, "item"),
            frames["items"], list(meta["text_fields"]), dict(meta["stats"]), meta["default_template"],
        )
        if split.default_template is not None and not isinstance(split.default_template, str):
            raise CacheError(f"meta.json default_template is a {type(split.default_template).__name__}, not a string")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, CacheError) as exc:
        reason = exc.reason if isinstance(exc, CacheError) else f"{type(exc).__name__}: {exc}"
        raise CacheError(
            f"prepared-data cache entry {directory} is damaged ({reason}). Delete that folder to rebuild it, "
            "or run with data.cache=false.", reason
        ) from None
    return split
