"""semcollab's semantic + collaborative sequential model (issue 33): gated item views, one encoder, two heads.

Designed from the diagnostics in docs/results.md (sections 5, 12, 15):

* the semantic view beats SASRec on tail items but loses overall, and replacing the ID table by an LM table
  (SASRec on LM item tables) loses: so the ID table stays, and text is *added* per item, by a learned gate that
  sees the item's log training popularity (``gate=item``): a tail item can lean on its text, a head item on its ID;
* score fusion of the two views closes 27-49% of the oracle gap but is trained apart: here the fusion is trained
  end to end, inside the item representation and (``semantic_head``) at the score, where a second head scores the
  sequence state against the purely semantic item vectors and a gate on the user's history length
  (``gate=item+user``) mixes the two scores;
* GRU4Rec gains from LM tables, SASRec from its ID table: the ID table may start from the text's principal
  components (``id_init=text_pca``), rescaled to SASRec's init scale, then trains freely;
* on tail targets the semantic head is the better ranker: ``tail_distill`` pulls the fused scores towards its
  (detached) distribution there.

Item ``i``: ``e_i = (1 - g_i) * id_i + g_i * s_i`` with ``s_i = adapter(text_i)`` (text frozen, unit rows) and
``g_i = sigmoid(W * log_pop_i + b)`` per dimension (``gate=none``: 0.5). ``e`` is SASRec's input and output table.
Score: ``(1 - w_u) * h . e_i + w_u * q(h) . s_i`` with ``w_u = sigmoid(a * log_len_u + c)`` (``gate=item``: a
learned constant, ``none``: 0.5); written as one dot product ``[(1 - w) h, w q] . [e_i, s_i]``, so the bounded
:meth:`item_scorer` and every loss of :func:`.base.next_item_loss` apply. Both gates start at exactly 0.5 (zero
weights), so ``gate=none`` is the fixed-mix ablation of the same model at initialisation. Every component is a
``model_params`` flag: each ablation is a config override.

``item_view=null_space`` swaps the item side for AlphaFuse's (frozen whitened text coordinates ``s_i``, the ID
embedding added in their last ``null_dim`` directions): ``e_i = s_i + [0 | (1 - g_i) * id_i]``, and the semantic
head scores against ``s_i`` itself. ``similarity=cosine``: both heads score unit vectors over a temperature
(``cos(h, e_i) / T`` and ``cos(q, s_i) / T``, then mixed by ``w_u``), as AlphaFuse does."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, at_least, one_of, positive
from ..evaluation.ranking import head_items
from ..registry import register
from .alphafuse import SemanticItemSettings, encoder_config, semantic_item_vectors, spectral_coordinates
from .base import (
    SequenceModelConfig,
    ServingFactors,
    SimilaritySettings,
    batch_item_rows,
    dot_scorer,
    draw_negatives,
    item_side,
    next_item_loss,
    query_side,
)
from .llm_esr import pca_coordinates
from .sasrec import SASRec

HEAD_FRAC = 0.2  # tail = the 80% least popular training items, the evaluation's default head/tail cut
INIT_STD = 0.02  # SASRec's N(0, 0.02) init: the scale every part of the item table starts at


@dataclass
class HybridConfig(SequenceModelConfig, SemanticItemSettings, SimilaritySettings):
    gate: str = one_of("item+user", "none", "item", "item+user")  # none: fixed 0.5 mixes
    # gated: (1 - g) id + g adapter(text); null_space: frozen whitened text coordinates + (1 - g) id in their last
    # null_dim directions (AlphaFuse's item representation, with the popularity gate on the ID part)
    item_view: str = one_of("gated", "gated", "null_space")
    null_dim: int = at_least(32, 1)  # null_space only: the trailing directions that carry the ID embedding
    # auto: text_pca for the gated view, zeros for the null space (where a text start would repeat the coordinates)
    id_init: str = one_of("auto", "auto", "text_pca", "random", "zeros")
    semantic_head: bool = True  # second head: the state scored against the semantic item vectors
    semantic_loss: float = at_least(0.5, 0, integer=False)  # the semantic head's own next-item loss (weight)
    tail_distill: float = at_least(0.5, 0, integer=False)  # KL(semantic head || fused) on tail targets (weight)
    distill_temperature: float = positive(1.0)
    adapter: str = one_of("mlp", "linear", "mlp")  # mlp: linear + a GELU residual branch

    def _check(self):
        yield from super()._check()
        if self.item_view == "null_space":
            if self.null_dim >= self.hidden:
                yield "null_dim", f"must be < model_params.hidden={self.hidden}, got {self.null_dim}"
            if self.id_init == "text_pca":
                yield "id_init", "text_pca repeats the text coordinates inside their null space: use zeros or " \
                                 "random with model_params.item_view=null_space"
        if not self.semantic_head:
            if self.gate == "item+user":
                yield "gate", "item+user mixes the semantic head's score by history length: it needs " \
                              "model_params.semantic_head=true (use gate=item or none without it)"
            for key in ("semantic_loss", "tail_distill"):
                if getattr(self, key) > 0:
                    yield key, "trains or distils from the semantic head: set it to 0 with " \
                               "model_params.semantic_head=false"


class Adapter(nn.Module):
    """Frozen text vector -> hidden: a linear map, plus (``mlp``) a GELU residual branch that starts near zero."""

    def __init__(self, d_in: int, hidden: int, kind: str):
        super().__init__()
        self.linear = nn.Linear(d_in, hidden)
        self.branch = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden)) \
            if kind == "mlp" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) if self.branch is None else self.linear(x) + self.branch(x)


class ScalarFeatureGate(nn.Module):
    """``sigmoid(w * feature + b)`` with ``out`` outputs; zero-initialised, so it starts at exactly 0.5."""

    def __init__(self, out: int):
        super().__init__()
        self.proj = nn.Linear(1, out)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.proj(feature.unsqueeze(-1)))


def log_scaled(counts: torch.Tensor, top: float) -> torch.Tensor:
    """``log1p(counts) / log1p(top)``: a feature in [0, 1] for counts up to ``top``."""
    return torch.log1p(counts.float()) / math.log1p(max(top, 1.0))


@register("hybrid", task="ranking", config=HybridConfig)
class Hybrid(SASRec):
    """SASRec over popularity-gated ID + semantic item vectors, with a history-length-gated semantic head."""

    _similarity_ok = True

    def __init__(self, n_users: int, n_items: int, cfg: HybridConfig, item_vectors: np.ndarray,
                 popularity: np.ndarray):
        super().__init__(n_users, n_items, encoder_config(cfg))
        self.cfg = cfg
        if item_vectors.shape[0] != n_items + 1 or len(popularity) != n_items + 1:
            raise ValueError(f"item_vectors ({item_vectors.shape[0]} rows) and popularity ({len(popularity)}) must "
                             f"have n_items + 1 = {n_items + 1} rows")
        check_item_vectors(item_vectors)
        h = cfg.hidden
        self.null_space = cfg.item_view == "null_space"
        if self.null_space:  # whitened spectral coordinates: the semantic item vectors themselves, no adapter
            coords, _ = spectral_coordinates(item_vectors, h, True, "hybrid", h - cfg.null_dim)
            text = torch.as_tensor(coords, dtype=torch.float32)
        else:
            text = F.normalize(torch.as_tensor(item_vectors, dtype=torch.float32), dim=-1)
            text[0] = 0
        self.register_buffer("semantic", text)  # frozen: never a parameter
        pop = torch.as_tensor(np.asarray(popularity), dtype=torch.float32)
        self.register_buffer("item_feature", log_scaled(pop, float(pop.max())))  # log popularity in [0, 1]
        tail = torch.as_tensor(~head_items(np.asarray(popularity), HEAD_FRAC))
        tail[0] = False
        self.register_buffer("tail", tail)
        if self.null_space:
            self.d_sem = h - cfg.null_dim
            self.adapter = None
            self.item_emb = nn.Embedding(n_items + 1, cfg.null_dim, padding_idx=0)  # the ID part, null space only
            if cfg.id_init in ("auto", "zeros"):
                nn.init.zeros_(self.item_emb.weight)
            else:
                self._init(self.item_emb)
        else:
            self.adapter = Adapter(text.shape[1], h, cfg.adapter)
            self.adapter.apply(self._init)
        id_width = cfg.null_dim if self.null_space else h
        self.item_gate = ScalarFeatureGate(id_width) if cfg.gate != "none" else None
        if cfg.semantic_head:
            self.query = nn.Linear(h, h)
            self.query.apply(self._init)
        self.user_gate = ScalarFeatureGate(1) if cfg.semantic_head and cfg.gate != "none" else None
        if cfg.id_init == "zeros" and not self.null_space:
            with torch.no_grad():
                self.item_emb.weight.zero_()
        if not self.null_space and cfg.id_init in ("auto", "text_pca"):
            known = (text[1:] != 0).any(1)
            pca = np.zeros((n_items, h))
            if int(known.sum()) > 1:
                pca[known.numpy()] = pca_coordinates(text[1:][known].numpy(), h)
            std = pca[known.numpy()].std() if known.any() else 0.0
            with torch.no_grad():
                self.item_emb.weight[1:] = torch.as_tensor(pca * (INIT_STD / std if std > 0 else 0.0))
                self.item_emb.weight[0] = 0

    @classmethod
    def from_split(cls, split, cfg: HybridConfig) -> Hybrid:
        return cls(split.n_users, split.n_items, cfg, semantic_item_vectors(split, cfg), split.item_popularity())

    # ----------------------------------------------------------------- representations
    def semantic_table(self) -> torch.Tensor:
        """``s``: the adapted text vectors ``(n_items + 1, hidden)`` (row 0 zero)."""
        return self.views()[1]

    def item_gates(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``g``: per item (all, or ``rows``) and dimension, the weight of the semantic vector in the item
        representation."""
        feature = self.item_feature if rows is None else self.item_feature[rows]
        if self.item_gate is None:
            return feature.new_full((len(feature), self.item_emb.embedding_dim), 0.5)
        return self.item_gate(feature)

    def views(self, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(e, s)``: the gated item representation (encoder input and ID-head table) and the semantic table,
        each ``(n_items + 1, hidden)``, row 0 zero. ``rows`` (sorted item indices in ``1..n_items``): only those
        rows are built, the rest left zero; a sampled loss reads a few thousand of Beauty's 12k items, and the
        adapter over all of them would cost more than the encoder."""
        ids = self.item_emb.weight[: self.n_items + 1]
        if rows is None:
            rows = torch.arange(1, self.n_items + 1, device=ids.device)
        g = self.item_gates(rows)
        if self.null_space:  # s + [0 | (1 - g) id]: the ID moves only the null-space coordinates
            s_rows = self.semantic[rows]
            e_rows = s_rows + F.pad((1 - g) * ids[rows], (self.d_sem, 0))
        else:
            s_rows = self.adapter(self.semantic[rows])
            e_rows = (1 - g) * ids[rows] + g * s_rows
        empty = ids.new_zeros(self.n_items + 1, self.cfg.hidden)
        return empty.index_copy(0, rows, e_rows), empty.index_copy(0, rows, s_rows)

    def scoring_table(self, e: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """What the user vectors multiply: ``e``, or ``[e | s]`` with the semantic head (unit rows under cosine)."""
        e, s = item_side(self.cfg, e), item_side(self.cfg, s)
        return torch.cat([e, s], 1) if self.cfg.semantic_head else e

    def item_table(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The scoring table (:meth:`scoring_table` of all items)."""
        return self.scoring_table(*self.views())

    def user_weights(self, seqs: torch.Tensor) -> torch.Tensor:
        """``w`` ``(B, L, 1)``: the semantic head's share of the score at each position, from the history length
        seen there (counted within the last ``max_len`` items, as the encoder sees them)."""
        lengths = (seqs > 0).cumsum(1)
        if self.user_gate is None:
            return torch.full((*seqs.shape, 1), 0.5, device=seqs.device)
        feature = log_scaled(lengths, self.max_len)
        if self.cfg.gate == "item":  # a learned constant: the gate sees no user feature
            feature = torch.zeros_like(feature)
        return self.user_gate(feature)

    def head_states(self, seqs: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(h, q, w)`` per position: the ID head's query ``h``, the semantic head's ``q`` and its share ``w`` of
        the score (unit vectors over the temperature under cosine; ``q`` and ``w`` None without the semantic head)."""
        seqs = seqs[:, -self.max_len:]
        # the null-space coordinates are whitened (unit variance each): they go in unscaled, as AlphaFuse feeds them
        # (SASRec's embed multiplies by sqrt(hidden))
        h = self.forward(seqs, e * self.cfg.hidden ** -0.5 if self.null_space else e)
        if not self.cfg.semantic_head:
            return query_side(self.cfg, h), None, None
        return query_side(self.cfg, h), query_side(self.cfg, self.query(h)), self.user_weights(seqs)

    def user_vectors(self, seqs: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(u, q)``: per position, the vector the scoring table multiplies (``h`` or ``[(1 - w) h, w q]``) and the
        semantic head's query ``q`` (None without it)."""
        h, q, w = self.head_states(seqs, e)
        return (h, None) if q is None else (torch.cat([(1 - w) * h, w * q], -1), q)

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        return self.item_scorer(users, seqs)(0, self.n_items + 1)

    def last_users(self, seqs: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """The user vectors :meth:`scoring_table` multiplies, at the last position (a popularity correction is
        ``eval.pop_correction``'s wrapper, semcollab.models.pop_correction, as for any model)."""
        return self.user_vectors(seqs, e)[0][:, -1]

    def serving_factors(self) -> ServingFactors:
        e, s = (v.detach().clone() for v in self.views())
        return ServingFactors(self.scoring_table(e, s), lambda u, seqs: self.last_users(seqs, e))

    def item_scorer(self, users: torch.Tensor, seqs: torch.Tensor):
        e, s = self.views()
        return dot_scorer(self.last_users(seqs, e), self.scoring_table(e, s))

    # ----------------------------------------------------------------- training
    def loss(self, batch: dict) -> torch.Tensor:
        return sum(self.loss_terms(batch).values())

    def loss_terms(self, batch: dict) -> dict[str, torch.Tensor]:
        """The weighted loss terms: ``next_item`` (fused scores), ``semantic`` (the head alone), ``tail_distill``.
        With sampled negatives and the semantic head, :meth:`shared_logit_terms` computes the same terms from the
        two heads' logits once (the fused logits are their ``w``-mix), about half the loss's matmuls."""
        targets = batch["targets"]
        neg = draw_negatives(self.loss_type, targets, self.n_items, self.neg_samples)
        if self.loss_type == "sampled_ce" and self.cfg.semantic_head:
            return self.shared_logit_terms(batch, neg)
        return self.general_terms(batch, neg)

    def general_terms(self, batch: dict, neg: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """:meth:`loss_terms` for any loss: each term scores its own candidates (``neg``: drawn by the caller)."""
        targets = batch["targets"]
        e, s = self.views(None if neg is None else batch_item_rows(self.n_items, batch["seqs"], targets, neg))
        table = self.scoring_table(e, s)
        u, q = self.user_vectors(batch["seqs"], e)
        s = item_side(self.cfg, s)
        terms = {"next_item": next_item_loss(u, targets, table, self.loss_type, self.neg_samples, negatives=neg)}
        if q is None:
            return terms
        if self.cfg.semantic_loss > 0:
            terms["semantic"] = self.cfg.semantic_loss * next_item_loss(q, targets, s, self.loss_type,
                                                                         self.neg_samples, negatives=neg)
        if self.cfg.tail_distill > 0:
            keep = targets > 0
            t = targets[keep]
            is_tail = self.tail[t]
            if not bool(is_tail.any()):
                terms["tail_distill"] = u.sum() * 0.0
            else:
                teacher = candidate_logits(q[keep][is_tail].detach(), t[is_tail], s.detach(), neg, self.loss_type,
                                           is_tail)
                student = candidate_logits(u[keep][is_tail], t[is_tail], table, neg, self.loss_type, is_tail)
                terms["tail_distill"] = self.cfg.tail_distill * self.distill_kl(teacher, student, len(t))
        return terms

    def shared_logit_terms(self, batch: dict, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`general_terms` for ``sampled_ce`` with the semantic head, equal up to float rounding: the ID head's
        and the semantic head's logits over (target, negatives) are computed once each; the fused logits are
        ``(1 - w) * id + w * semantic``, the distillation's teacher and student their tail rows."""
        targets = batch["targets"]
        e, s = self.views(batch_item_rows(self.n_items, batch["seqs"], targets, neg))
        h, q, w = self.head_states(batch["seqs"], e)
        e, s = item_side(self.cfg, e), item_side(self.cfg, s)
        keep = targets > 0
        t = targets[keep]
        h, q, w = h[keep], q[keep], w[keep]
        masked = torch.cat([torch.zeros_like(t, dtype=torch.bool).unsqueeze(1), neg.unsqueeze(0) == t.unsqueeze(1)], 1)

        def logits(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
            return torch.cat([(x * table[t]).sum(-1, keepdim=True), x @ table[neg].T], 1)

        semantic = logits(q, s)
        fused = ((1 - w) * logits(h, e) + w * semantic).masked_fill(masked, -torch.inf)
        semantic = semantic.masked_fill(masked, -torch.inf)
        first = torch.zeros_like(t)
        terms = {"next_item": F.cross_entropy(fused.float(), first)}
        if self.cfg.semantic_loss > 0:
            terms["semantic"] = self.cfg.semantic_loss * F.cross_entropy(semantic.float(), first)
        if self.cfg.tail_distill > 0:
            is_tail = self.tail[t]
            terms["tail_distill"] = self.cfg.tail_distill * (
                self.distill_kl(semantic[is_tail].detach(), fused[is_tail], len(t)) if bool(is_tail.any())
                else fused.sum() * 0.0)
        return terms

    def distill_kl(self, teacher: torch.Tensor, student: torch.Tensor, n_targets: int) -> torch.Tensor:
        """KL(teacher || student) over each tail-target position's candidates (``-inf`` where masked), teacher = the
        semantic head's detached logits, summed and averaged over all ``n_targets`` target positions."""
        temp = self.cfg.distill_temperature
        p = torch.softmax(teacher.float() / temp, -1)
        log_student = torch.log_softmax(student.float() / temp, -1).masked_fill(~torch.isfinite(teacher), 0.0)
        kl = (torch.special.xlogy(p, p) - p * log_student).sum(-1)
        return kl.sum() / n_targets * temp ** 2


def candidate_logits(h: torch.Tensor, t: torch.Tensor, table: torch.Tensor, neg: torch.Tensor | None, loss: str,
                     rows: torch.Tensor) -> torch.Tensor:
    """The logits :func:`.base.next_item_loss` builds for ``loss`` (``-inf`` where it masks), for positions ``h``
    with targets ``t``; ``rows`` selects these positions among the batch's (``bce`` negatives are per position)."""
    if loss == "ce":
        logits = h @ table.T
        logits[:, 0] = -torch.inf
        return logits
    pos = (h * table[t]).sum(-1, keepdim=True)
    if loss == "bce":
        return torch.cat([pos, torch.einsum("pd,pnd->pn", h, table[neg[rows]])], 1)
    other = (h @ table[neg].T).masked_fill(neg.unsqueeze(0) == t.unsqueeze(1), -torch.inf)
    return torch.cat([pos, other], 1)


def check_item_vectors(item_vectors: np.ndarray) -> None:
    """A ConfigError when no item has a text vector (nothing for the semantic view to read)."""
    if not np.asarray(item_vectors)[1:].any():
        raise ConfigError("hybrid: every item text vector is zero; check model_params.item_table / template")
