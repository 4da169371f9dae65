"""What a ReaEmb run folder holds and how its contents are identified: the stage folders and their
``final/state.json``, the hashes that tie a stage or a table to its data, texts and LM, the dataset's item texts,
and the memory figures ``timing.json`` records."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ...config import ConfigError
from ...data import load_split
from ...lm.load import _resolve
from ...runs.files import write_file_atomic
from ...text.attribute_text import item_attribute_texts
from ...text.cache import text_hash
from .config import ReaEmbPipelineConfig, data_config


def sha_of(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def texts_sha(texts: Sequence[str]) -> str:
    return sha_of([text_hash(t) for t in texts])


def lm_identity(name: str) -> dict:
    """The LM's identity for cache keys: its name and, for a local folder (registry models resolve to
    one), the names and sizes of its weight/config files plus the hash of its config.json."""
    path = Path(_resolve(os.path.expanduser(str(name))))
    ident = {"name": str(name)}
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix in {".safetensors", ".bin", ".gguf",
                                                                                   ".json", ".model"})
        ident["files"] = sha_of([f"{f.relative_to(path)}:{f.stat().st_size}" for f in files])
        cfg_json = path / "config.json"
        if cfg_json.is_file():
            ident["config"] = hashlib.sha256(cfg_json.read_bytes()).hexdigest()
    return ident


def peak_memory() -> dict:
    """Process peak RSS so far (``ru_maxrss``, MiB) and, on CUDA, the peak allocation since the last reset."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"peak_rss_mb": round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)}
    if torch.cuda.is_available():
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def reset_cuda_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def read_json(path: Path) -> dict | None:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def files_sha(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).name.encode())
        h.update(Path(p).read_bytes())
    return h.hexdigest()



@dataclass
class RunData:
    split: object
    texts: list[str]  # texts[i] describes item index i + 1
    fingerprint: str


def load_data(cfg: ReaEmbPipelineConfig, log=None) -> RunData:
    split = load_split(data_config(cfg), log=log)
    fields = cfg.text_fields or split.text_fields
    if not fields:
        raise ConfigError(f"{split.name} has no item text fields; set text_fields to columns of its item table "
                          f"{list(split.items.columns)}")
    texts = item_attribute_texts(split, fields, cfg.max_chars)
    if sum(bool(t.strip()) for t in texts) < 2:
        raise ConfigError(f"{split.name}: fewer than 2 items have text in fields {fields}")
    return RunData(split, texts, split.fingerprint())



def stage_dir(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / stage


def final_dir(run_dir: Path, stage: str) -> Path:
    return stage_dir(run_dir, stage) / "final"


def stage_state(run_dir: str | Path, stage: str) -> dict | None:
    """``state.json`` of a finished stage (None when the stage has not finished)."""
    return read_json(final_dir(Path(run_dir), stage) / "state.json")

