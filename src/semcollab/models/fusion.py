"""Semantic + collaborative fusion inside a SASRec encoder, in two flavours.

* ``mode="aligned"`` — plain alignment fusion: a projection of the frozen text vector is pulled
  onto the item's ID embedding with a contrastive (InfoNCE) loss and the two are averaged. If the
  views carried the same information this would be enough.
* ``mode="complementary"`` — complementarity-aware: only a *shared* sub-space is aligned; each view
  also keeps a *private* residual branch (kept apart from the shared part by an orthogonality
  penalty), and a per-item learned gate mixes the private semantic and private ID signals, so an
  item with few interactions can lean on its text while a popular one leans on its ID.

``forward(seqs)`` gives SASRec hidden states over the fused item table; ``score`` ranks all items
against that table; ``loss`` = next-item loss + ``align_weight`` x InfoNCE (+ ``orth_weight`` x
orthogonality in complementary mode)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import at_least, one_of, positive
from ..registry import register
from ..text import TextSettings
from .base import ServingFactors, info_nce, next_item_loss
from .sasrec import SASRec, SASRecConfig


@dataclass
class FusionConfig(SASRecConfig, TextSettings):
    mode: str = one_of("complementary", "aligned", "complementary")
    align_weight: float = at_least(0.1, 0, integer=False)
    temperature: float = positive(0.2)
    orth_weight: float = at_least(0.01, 0, integer=False)
    align_items: int = at_least(1024, 1)  # items per batch in the contrastive loss


@register("fusion", task="ranking", config=FusionConfig)
class SemCollabFusion(SASRec):
    def __init__(self, n_users: int, n_items: int, cfg: FusionConfig, item_vectors: np.ndarray):
        super().__init__(n_users, n_items, cfg)
        if cfg.mode not in ("aligned", "complementary"):
            raise ValueError(f"fusion mode must be aligned or complementary, got {cfg.mode!r}")
        if item_vectors.shape[0] != n_items + 1:
            raise ValueError(f"item_vectors has {item_vectors.shape[0]} rows, expected {n_items + 1}")
        text = F.normalize(torch.as_tensor(item_vectors, dtype=torch.float32), dim=-1)
        text[0] = 0
        self.register_buffer("text", text)
        d, h = text.shape[1], cfg.hidden
        self.shared_text = nn.Sequential(nn.Linear(d, h), nn.LayerNorm(h))
        if cfg.mode == "complementary":
            self.shared_id = nn.Linear(h, h)
            self.private_text = nn.Sequential(nn.Linear(d, h), nn.LayerNorm(h))
            self.gate = nn.Linear(d + h, h)
        self.last_gate: torch.Tensor | None = None

    @classmethod
    def from_split(cls, split, cfg: FusionConfig) -> SemCollabFusion:
        from ..text import EmbedConfig, item_embeddings

        cls.check_similarity(cfg)  # before the text embedding
        vecs, _ = item_embeddings(split, EmbedConfig.from_model_config(cfg))
        return cls(split.n_users, split.n_items, cfg, vecs)

    def _views(self):
        ids = self.item_emb.weight[: self.n_items + 1]
        st = self.shared_text(self.text)
        if self.cfg.mode == "aligned":
            return {"table": 0.5 * (st + ids), "a": st, "b": ids}
        sid = self.shared_id(ids)
        pt = self.private_text(self.text)
        g = torch.sigmoid(self.gate(torch.cat([self.text, ids], dim=-1)))
        self.last_gate = g.detach()
        table = 0.5 * (st + sid) + g * pt + (1 - g) * ids
        return {"table": table, "a": st, "b": sid, "private_text": pt, "private_id": ids}

    def item_table(self) -> torch.Tensor:
        return self._views()["table"]

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        table = self.item_table()
        return self.forward(seqs, table)[:, -1] @ table.T

    def serving_factors(self) -> ServingFactors | None:
        if type(self).score is not SemCollabFusion.score:
            return None
        table = self.item_table().detach().clone()
        return ServingFactors(table, lambda u, s: self.forward(s, table)[:, -1])

    def _align_loss(self, a: torch.Tensor, b: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        items = items.unique()
        items = items[items > 0]
        if len(items) > self.cfg.align_items:
            items = items[torch.randperm(len(items), device=items.device)[: self.cfg.align_items]]
        return info_nce(a[items], b[items], self.cfg.temperature)

    def loss(self, batch: dict) -> torch.Tensor:
        v = self._views()
        table = v["table"]
        loss = next_item_loss(self.forward(batch["seqs"], table), batch["targets"], table, self.loss_type,
                              self.neg_samples)
        items = torch.cat([batch["seqs"].flatten(), batch["targets"].flatten()])
        if self.cfg.align_weight > 0:
            loss = loss + self.cfg.align_weight * self._align_loss(v["a"], v["b"], items)
        if self.cfg.mode == "complementary" and self.cfg.orth_weight > 0:
            idx = items.unique()
            idx = idx[idx > 0]
            shared = F.normalize(0.5 * (v["a"] + v["b"])[idx], dim=-1)
            orth = (shared * F.normalize(v["private_text"][idx], dim=-1)).sum(-1).pow(2).mean() + \
                   (shared * F.normalize(v["private_id"][idx], dim=-1)).sum(-1).pow(2).mean()
            loss = loss + self.cfg.orth_weight * orth
        return loss
