"""What every task shares: the result of a run, the view of a saved run, and the readers of a run folder's files.

A task (``ranking``, ``ctr``, ``item-table``) trains into a run folder (``config.yaml``, ``metrics.json``,
``run.json``, weights); :class:`RunResult` is what training returns and :class:`Run` is what
:func:`semcollab.load_run` gives back for any of them, so code that serves, re-scores or compares runs is written
once, not once per task."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..config import ConfigError, read_config_file
from ..errors import RunFileError


@dataclass
class RunResult:
    """A finished run of any task. ``metrics``: ``{"valid": ..., "test": ...}`` for ranking and CTR, the stages'
    timing for an item table; ``fit``: the task's training record; ``run_dir``: None when not saved."""

    task: str
    config: object
    metrics: dict
    run_dir: Path | None
    fit: object = None
    model: object = None
    split: object = None

    @property
    def valid(self) -> dict | None:
        return self.metrics.get("valid")

    @property
    def test(self) -> dict | None:
        return self.metrics.get("test")


def read_run_config_file(path: Path) -> dict:
    """A saved run's ``config.yaml`` as a dict, with the guards of ``--config`` files (a FIFO, a device, an
    oversized file or a symlink loop is refused before anything is read: a run folder may come from anyone);
    a :class:`RunFileError` naming the file."""
    try:
        return read_config_file(path, expected="a run's config.yaml is the YAML file `semcollab train` wrote")
    except ConfigError as exc:
        raise RunFileError(f"{exc}; the run folder is damaged") from None


def read_run_record(run_dir: str | Path) -> dict:
    """``run.json`` of a saved run ({} when absent, e.g. runs saved before it existed)."""
    return read_json_file(Path(run_dir) / "run.json", "a run record (a JSON object)")


def read_json_file(path: Path, holds: str = "a JSON object") -> dict:
    """A JSON object file of a run folder ({} when absent); a damaged one is a :class:`RunFileError`."""
    if not path.exists():
        return {}
    try:
        out = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{path} is not valid JSON ({exc}); the run folder is damaged") from None
    if not isinstance(out, dict):
        raise RunFileError(f"{path} does not hold {holds}")
    return out


def read_weights(run_dir: Path) -> dict:
    """The tensors of a run's ``model.safetensors``; a missing or damaged file is a :class:`RunFileError`."""
    weights = Path(run_dir) / "model.safetensors"
    if not weights.exists():
        raise RunFileError(f"{weights} is missing (the run was saved with save_model=false)")
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunFileError(f"{weights} is not a readable safetensors file ({exc}); the run folder is damaged") from None


class Run:
    """A saved run of any task, loaded: ``task``, ``path``, ``config``, ``metrics``, ``model`` and the same two
    questions for every task -- :meth:`score` (one user's score of items) and :meth:`recommend` (that user's top
    ``k`` items, history masked). Users and items are raw ids as in the source data; subclasses say what a score
    is and how the model is rebuilt."""

    task: str = ""

    def __init__(self, path: Path, config, metrics: dict | None = None):
        self.path, self.config, self.metrics = Path(path), config, metrics or {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.task} {self.path}>"

    @property
    def model(self):  # pragma: no cover - every task defines it
        raise NotImplementedError

    @property
    def item_vocab(self):  # pragma: no cover - every task defines it
        """The run's raw item id <-> item index (1-based) mapping."""
        raise NotImplementedError

    @property
    def item_ids(self) -> list[str]:
        """Raw item ids in item-index order (index 1 first): the entries of :meth:`score` without ``items``."""
        return [str(i) for i in self.item_vocab.ids]

    def score(self, user: str, items: list[str] | None = None) -> np.ndarray:  # pragma: no cover - abstract
        """``user``'s score of each of ``items`` (raw ids; None: every item, in :attr:`item_ids` order)."""
        raise NotImplementedError

    def seen(self, user: str) -> np.ndarray:  # pragma: no cover - abstract
        """Item indices ``user`` has interacted with (left out by :meth:`recommend`)."""
        raise NotImplementedError

    def recommend(self, user: str, k: int = 10, exclude_seen: bool = True) -> list[tuple[str, float]]:
        """``user``'s top ``k`` items as ``(raw item id, score)``, best first; items the user has interacted
        with are left out unless ``exclude_seen`` is False (so are items the model cannot score: -inf)."""
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        scores = np.asarray(self.score(user), dtype=np.float64).copy()
        if exclude_seen:
            seen = np.asarray(self.seen(user), dtype=np.int64)
            scores[seen[(seen >= 1) & (seen <= len(scores))] - 1] = -np.inf
        order = np.argsort(-scores, kind="stable")[:k]
        ids = self.item_ids
        return [(ids[i], float(scores[i])) for i in order if np.isfinite(scores[i])]

    def item_indices(self, items: list[str] | None) -> np.ndarray:
        """Item indices (1-based) of raw ``items``; every item when None (an unknown id: UnknownIdError)."""
        if items is None:
            return np.arange(1, len(self.item_vocab) + 1, dtype=np.int64)
        return np.asarray([self.item_vocab.encode(str(i)) for i in items], dtype=np.int64)


__all__ = ["Run", "RunResult", "read_json_file", "read_run_config_file", "read_run_record"]
