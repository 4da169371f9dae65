"""GRU4Rec (Hidasi et al., 2016) with the cross-entropy training of Hidasi & Karatzoglou (2018).

The item embedding is both the GRU's input and the output (scoring) table; ``model_params.item_table``
makes it a frozen LM item table through an adapter (:mod:`.text_table`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import at_least, fraction
from ..registry import register
from .base import Recommender, ServingFactors, dot_scorer, next_item_loss, table_loss_rows
from .text_table import ItemTableSettings, build_text_table, check_table_support


@dataclass
class GRU4RecConfig(ItemTableSettings):
    _item_table_ok = True
    hidden: int = at_least(64, 1)
    layers: int = at_least(1, 1)
    dropout: float = fraction(0.2)
    max_len: int = at_least(50, 1)


@register("gru4rec", task="ranking", config=GRU4RecConfig)
class GRU4Rec(Recommender):
    batch_kind = "next_item"
    supported_losses = ("ce", "bce", "sampled_ce")
    padding_invariant = True  # packed: the GRU never reads the left padding

    def __init__(self, n_users: int, n_items: int, cfg: GRU4RecConfig | None = None, item_ids=None):
        super().__init__(n_users, n_items)
        cfg = cfg or GRU4RecConfig()
        check_table_support(cfg, vars(type(cfg)).get("_item_table_ok", False), type(self).__name__)
        self.cfg, self.max_len = cfg, cfg.max_len
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, num_layers=cfg.layers, batch_first=True)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)
        # last, so a model without an item table draws the same initial weights as before
        self.text_table = build_text_table(cfg, n_items, cfg.hidden, item_ids)  # None without item_table

    @classmethod
    def from_split(cls, split, cfg: GRU4RecConfig) -> GRU4Rec:
        """As the plain constructor, plus the split's item ids to check an item table's meta against."""
        return cls(split.n_users, split.n_items, cfg, item_ids=list(split.item_vocab.ids))

    def item_table(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The item representation ``(n_items + 1, hidden)``: input embedding and scoring table alike; ``rows``:
        with an LM item table, only these rows are built (the rest zero; see :meth:`ItemTextTable.forward`)."""
        if self.text_table is not None:
            return self.text_table(self.item_emb.weight, rows)
        return self.item_emb.weight

    def forward(self, seqs: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """States ``(B, L, H)`` aligned with the left-padded ``seqs``; padding positions are zeros before ``proj``.

        The GRU runs over each history alone (packed), not over its left padding: a recurrent state fed the
        padding first would depend on how much padding a batch happened to add (the longest history in it)."""
        seqs = seqs[:, -self.max_len:]
        items = self.drop(self.item_emb(seqs) if table is None else table[seqs])
        B, L, H = items.shape
        lengths = (seqs > 0).sum(1)
        pad = (L - lengths)[:, None]
        steps = torch.arange(L, device=seqs.device)[None]
        # left-padded -> right-padded, as packing wants: row b moves left by its padding
        right = items.gather(1, ((steps + pad) % L)[..., None].expand(B, L, H))
        packed = nn.utils.rnn.pack_padded_sequence(right, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=L)
        out = out.gather(1, ((steps - pad) % L)[..., None].expand(B, L, H))  # back to left-aligned
        out = out * (lengths > 0)[:, None, None]  # an all-padding row reads nothing, whatever its width
        return self.proj(self.drop(out))

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        table = self.item_table()
        return self.forward(seqs, None if self.text_table is None else table)[:, -1] @ table.T

    def serving_factors(self) -> ServingFactors | None:
        if type(self).score is not GRU4Rec.score:
            return None
        table = self.item_table().detach().clone()
        inputs = None if self.text_table is None else table
        return ServingFactors(table, lambda u, s: self.forward(s, inputs)[:, -1])

    def item_scorer(self, users: torch.Tensor, seqs: torch.Tensor):
        """The GRU runs once; each item range multiplies its last state by that range's table rows."""
        if type(self).score is not GRU4Rec.score:  # a subclass scoring its own way: the default slices that
            return super().item_scorer(users, seqs)
        table = self.item_table()
        return dot_scorer(self.forward(seqs, None if self.text_table is None else table)[:, -1], table)

    def loss(self, batch: dict) -> torch.Tensor:
        neg, rows = table_loss_rows(self.text_table is not None, self.loss_type, batch, self.n_items,
                                    self.neg_samples)
        table = self.item_table(rows)
        return next_item_loss(self.forward(batch["seqs"], None if self.text_table is None else table),
                              batch["targets"], table, self.loss_type, self.neg_samples, negatives=neg)
