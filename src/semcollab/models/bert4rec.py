"""BERT4Rec (Sun et al., 2019): bidirectional self-attention trained by the cloze task.

Training masks random positions with a [MASK] token (index ``n_items + 1``) and predicts them;
scoring appends [MASK] after the history and reads the prediction at that last position. With
``model_params.item_table`` the items are read and scored through the LM item table (:mod:`.text_table`);
[MASK] keeps its own ID row."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import fraction
from ..data.batches import BatchBuilder
from ..registry import register
from .base import next_item_loss, table_loss_rows
from .sasrec import SASRec, SASRecConfig


@dataclass
class BERT4RecConfig(SASRecConfig):
    _item_table_ok = True
    mask_prob: float = fraction(0.2, lo_open=True)


@register("bert4rec", task="ranking", config=BERT4RecConfig)
class BERT4Rec(SASRec):
    batch_kind = "cloze"
    # sampled_ce: the cloze softmax over the target and shared uniform negatives (never [MASK]: the scoring
    # table stops before it), for catalogues where the full softmax costs ~10x per epoch on a CPU
    supported_losses = ("ce", "sampled_ce")
    causal = False
    _item_table_ok = True

    def __init__(self, n_users: int, n_items: int, cfg: BERT4RecConfig | None = None, item_ids=None):
        cfg = cfg or BERT4RecConfig()
        super().__init__(n_users, n_items, cfg, n_extra_tokens=1, item_ids=item_ids)
        self.mask_token = n_items + 1

    def user_state(self, seqs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """The prediction at a [MASK] appended after the history (SASRec's ``score`` and ``item_scorer`` use it)."""
        masked = torch.cat([seqs, torch.full_like(seqs[:, :1], self.mask_token)], dim=1)[:, -self.max_len:]
        return super().user_state(masked, table)

    def training_batches(self, seqs: list, n_items: int, length_buckets: bool = False) -> BatchBuilder:
        """Cloze windows masked at ``model_params.mask_prob`` with this model's [MASK] token."""
        return BatchBuilder(self.batch_kind, seqs, n_items, self.max_len, self.cfg.mask_prob, self.mask_token,
                            length_buckets=length_buckets)

    def loss(self, batch: dict) -> torch.Tensor:
        neg, rows = table_loss_rows(self.text_table is not None, self.loss_type, batch, self.n_items,
                                    self.neg_samples)
        table = self.item_table(rows)
        return next_item_loss(self.forward(batch["seqs"], self.input_table(table)), batch["targets"], table,
                              self.loss_type, self.neg_samples, negatives=neg)
