"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence.

``forward(seqs) -> (B, L, D)`` hidden states; the state at position t predicts item t+1 by a dot
product with the (shared) item embedding table."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import Recommender, SequenceModelConfig, next_item_loss
from .layers import TransformerBlock, attention_mask


@dataclass
class SASRecConfig(SequenceModelConfig):
    pass


class SASRec(Recommender):
    batch_kind = "next_item"
    supported_losses = ("ce", "bce", "sampled_ce")
    causal = True

    def __init__(self, n_users: int, n_items: int, cfg: SASRecConfig | None = None, n_extra_tokens: int = 0):
        super().__init__(n_users, n_items)
        cfg = cfg or SASRecConfig()
        self.cfg, self.max_len = cfg, cfg.max_len
        self.item_emb = nn.Embedding(n_items + 1 + n_extra_tokens, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.emb_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.hidden, cfg.heads, cfg.dropout, cfg.attn_dropout) for _ in range(cfg.layers)
        )
        self.ln = nn.LayerNorm(cfg.hidden)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def embed(self, seqs: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        L = seqs.shape[1]
        # right-aligned positions: the last item is always position max_len - 1, so a batch cut to its
        # longest history (evaluation, one-user requests, trimmed training batches) sees the positions
        # that training used
        pos = torch.arange(self.max_len - L, self.max_len, device=seqs.device)
        items = self.item_emb(seqs) if table is None else table[seqs]
        x = items * (self.cfg.hidden ** 0.5) + self.pos_emb(pos)[None]
        return self.emb_drop(x * (seqs > 0).unsqueeze(-1))

    def forward(self, seqs: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states ``(B, L, D)``; ``table`` replaces the ID embeddings (subclasses fuse in text)."""
        seqs = seqs[:, -self.max_len:]
        x = self.embed(seqs, table)
        mask = attention_mask(seqs, causal=self.causal)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln(x)

    def item_table(self) -> torch.Tensor:
        return self.item_emb.weight[: self.n_items + 1]

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        return self.forward(seqs)[:, -1] @ self.item_table().T

    def loss(self, batch: dict) -> torch.Tensor:
        return next_item_loss(self.forward(batch["seqs"]), batch["targets"], self.item_table(),
                              self.loss_type, self.neg_samples)
