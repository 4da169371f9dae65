"""Pieces every resumable loop shares: RNG capture, atomic checkpoint writes, the mismatch error.

Kept outside ``train/`` and ``lm/`` so the ID-model trainer and the LM loop use one implementation."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch


class CheckpointMismatchError(ValueError):
    """A checkpoint holds a run made with other settings or data; it is never silently reused."""


def rng_state() -> dict:
    """Every global RNG a training step may draw from (torch, CUDA, NumPy's legacy one, Python's)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` through a temporary sibling: a run killed mid-write leaves the previous checkpoint."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def key_diff(old: dict, new: dict) -> list[str]:
    """The top-level keys on which two checkpoint keys differ (for the error message)."""
    return sorted(k for k in {**old, **new} if old.get(k) != new.get(k))
