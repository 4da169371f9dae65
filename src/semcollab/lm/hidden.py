"""The one hidden-state text embedder: a causal LM's (or any HF encoder's) last-layer states pooled per text,
kept in float32 -- never truncated to integers. SeLLa-Rec's semantic item table (the last token of
"Movie: <title>"), SAILRec's, the ``text`` package's encoders for HF models (:class:`semcollab.text.TextEncoder`)
and ReaEmb's catalogue tables all run their batches through :func:`embed_in_batches`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

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
                     progress: bool = False, desc: str = "hidden states") -> np.ndarray:
    """``(n, d)`` float32: row ``i`` from ``embed_batch(idx)`` for the batch ``idx`` that holds ``i``; ``d`` is the
    width ``embed_batch`` returns (``dim`` when there is nothing to embed). Batches are the caller's
    (length-sorted: little padding); results go back in input order."""
    if not n:
        return np.zeros((0, dim), dtype=np.float32)
    from tqdm.auto import tqdm

    out = None
    for idx in tqdm(batches, disable=not progress, desc=desc):
        vec = embed_batch(idx).cpu().numpy()
        if out is None:
            out = np.zeros((n, vec.shape[1]), dtype=np.float32)
        out[idx] = vec
    return out if out is not None else np.zeros((n, dim), dtype=np.float32)


@torch.no_grad()
def encode_texts(model: nn.Module, tokenizer, texts: list[str], layer: int = -1, pooling: str = "last",
                 batch_size: int = 32, max_length: int = 128, progress: bool = False, *, normalize: bool = False,
                 batches: Sequence[np.ndarray] | None = None,
                 forward: Callable[[dict], torch.Tensor] | None = None) -> np.ndarray:
    """``(n, d)`` float32 vectors. Batches are length-sorted (little padding) and results put back in input
    order; last-token pooling finds each row's last real token under left or right padding.
    ``layer=-1`` is the body's final (normed) output; other values index ``hidden_states``.

    ``batches``: the caller's own batch order (default: longest first, ties in input order). ``forward``: the
    caller's own ``tokenized batch -> (B, T, d)`` states (default: :func:`~semcollab.lm.body.body_hidden` at
    ``layer``). ``normalize``: L2-normalise each vector."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
    if batch_size <= 0 or max_length <= 0:
        raise ValueError(f"batch_size and max_length must be positive, got {batch_size}, {max_length}")
    d = model.get_input_embeddings().weight.shape[1]
    if not texts:
        return np.zeros((0, d), dtype=np.float32)
    device = next(model.parameters()).device
    if batches is None:
        lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
        batches = longest_first_batches(lengths, batch_size)
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
        return embed_in_batches(len(texts), d, batches, embed_batch, progress)
    finally:
        model.train(was_training)
