"""Semantic-only recommender: a user is the mean of their recent items' text vectors; rank by cosine.

No collaborative signal at all, so it shows what the language model alone knows; it is the
semantic half of the complementarity diagnostics. Nothing to train.

An item without a text vector (an all-zero row: ``model_params.empty_text=skip`` for items whose text is
empty) is unknown to this model: it is scored ``-inf`` (never recommended; a miss when it is the target,
as for any item the model cannot rank) and left out of the user's mean."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import at_least, fraction
from ..registry import register
from ..text import TextSettings
from .base import Recommender, ServingFactors


@dataclass
class SemanticConfig(TextSettings):
    max_len: int = at_least(50, 1)  # recent items averaged into the user vector
    recency_decay: float = fraction(1.0, lo_open=True, hi_open=False)  # weight of the item k steps back = decay**k (1.0 = plain mean)


@register("semantic", task="ranking", config=SemanticConfig)
class SemanticMean(Recommender):
    batch_kind = None

    def __init__(self, n_users: int, n_items: int, cfg: SemanticConfig, item_vectors: np.ndarray):
        super().__init__(n_users, n_items)
        if item_vectors.shape[0] != n_items + 1:
            raise ValueError(f"item_vectors has {item_vectors.shape[0]} rows, expected n_items + 1 = {n_items + 1}")
        self.cfg, self.max_len = cfg, cfg.max_len
        vec = F.normalize(torch.as_tensor(item_vectors, dtype=torch.float32), dim=-1)
        vec[0] = 0
        self.register_buffer("item_vectors", vec)
        unknown = (vec == 0).all(-1)
        unknown[0] = False  # padding: the evaluator masks it itself
        self.register_buffer("unknown_items", unknown, persistent=False)

    @classmethod
    def from_split(cls, split, cfg: SemanticConfig) -> SemanticMean:
        from ..text import EmbedConfig, item_embeddings

        vecs, _ = item_embeddings(split, EmbedConfig.from_model_config(cfg))
        return cls(split.n_users, split.n_items, cfg, vecs)

    def user_vectors(self, seqs: torch.Tensor) -> torch.Tensor:
        seqs = seqs[:, -self.max_len:]
        L = seqs.shape[1]
        w = self.cfg.recency_decay ** torch.arange(L - 1, -1, -1, device=seqs.device, dtype=torch.float32)
        w = w[None] * ((seqs > 0) & ~self.unknown_items[seqs]).float()
        u = (self.item_vectors[seqs] * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True).clamp(min=1e-9)
        return F.normalize(u, dim=-1)

    def serving_factors(self) -> ServingFactors | None:
        """Items without text are never recommended (the ``exclude`` columns), as in :meth:`score`."""
        if type(self).score is not SemanticMean.score:
            return None
        exclude = self.unknown_items.clone() if self.unknown_items.any() else None
        return ServingFactors(self.item_vectors.clone(), lambda u, s: self.user_vectors(s), exclude)

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        scores = self.user_vectors(seqs) @ self.item_vectors.T
        if self.unknown_items.any():
            scores = scores.masked_fill(self.unknown_items, -torch.inf)
        return scores
