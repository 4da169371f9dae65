"""BERT4Rec (Sun et al., 2019): bidirectional self-attention trained by the cloze task.

Training masks random positions with a [MASK] token (index ``n_items + 1``) and predicts them;
scoring appends [MASK] after the history and reads the prediction at that last position."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import fraction
from .base import next_item_loss
from .sasrec import SASRec, SASRecConfig


@dataclass
class BERT4RecConfig(SASRecConfig):
    mask_prob: float = fraction(0.2, lo_open=True)


class BERT4Rec(SASRec):
    batch_kind = "cloze"
    supported_losses = ("ce",)
    causal = False

    def __init__(self, n_users: int, n_items: int, cfg: BERT4RecConfig | None = None):
        cfg = cfg or BERT4RecConfig()
        super().__init__(n_users, n_items, cfg, n_extra_tokens=1)
        self.mask_token = n_items + 1

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        masked = torch.cat([seqs, torch.full_like(seqs[:, :1], self.mask_token)], dim=1)[:, -self.max_len:]
        return self.forward(masked)[:, -1] @ self.item_table().T

    def loss(self, batch: dict) -> torch.Tensor:
        return next_item_loss(self.forward(batch["seqs"]), batch["targets"], self.item_table(), "ce")
