"""Hidden-state text embeddings from a causal LM (SeLLa-Rec's semantic item table: the last-layer state
of the last token of "Movie: <title>"), kept in float32 — never truncated to integers."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..train.lm_steps import longest_first_batches
from .body import body_hidden, last_token_index


@torch.no_grad()
def encode_texts(model: nn.Module, tokenizer, texts: list[str], layer: int = -1, pooling: str = "last",
                 batch_size: int = 32, max_length: int = 128, progress: bool = False) -> np.ndarray:
    """``(n, d)`` float32 vectors. Batches are length-sorted (little padding) and results put back in input
    order; last-token pooling finds each row's last real token under left or right padding.
    ``layer=-1`` is the body's final (normed) output; other values index ``hidden_states``."""
    if pooling not in ("last", "mean"):
        raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
    if batch_size <= 0 or max_length <= 0:
        raise ValueError(f"batch_size and max_length must be positive, got {batch_size}, {max_length}")
    d = model.get_input_embeddings().weight.shape[1]
    out = np.zeros((len(texts), d), dtype=np.float32)
    if not texts:
        return out
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    was_training = model.training
    model.eval()
    try:
        for idx in tqdm(longest_first_batches(lengths, batch_size), disable=not progress, desc="hidden states"):
            enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                            max_length=max_length).to(device)
            mask = enc["attention_mask"]
            hidden = body_hidden(model, enc["input_ids"], mask, layer=layer).float()
            if pooling == "last":
                vec = hidden[torch.arange(len(idx), device=device), last_token_index(mask)]
            else:
                m = mask.unsqueeze(-1).to(hidden.dtype)
                vec = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
            out[idx] = vec.cpu().numpy()
    finally:
        model.train(was_training)
    return out
