"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence.

``forward(seqs) -> (B, L, D)`` hidden states; the state at position t predicts item t+1 by a dot
product with the (shared) item embedding table (``model_params.similarity=cosine``: unit vectors over a
temperature instead). ``model_params.item_table`` makes that table a frozen LM
item table through an adapter (replacing or added to the ID embeddings; :mod:`.text_table`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ConfigError
from ..registry import register
from .base import (
    Recommender,
    SequenceModelConfig,
    ServingFactors,
    SimilaritySettings,
    dot_scorer,
    item_side,
    next_item_loss,
    query_side,
    table_loss_rows,
)
from .layers import TransformerBlock, attention_mask
from .text_table import ItemTableSettings, build_text_table, check_table_support


@dataclass
class SASRecConfig(SequenceModelConfig, ItemTableSettings, SimilaritySettings):
    _item_table_ok = True  # not a field: subclasses (fusion, SAERec, SASRec-CTR) must set it themselves


@register("sasrec", task="ranking", config=SASRecConfig)
class SASRec(Recommender):
    batch_kind = "next_item"
    supported_losses = ("ce", "bce", "sampled_ce")
    causal = True
    padding_invariant = True  # padding keys masked, positions right-aligned (SAERec, BERT4Rec, fusion inherit)
    _item_table_ok = True  # not inherited (read from the class itself): see check_table_support
    _similarity_ok = True  # not inherited either: a subclass with its own score/loss would ignore it

    @classmethod
    def check_similarity(cls, cfg) -> None:
        """Refuse ``similarity`` other than dot for a class that scores its own way; a subclass whose ``from_split``
        does costly work first (an SAE fit, text embedding) calls it before that work."""
        if getattr(cfg, "similarity", "dot") != "dot" and not vars(cls).get("_similarity_ok", False):
            raise ConfigError(f"model_params.similarity={cfg.similarity!r}: {cls.__name__} scores by dot "
                              f"product only (cosine is implemented for sasrec, alphafuse and hybrid)")

    def __init__(self, n_users: int, n_items: int, cfg: SASRecConfig | None = None, n_extra_tokens: int = 0,
                 item_ids=None):
        super().__init__(n_users, n_items)
        cfg = cfg or SASRecConfig()
        check_table_support(cfg, vars(type(self)).get("_item_table_ok", False)
                            and vars(type(cfg)).get("_item_table_ok", False), type(self).__name__)
        self.check_similarity(cfg)
        self.cfg, self.max_len = cfg, cfg.max_len
        self.item_emb = nn.Embedding(n_items + 1 + n_extra_tokens, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.emb_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.hidden, cfg.heads, cfg.dropout, cfg.attn_dropout) for _ in range(cfg.layers)
        )
        self.ln = nn.LayerNorm(cfg.hidden)
        self.apply(self._init)
        # after the init above, so a model without an item table draws the same initial weights as before
        self.text_table = build_text_table(cfg, n_items, cfg.hidden, item_ids)  # None without item_table

    @classmethod
    def from_split(cls, split, cfg: SASRecConfig) -> SASRec:
        """As the plain constructor, plus the split's item ids to check an item table's meta against."""
        return cls(split.n_users, split.n_items, cfg, item_ids=list(split.item_vocab.ids))

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

    def item_table(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The item representation ``(n_items + 1, hidden)``; ``rows``: with an LM item table, only these rows
        are built (the rest zero; see :meth:`ItemTextTable.forward`)."""
        if self.text_table is not None:
            return self.text_table(self.item_emb.weight, rows)
        return self.item_emb.weight[: self.n_items + 1]

    def input_table(self, table: torch.Tensor) -> torch.Tensor | None:
        """What ``forward`` reads for item index ``i``: ``None`` (the ID embedding) without an LM item table,
        else ``table`` followed by the extra tokens' ID rows (BERT4Rec's [MASK])."""
        if self.text_table is None:
            return None
        extra = self.item_emb.weight[self.n_items + 1:]
        return torch.cat([table, extra]) if len(extra) else table

    def user_state(self, seqs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """The ``(B, D)`` state that :meth:`score` multiplies by the item ``table``: the last position's."""
        return self.forward(seqs, self.input_table(table))[:, -1]

    def scoring_factors(self, seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(user vectors (B, D), item matrix (n_items + 1, D))`` whose product is :meth:`score`: the state and
        the item table, or (cosine) their unit versions with the temperature on the user side."""
        table = self.item_table()
        return query_side(self.cfg, self.user_state(seqs, table)), item_side(self.cfg, table)

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        users_v, items = self.scoring_factors(seqs)
        return users_v @ items.T

    def serving_factors(self) -> ServingFactors | None:
        """The item side of :meth:`scoring_factors` computed once; a subclass with a ``score`` of its own has
        none from here (fusion and SAERec give theirs)."""
        if type(self).score is not SASRec.score:
            return None
        table = self.item_table().detach().clone()
        return ServingFactors(item_side(self.cfg, table), lambda u, s: query_side(self.cfg, self.user_state(s, table)))

    def item_scorer(self, users: torch.Tensor, seqs: torch.Tensor):
        """The encoder runs once; each item range multiplies its state by that range's table rows. A subclass
        with a ``score`` of its own (fusion, SAERec) gets the default (its ``score``, sliced)."""
        if type(self).score is not SASRec.score:
            return super().item_scorer(users, seqs)
        return dot_scorer(*self.scoring_factors(seqs))

    def loss(self, batch: dict) -> torch.Tensor:
        neg, rows = table_loss_rows(self.text_table is not None, self.loss_type, batch, self.n_items,
                                    self.neg_samples)
        table = self.item_table(rows)
        states = self.forward(batch["seqs"], self.input_table(table))
        return next_item_loss(query_side(self.cfg, states), batch["targets"], item_side(self.cfg, table),
                              self.loss_type, self.neg_samples, negatives=neg)
