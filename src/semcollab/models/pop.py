"""Most-popular baseline: every user gets items ranked by training interaction count."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..registry import register
from .base import Recommender, ServingFactors


@dataclass
class PopConfig:
    pass


@register("pop", task="ranking", config=PopConfig, aliases=("popularity",))
class Popularity(Recommender):
    batch_kind = None

    def __init__(self, n_users: int, n_items: int, cfg: PopConfig | None = None, popularity: np.ndarray | None = None):
        super().__init__(n_users, n_items)
        pop = np.zeros(n_items + 1) if popularity is None else np.asarray(popularity, dtype=np.float32)
        self.register_buffer("popularity", torch.as_tensor(pop, dtype=torch.float32))

    @classmethod
    def from_split(cls, split, cfg: PopConfig) -> Popularity:
        return cls(split.n_users, split.n_items, cfg, split.item_popularity())

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        return self.popularity.unsqueeze(0).expand(len(users), -1).clone()

    def serving_factors(self) -> ServingFactors | None:
        """Popularity as a one-dimensional product: every user's vector is 1."""
        if type(self).score is not Popularity.score:
            return None
        return ServingFactors(self.popularity[:, None].clone(), lambda u, s: torch.ones(len(u), 1))

    def item_scorer(self, users: torch.Tensor, seqs: torch.Tensor):
        """Each item range is that range of the popularity counts, one row per user."""
        if type(self).score is not Popularity.score:  # a subclass scoring its own way: the default slices that
            return super().item_scorer(users, seqs)
        return lambda start, stop: self.popularity[start:stop].unsqueeze(0).expand(len(users), -1).clone()
