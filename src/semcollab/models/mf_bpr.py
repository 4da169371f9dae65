"""Matrix factorisation trained with BPR (Rendle et al., 2009): score = <user, item>."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import at_least
from ..registry import register
from .base import Recommender, ServingFactors, dot_scorer


@dataclass
class MFConfig:
    hidden: int = at_least(64, 1)
    reg: float = at_least(1e-4, 0, integer=False)  # L2 on the embeddings touched by each batch


@register("mf-bpr", task="ranking", config=MFConfig, aliases=("mf", "bpr", "mfbpr"))
class MFBPR(Recommender):
    batch_kind = "pairs"
    natural_loss = "bpr"
    supported_losses = ("bpr", "ce")

    def __init__(self, n_users: int, n_items: int, cfg: MFConfig | None = None):
        super().__init__(n_users, n_items)
        self.cfg = cfg or MFConfig()
        self.user_emb = nn.Embedding(n_users, self.cfg.hidden)
        self.item_emb = nn.Embedding(n_items + 1, self.cfg.hidden, padding_idx=0)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.item_emb.weight, std=0.1)

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        return self.user_emb(users) @ self.item_emb.weight.T

    def serving_factors(self) -> ServingFactors | None:
        if type(self).score is not MFBPR.score:
            return None
        return ServingFactors(self.item_emb.weight.detach().clone(), lambda u, s: self.user_emb(u))

    def item_scorer(self, users: torch.Tensor, seqs: torch.Tensor):
        """Each item range multiplies the user vectors by its rows of the item table."""
        if type(self).score is not MFBPR.score:  # a subclass scoring its own way: the default slices that
            return super().item_scorer(users, seqs)
        return dot_scorer(self.user_emb(users), self.item_emb.weight)

    def loss(self, batch: dict) -> torch.Tensor:
        u = self.user_emb(batch["users"])
        p = self.item_emb(batch["pos"])
        if self.loss_type == "ce":
            logits = u @ self.item_emb.weight.T
            logits[:, 0] = -torch.inf
            return F.cross_entropy(logits, batch["pos"]) + self.cfg.reg * (u.pow(2).sum() / len(u))
        n = self.item_emb(batch["neg"])
        diff = (u * p).sum(-1) - (u * n).sum(-1)
        reg = self.cfg.reg * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / len(u)
        return -F.logsigmoid(diff).mean() + reg
