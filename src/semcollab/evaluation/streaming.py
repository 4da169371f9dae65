"""Full ranking over a catalogue too large for a ``users x items`` score matrix: each user chunk walks the items in
chunks and keeps a running top-k, so memory is bounded by ``chunk_size x item_chunk_size`` scores whatever the
catalogue (a million items included).

Padding, history (``eval.mask_history``) and held-out items are handled as the one-chunk path does, but by index:
the histories' and targets' item indices that fall inside an item chunk, never a dense boolean matrix.

Ties. The streamed top-k is the first ``k`` items of the order "score descending, then item index ascending": an
item tied with others on the k-th score is kept before any tied item with a higher index. That order does not
depend on the item chunk size, so every ``item_chunk_size`` gives the same top-k to the bit. The one-chunk path
takes ``torch.topk``'s pick among tied scores instead, so the two may differ, and only, where scores are exactly
equal (for example several masked ``-inf`` items when fewer than ``k`` items are left to rank)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .metrics import metrics_from_hits

#: the largest ``chunk_size x (n_items + 1)`` float32 score matrix the automatic setting builds in one piece
DENSE_SCORE_BUDGET = 256 * 2**20
#: automatic item chunks are never narrower than this, however many users a chunk holds
MIN_AUTO_ITEM_CHUNK = 1024


def item_chunk_width(item_chunk_size: int | None, chunk_size: int, n_items: int) -> int | None:
    """Items per chunk for full ranking, or ``None`` for the one-chunk path (today's dense ``topk``).

    ``item_chunk_size`` (``eval.item_chunk_size``): an int always streams with chunks that wide; ``None`` keeps one
    chunk while ``chunk_size x (n_items + 1)`` float32 scores fit in :data:`DENSE_SCORE_BUDGET` (every dataset
    shipped today: Yelp's ~20k items at 1024 users is 80 MB), else streams with chunks sized to that budget."""
    if item_chunk_size is not None:
        return item_chunk_size
    if chunk_size * (n_items + 1) * 4 <= DENSE_SCORE_BUDGET:
        return None
    return max(MIN_AUTO_ITEM_CHUNK, DENSE_SCORE_BUDGET // (4 * chunk_size))


def model_item_scorer(model, users: torch.Tensor, seqs: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
    """The model's :meth:`~semcollab.models.base.Recommender.item_scorer`; a model built on another base that only
    has ``score`` is scored whole and sliced."""
    scorer = getattr(model, "item_scorer", None)
    if scorer is not None:
        return scorer(users, seqs)
    scores = model.score(users, seqs)
    return lambda start, stop: scores[:, start:stop].clone()


def _flat(rows: list[np.ndarray], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, item) index pairs of a list of per-row item arrays."""
    lens = torch.tensor([len(r) for r in rows], dtype=torch.long)
    row = torch.repeat_interleave(torch.arange(len(rows)), lens).to(device)
    items = np.concatenate(rows).astype(np.int64) if len(rows) else np.zeros(0, dtype=np.int64)
    return row, torch.from_numpy(items).to(device)


def _chunk_best(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``k`` best columns by (score descending, column ascending): their scores and their columns, both
    in ascending column order. ``topk(k + 1)`` picks the set; only in a row whose k-th and (k+1)-th scores are equal
    (a tie across the cut) are the tied columns taken in column order, from a running count over that row. No
    reduction over the whole chunk: a bool sum would build an int64 copy of it (2x the chunk's scores)."""
    B, width = scores.shape
    if width <= k:
        return scores, torch.arange(width, device=scores.device).expand(B, width)
    vals, cols = scores.topk(k + 1, dim=1)
    across = (vals[:, k - 1] == vals[:, k]).nonzero()[:, 0]
    cols = cols[:, :k]
    if len(across):
        rows, kth = scores[across], vals[across, k - 1:k]
        above, tied = rows > kth, rows == kth
        room = k - above.sum(1, keepdim=True)
        cols[across] = (above | (tied & (tied.cumsum(1) <= room))).nonzero()[:, 1].view(len(across), k)
    cols = cols.sort(dim=1).values
    return scores.gather(1, cols), cols


def merge_topk(top_vals: torch.Tensor, top_items: torch.Tensor, chunk: torch.Tensor, start: int,
               k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge an item chunk's scores (its columns are items ``start..``) into the running top-k.

    The running list is sorted by (score descending, item ascending) and holds only items below ``start``; the
    chunk's best come in item order, so a stable sort of the two, concatenated, keeps that order."""
    vals, cols = _chunk_best(chunk, k)
    vals = torch.cat([top_vals, vals], 1)
    items = torch.cat([top_items, cols + start], 1)
    order = vals.sort(dim=1, descending=True, stable=True).indices[:, :k]
    return vals.gather(1, order), items.gather(1, order)


@torch.no_grad()
def streamed_topk(scorer: Callable[[int, int], torch.Tensor], n_rows: int, n_cols: int, k: int, width: int,
                  hists: list[np.ndarray], mask_history: bool, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` (scores, item indices) of ``n_rows`` users over items ``0..n_cols-1``, ``width`` items at a time.

    Item 0 (padding) is always masked, each user's history items too when ``mask_history``. Every chunk asks the
    scorer for ``width`` items, the last one overlapping the one before it, since a BLAS kernel may round a
    product a few columns wide differently from a wide one."""
    hist_row, hist_item = _flat(hists, device) if mask_history else (None, None)
    top_vals = torch.empty(n_rows, 0, device=device)
    top_items = torch.empty(n_rows, 0, dtype=torch.long, device=device)
    for start in range(0, n_cols, width):
        stop = min(start + width, n_cols)
        lo = max(0, stop - width)
        chunk = scorer(lo, stop)
        if chunk.shape != (n_rows, stop - lo):
            raise ValueError(f"model.item_scorer returned shape {tuple(chunk.shape)} for items {lo}..{stop - 1}, "
                             f"expected {(n_rows, stop - lo)}")
        chunk = chunk[:, start - lo:].float()
        if torch.isnan(chunk).any():
            raise FloatingPointError("model produced NaN scores")
        if start == 0:
            chunk[:, 0] = -torch.inf
        if hist_item is not None:
            inside = (hist_item >= start) & (hist_item < stop)
            chunk[hist_row[inside], hist_item[inside] - start] = -torch.inf
        top_vals, top_items = merge_topk(top_vals, top_items, chunk, start, k)
        del chunk  # else it lives on while the next one is built: two chunks' scores at once
    return top_vals, top_items


def topk_metrics(top_items: torch.Tensor, target_row: torch.Tensor, target_item: torch.Tensor, n_cols: int,
                 ks: list[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(users having a target, per-user metrics) from ranked item lists ``(B, k)`` and the targets as (row, item)
    pairs; a pair given twice counts once, as in the one-chunk path's boolean target matrix."""
    keys = torch.unique(target_row * n_cols + target_item)
    rows = torch.arange(len(top_items), device=top_items.device)[:, None]
    hits = torch.isin(rows * n_cols + top_items, keys)
    n_targets = torch.bincount(keys // n_cols, minlength=len(top_items))
    return n_targets > 0, metrics_from_hits(hits, n_targets, ks)


@torch.no_grad()
def streamed_chunk_metrics(model, users: np.ndarray, seqs: torch.Tensor, hists: list[np.ndarray],
                           tgts: list[np.ndarray], n_items: int, ks: list[int], width: int, mask_history: bool,
                           groups: dict[str, torch.Tensor | None], device) -> tuple[dict, dict, int]:
    """One user chunk of streamed full ranking: per group (``None``: all targets, else a boolean over item indices
    that keeps the group's targets) the users having a target and their metrics, plus how many users have a
    target in their history."""
    n_cols = n_items + 1
    scorer = model_item_scorer(model, torch.as_tensor(users, device=device), seqs)
    maxk = min(max(ks), n_cols)
    _, top_items = streamed_topk(scorer, len(users), n_cols, maxk, width, hists, mask_history, device)
    t_row, t_item = _flat(tgts, device)
    h_row, h_item = _flat(hists, device)
    in_history = torch.isin(t_row * n_cols + t_item, h_row * n_cols + h_item)
    repeats = len(torch.unique(t_row[in_history]))
    present, metrics = {}, {}
    for g, keep in groups.items():
        sel = slice(None) if keep is None else keep[t_item]
        present[g], metrics[g] = topk_metrics(top_items, t_row[sel], t_item[sel], n_cols, ks)
    return present, metrics, repeats
