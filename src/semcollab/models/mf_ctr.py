"""CTR matrix factorisation (as in CoLLM's MF baseline): p(like) = sigmoid(<user, item>), trained with BCE.

Its user and item tables are also the collaborative knowledge that CoLLM and SeLLa-Rec project into an
LM prompt, so the class exposes them as ``user_emb`` / ``item_emb``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import at_least
from ..registry import register
from .base import CTRModel


@dataclass
class MFCTRConfig:
    dim: int = at_least(256, 1)  # CoLLM's MF uses 256
    bias: bool = False  # CoLLM's MF has no bias terms; on for a stronger baseline


@register("mf", task="ctr", config=MFCTRConfig)
class MFCTR(CTRModel):
    def __init__(self, n_users: int, n_items: int, cfg: MFCTRConfig | None = None):
        super().__init__()
        self.cfg = cfg or MFCTRConfig()
        self.user_emb = nn.Embedding(n_users, self.cfg.dim)
        self.item_emb = nn.Embedding(n_items + 1, self.cfg.dim, padding_idx=0)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        if self.cfg.bias:
            self.user_bias = nn.Embedding(n_users, 1)
            self.item_bias = nn.Embedding(n_items + 1, 1)
            self.global_bias = nn.Parameter(torch.zeros(1))
            nn.init.zeros_(self.user_bias.weight)
            nn.init.zeros_(self.item_bias.weight)

    def logits(self, batch: dict) -> torch.Tensor:
        u, i = batch["users"], batch["items"]
        out = (self.user_emb(u) * self.item_emb(i)).sum(-1)
        if self.cfg.bias:
            out = out + self.user_bias(u).squeeze(-1) + self.item_bias(i).squeeze(-1) + self.global_bias
        return out
