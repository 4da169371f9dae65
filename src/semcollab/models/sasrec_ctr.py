"""SASRec for CTR: the history encoder of :class:`~semcollab.models.sasrec.SASRec` scores the target item,
p(like) = sigmoid(<h_last(history), e_target>), trained with BCE on the labels (CoLLM's SASRec baseline)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..registry import register
from .base import CTRModel
from .sasrec import SASRec, SASRecConfig


@dataclass
class SASRecCTRConfig(SASRecConfig):
    pass


@register("sasrec-ctr", task="ctr", config=SASRecCTRConfig)
class SASRecCTR(CTRModel):
    def __init__(self, n_users: int, n_items: int, cfg: SASRecCTRConfig | None = None):
        super().__init__()
        self.cfg = cfg or SASRecCTRConfig()
        self.encoder = SASRec(n_users, n_items, self.cfg)
        self.bias = nn.Parameter(torch.zeros(1))

    def logits(self, batch: dict) -> torch.Tensor:
        hist = batch["history"]
        h = self.encoder(hist)[:, -1]  # the state after the most recent history item
        # a row without history (cold start) has an all-padding input: its state carries no signal
        h = h * (hist > 0).any(1, keepdim=True)
        return (h * self.encoder.item_emb(batch["items"])).sum(-1) + self.bias
