"""Training batches for each model family, built once per fit as NumPy arrays and shuffled per epoch.

* ``next_item``: windows of ``max_len + 1`` items; input = window[:-1], target = window[1:].
  Long histories are cut into consecutive windows ending at the last training item, so every
  training event is a target once per epoch (not only the last ``max_len``).
* ``cloze``: the same windows; a random ``mask_prob`` of positions is replaced by [MASK] each epoch.
* ``pairs``: every (user, item) training event with one uniformly drawn negative per epoch.

Sequence batches drop their leading all-padding columns: the attention models use right-aligned
positions and mask padding keys, so for them this changes nothing but the cost; GRU4Rec no longer
runs over those padding steps, as at evaluation, where histories are padded only to the chunk's longest. With ``length_buckets`` windows of similar length share a batch
(batch order still shuffled): on short-history data (Amazon: ~9 items per user, max_len 50) most of
a random batch is padding, and bucketing cuts the transformer's work several-fold. A bucketed batch
of short windows holds far fewer targets than one of long windows, so ``loss_weight`` scales each
batch's mean loss by its share of targets: every target keeps the weight it has with random batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def sequence_windows(seqs: list[np.ndarray], max_len: int) -> np.ndarray:
    """``(S, max_len + 1)`` left-padded windows covering every training transition."""
    if max_len < 1:  # a window of one item advances by nothing: the loop below would never end
        raise ValueError(f"max_len must be >= 1, got {max_len}")
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


def trim_leading_padding(batch: dict) -> dict:
    """Drop the columns that are padding in every row of ``seqs`` (their targets are padding too)."""
    real = (batch["seqs"] > 0).any(0)
    first = int(real.argmax()) if real.any() else batch["seqs"].shape[1] - 1
    return {k: v[:, first:] for k, v in batch.items()}


class BatchBuilder:
    """Holds the static training arrays of one fit and yields shuffled batches per epoch."""

    def __init__(self, kind: str, seqs: list[np.ndarray], n_items: int, max_len: int | None = None,
                 mask_prob: float = 0.2, mask_token: int | None = None, length_buckets: bool = False):
        self.kind, self.n_items, self.mask_prob, self.mask_token = kind, n_items, mask_prob, mask_token
        self.length_buckets = length_buckets
        if kind in ("next_item", "cloze"):
            # next_item windows hold max_len inputs + 1 shifted target; cloze windows are the input itself
            self.windows = sequence_windows(seqs, max_len if kind == "next_item" else max_len - 1)
            self.size = len(self.windows)
            self.lengths = (self.windows > 0).sum(1)
            # targets per window: next_item predicts all but the first real item; cloze ~mask_prob of them
            self.n_targets = int((self.lengths - 1).clip(min=0).sum()) if kind == "next_item" else int(self.lengths.sum())
        elif kind == "pairs":
            self.users, self.items = training_pairs(seqs)
            self.size = len(self.users)
        else:
            raise ValueError(f"unknown batch kind {kind!r}")

    def epoch(self, batch_size: int, rng: np.random.Generator, device) -> Iterator[dict]:
        if self.length_buckets and self.kind != "pairs":
            by_length = np.lexsort((rng.random(self.size), self.lengths))  # random order within a length
            batches = [by_length[s:s + batch_size] for s in range(0, self.size, batch_size)]
            batches = [batches[i] for i in rng.permutation(len(batches))]
        else:
            order = rng.permutation(self.size)
            batches = [order[s:s + batch_size] for s in range(0, self.size, batch_size)]
        for idx in batches:
            batch = self._batch(idx, rng)
            if self.kind != "pairs":
                batch = trim_leading_padding(batch)
            yield {k: torch.from_numpy(v).to(device) for k, v in batch.items()}

    def loss_weight(self, batch: dict, batch_size: int) -> float:
        """Factor for a batch's mean loss so that, with length buckets, each target weighs the same."""
        if not self.length_buckets or self.kind == "pairs":
            return 1.0
        per_batch = self.n_targets / self.n_batches(batch_size)
        if self.kind == "cloze":
            per_batch *= self.mask_prob
        return float((batch["targets"] > 0).sum()) / per_batch

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
