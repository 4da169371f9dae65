"""Soft tokens: the embeddings at special-token positions are replaced by vectors from the recommender.

The result is passed as ``inputs_embeds``, which every HF causal LM accepts, so no model is forked.
Models that scale embeddings inside the embedding module (Gemma) see the supplied vectors as-is: give
vectors on the scale of ``model.get_input_embeddings()(ids)``, which is what a trained projection learns.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .prompts import token_positions


def embed_with_soft_tokens(model: nn.Module, input_ids: torch.Tensor,
                           soft: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """``inputs_embeds`` ``(B, T, d)`` for ``input_ids`` with the vectors ``soft[token_id]`` written at that
    token's positions. Differentiable in the supplied vectors (out-of-place writes).

    ``soft[token_id]`` is ``(B, d)`` (the token occurs exactly once in every row) or ``(B, n, d)`` (it occurs
    exactly n times in every row; the n vectors are written in order of position)."""
    emb = model.get_input_embeddings()(input_ids)  # works through PEFT wrappers
    b, _, d = emb.shape
    rows = torch.arange(b, device=input_ids.device)
    for token_id, vecs in soft.items():
        if vecs.dim() == 2 and vecs.shape == (b, d):
            pos = token_positions(input_ids, int(token_id))
            idx, flat = (rows, pos), vecs
        elif vecs.dim() == 3 and vecs.shape[0] == b and vecs.shape[2] == d and vecs.shape[1] >= 1:
            n = vecs.shape[1]
            pos = token_positions(input_ids, int(token_id), count=n)
            idx, flat = (rows.repeat_interleave(n), pos.reshape(-1)), vecs.reshape(b * n, d)
        else:
            raise ValueError(f"soft vectors for token id {token_id} have shape {tuple(vecs.shape)}, "
                             f"expected ({b}, {d}) = (batch, LM hidden size) or ({b}, n, {d}) for a token "
                             "that occurs n times per row")
        emb = emb.index_put(idx, flat.to(device=emb.device, dtype=emb.dtype))
    return emb
