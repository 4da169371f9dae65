"""Batch orders for LM passes over texts of uneven length: little padding per batch, and a seeded shuffle of
buckets for training (the LM step loop, the embedders and the scorers share them)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Rows sorted by length (ties broken at random) and chunked, so a batch pads little; chunk order is
    shuffled. A pure function of ``(seed, epoch)``."""
    rng = np.random.default_rng([seed, epoch])
    order = np.lexsort((rng.random(len(lengths)), np.asarray(lengths)))
    chunks = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    return [chunks[i] for i in rng.permutation(len(chunks))]


def longest_first_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Row indices chunked longest first (ties in input order): the inference counterpart of
    :func:`length_bucketed_batches`, for encoding and scoring that write each chunk back with ``out[idx] = ...``.
    The longest batch comes first, so running out of memory shows at once."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
