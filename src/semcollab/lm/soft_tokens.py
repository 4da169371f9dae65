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
    """``inputs_embeds`` ``(B, T, d)`` for ``input_ids`` with ``soft[token_id]`` ``(B, d)`` written at that
    token's position in each row. Differentiable in the supplied vectors (out-of-place writes)."""
    emb = model.get_input_embeddings()(input_ids)  # works through PEFT wrappers
    b, _, d = emb.shape
    rows = torch.arange(b, device=input_ids.device)
    for token_id, vecs in soft.items():
        if vecs.shape != (b, d):
            raise ValueError(f"soft vectors for token id {token_id} have shape {tuple(vecs.shape)}, "
                             f"expected ({b}, {d}) = (batch, LM hidden size)")
        pos = token_positions(input_ids, int(token_id))
        emb = emb.index_put((rows, pos), vecs.to(device=emb.device, dtype=emb.dtype))
    return emb
