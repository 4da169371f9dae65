"""GRU4Rec (Hidasi et al., 2016) with the cross-entropy training of Hidasi & Karatzoglou (2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import at_least, fraction
from .base import Recommender, next_item_loss


@dataclass
class GRU4RecConfig:
    hidden: int = at_least(64, 1)
    layers: int = at_least(1, 1)
    dropout: float = fraction(0.2)
    max_len: int = at_least(50, 1)


class GRU4Rec(Recommender):
    batch_kind = "next_item"
    supported_losses = ("ce", "bce", "sampled_ce")

    def __init__(self, n_users: int, n_items: int, cfg: GRU4RecConfig | None = None):
        super().__init__(n_users, n_items)
        cfg = cfg or GRU4RecConfig()
        self.cfg, self.max_len = cfg, cfg.max_len
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, num_layers=cfg.layers, batch_first=True)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.drop(self.item_emb(seqs[:, -self.max_len:])))
        return self.proj(self.drop(out))

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        return self.forward(seqs)[:, -1] @ self.item_emb.weight.T

    def loss(self, batch: dict) -> torch.Tensor:
        return next_item_loss(self.forward(batch["seqs"]), batch["targets"], self.item_emb.weight,
                              self.loss_type, self.neg_samples)
