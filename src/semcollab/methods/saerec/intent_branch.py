"""SAERec's intent branch: attention from each position's hidden state to intent tokens, with an output linear in
the tokens (what lets :meth:`~semcollab.methods.saerec.model.SAERec.explain` split a score per intent)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class IntentBranch(nn.Module):
    """Single-head attention from positions to intent tokens; output linear in the tokens. ``dropout`` (train
    mode only) drops attention weights and outputs; at 0 no dropout op runs, so the RNG stream is unchanged."""

    def __init__(self, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.q, self.k = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.ov = nn.Linear(hidden, hidden, bias=False)
        self.scale = hidden ** -0.5
        self.dropout = dropout

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout, self.training) if self.dropout > 0 else x

    def forward(self, h: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor):
        """h (B, L, H); tokens (B, L, P, H) or (P, H); valid (B, L, P) bool -> out (B, L, H), attn (B, L, P)."""
        if tokens.dim() == 2:
            logits = torch.einsum("blh,ph->blp", self.q(h), self.k(tokens)) * self.scale
            values = self.ov(tokens)
            attn = torch.softmax(logits.masked_fill(~valid, -torch.inf), -1).nan_to_num(0.0)
            return self._drop(torch.einsum("blp,ph->blh", self._drop(attn), values)), attn, values
        logits = torch.einsum("blh,blph->blp", self.q(h), self.k(tokens)) * self.scale
        attn = torch.softmax(logits.masked_fill(~valid, -torch.inf), -1).nan_to_num(0.0)
        values = self.ov(tokens)
        return self._drop(torch.einsum("blp,blph->blh", self._drop(attn), values)), attn, values
