"""Training batches for each model family, built once per fit as NumPy arrays and shuffled per epoch.

* ``next_item``: windows of ``max_len + 1`` items; input = window[:-1], target = window[1:].
  Long histories are cut into consecutive windows ending at the last training item, so every
  training event is a target once per epoch (not only the last ``max_len``).
* ``cloze``: the same windows; a random ``mask_prob`` of positions is replaced by [MASK] each epoch.
* ``pairs``: every (user, item) training event with one uniformly drawn negative per epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def sequence_windows(seqs: list[np.ndarray], max_len: int) -> np.ndarray:
    """``(S, max_len + 1)`` left-padded windows covering every training transition."""
    W = max_len + 1
    rows = []
    for s in seqs:
        n = len(s)
        if n < 2:
            continue
        end = n
        while end > 1:
            start = max(0, end - W)
            w = s[start:end]
            row = np.zeros(W, dtype=np.int64)
            row[W - len(w):] = w
            rows.append(row)
            end = start + 1  # next window's last item is this window's first (its first target needs context)
            if start == 0:
                break
    if not rows:
        raise ValueError("no user has at least two training events; nothing to train on")
    return np.stack(rows)


def training_pairs(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    users = np.concatenate([np.full(len(s), u, dtype=np.int64) for u, s in enumerate(seqs)])
    items = np.concatenate([s for s in seqs]).astype(np.int64)
    if len(users) == 0:
        raise ValueError("no training events")
    return users, items


class BatchBuilder:
    """Holds the static training arrays of one fit and yields shuffled batches per epoch."""

    def __init__(self, kind: str, seqs: list[np.ndarray], n_items: int, max_len: int | None = None,
                 mask_prob: float = 0.2, mask_token: int | None = None):
        self.kind, self.n_items, self.mask_prob, self.mask_token = kind, n_items, mask_prob, mask_token
        if kind in ("next_item", "cloze"):
            # next_item windows hold max_len inputs + 1 shifted target; cloze windows are the input itself
            self.windows = sequence_windows(seqs, max_len if kind == "next_item" else max_len - 1)
            self.size = len(self.windows)
        elif kind == "pairs":
            self.users, self.items = training_pairs(seqs)
            self.size = len(self.users)
        else:
            raise ValueError(f"unknown batch kind {kind!r}")

    def epoch(self, batch_size: int, rng: np.random.Generator, device) -> Iterator[dict]:
        order = rng.permutation(self.size)
        for start in range(0, self.size, batch_size):
            idx = order[start:start + batch_size]
            yield {k: torch.from_numpy(v).to(device) for k, v in self._batch(idx, rng).items()}

    def __len__(self) -> int:
        return self.size

    def n_batches(self, batch_size: int) -> int:
        return -(-self.size // batch_size)

    def _batch(self, idx: np.ndarray, rng: np.random.Generator) -> dict:
        if self.kind == "next_item":
            w = self.windows[idx]
            inputs = w[:, :-1]
            # a target needs a real item before it: never predict a first item from padding
            return {"seqs": inputs, "targets": np.where(inputs > 0, w[:, 1:], 0)}
        if self.kind == "cloze":
            w = self.windows[idx]
            real = w > 0
            masked = (rng.random(w.shape) < self.mask_prob) & real
            # always predict the last item of some windows: that is the position used at inference
            last_only = rng.random(len(w)) < self.mask_prob
            masked[last_only, -1] = real[last_only, -1]
            seqs = np.where(masked, self.mask_token, w)
            return {"seqs": seqs, "targets": np.where(masked, w, 0)}
        neg = rng.integers(1, self.n_items + 1, size=len(idx))
        return {"users": self.users[idx], "pos": self.items[idx], "neg": neg}
