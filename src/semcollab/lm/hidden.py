"""The one hidden-state text embedder: a causal LM's (or any HF encoder's) last-layer states pooled per text,
kept in float32 -- never truncated to integers. SeLLa-Rec's semantic item table (the last token of
"Movie: <title>"), SAILRec's, the ``text`` package's encoders for HF models (:class:`semcollab.text.TextEncoder`)
and ReaEmb's catalogue tables all run their batches through :func:`embed_in_batches`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..distributed import world_size
from ..runs.shards import ShardSite, active_site, compute_sharded, texts_digest
from .batching import longest_first_batches
from .body import body_hidden, last_token_index

POOLINGS = ("last", "mean")


def pool_hidden(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """``(B, d)`` from float32 states ``(B, T, d)``: the last real token's state (left or right padding) or the
    mean over real tokens."""
    if pooling == "last":
        return hidden[torch.arange(len(hidden), device=hidden.device), last_token_index(mask)]
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")


def embed_in_batches(n: int, dim: int, batches: Sequence[np.ndarray], embed_batch: Callable[[np.ndarray], torch.Tensor],
                     progress: bool = False, desc: str = "hidden states", *, shards: ShardSite | None = None,
                     costs: Sequence[float] | None = None) -> np.ndarray:
    """``(n, d)`` float32: row ``i`` from ``embed_batch(idx)`` for the batch ``idx`` that holds ``i``; ``d`` is the
    width ``embed_batch`` returns (``dim`` when there is nothing to embed). Batches are the caller's
    (length-sorted: little padding); results go back in input order.

    Under torchrun the batches are split over the ranks (whole batches, balanced by ``costs``: bit-equal to one
    process) and merged through files under ``shards`` (default: the block's
    :func:`~semcollab.runs.shards.inference_shards`, if any); in one process this is the plain loop."""
    if not n:
        return np.zeros((0, dim), dtype=np.float32)
    from tqdm.auto import tqdm

    def compute(own: list[np.ndarray]) -> np.ndarray:
        rows = sum(len(b) for b in own)
        out, at = None, 0
        for idx in tqdm(own, disable=not progress, desc=desc):
            vec = embed_batch(idx).cpu().numpy()
            if out is None:
                out = np.zeros((rows, vec.shape[1]), dtype=np.float32)
            out[at:at + len(idx)] = vec
            at += len(idx)
        return out if out is not None else np.zeros((rows, dim), dtype=np.float32)

    site = shards if shards is not None else active_site()
    if site is not None:
        site = site.child("embed_in_batches", n, desc)
    return compute_sharded(site, n, batches, compute, costs, what=desc)


@torch.no_grad()
def encode_texts(model: nn.Module, tokenizer, texts: list[str], layer: int = -1, pooling: str = "last",
                 batch_size: int = 32, max_length: int = 128, progress: bool = False, *, normalize: bool = False,
                 batches: Sequence[np.ndarray] | None = None,
                 forward: Callable[[dict], torch.Tensor] | None = None,
                 shards: ShardSite | None = None) -> np.ndarray:
    """``(n, d)`` float32 vectors. Batches are length-sorted (little padding) and results put back in input
    order; last-token pooling finds each row's last real token under left or right padding.
    ``layer=-1`` is the body's final (normed) output; other values index ``hidden_states``.

    ``batches``: the caller's own batch order (default: longest first, ties in input order). ``forward``: the
    caller's own ``tokenized batch -> (B, T, d)`` states (default: :func:`~semcollab.lm.body.body_hidden` at
    ``layer``). ``normalize``: L2-normalise each vector. ``shards``: see :func:`embed_in_batches` (under torchrun the
    ranks take whole batches, balanced by padded tokens; the key adds the texts and these settings)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
    if batch_size <= 0 or max_length <= 0:
        raise ValueError(f"batch_size and max_length must be positive, got {batch_size}, {max_length}")
    d = model.get_input_embeddings().weight.shape[1]
    if not texts:
        return np.zeros((0, d), dtype=np.float32)
    device = next(model.parameters()).device
    lengths = None
    if batches is None:
        lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
        batches = longest_first_batches(lengths, batch_size)
    site, costs = shards if shards is not None else active_site(), None
    if site is not None and world_size() > 1:  # what is computed, and each batch's padded tokens (its cost)
        site = site.child("encode_texts", texts_digest(texts), layer, pooling, max_length, normalize,
                          str(next(model.parameters()).dtype))
        if lengths is None:
            lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
        costs = [len(b) * max((lengths[i] for i in b), default=0) for b in batches]
    if forward is None:
        def forward(enc: dict) -> torch.Tensor:
            return body_hidden(model, enc["input_ids"], enc["attention_mask"], layer=layer)

    def embed_batch(idx: np.ndarray) -> torch.Tensor:
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length).to(device)
        vec = pool_hidden(forward(enc).float(), enc["attention_mask"], pooling)
        return torch.nn.functional.normalize(vec, dim=-1) if normalize else vec

    was_training = model.training
    model.eval()
    try:
        return embed_in_batches(len(texts), d, batches, embed_batch, progress, shards=site, costs=costs)
    finally:
        model.train(was_training)
