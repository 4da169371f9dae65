"""LLM-ESR (Liu et al., NeurIPS 2024): dual-view sequence modelling with retrieval-augmented self-distillation.

* Semantic view: the frozen item text vectors through a trainable adapter ``Linear(d, d/2) -> Linear(d/2,
  hidden)`` (no nonlinearity, as the authors'). Collaborative view: a trainable ID table, initialised from the
  PCA of the same text vectors (the authors' ``pca64`` file), or randomly (``id_init=random``).
* Both views run through ONE SASRec encoder (shared positions, blocks and final norm); optionally each view's
  input first attends to the other view (``cross_attention``: queries from one view, keys and values from the
  other, the output replacing the input, as the authors' runs do). The user is the concatenation of the two
  views' last states; an item is ``[ID row | adapter(text row)]``; the score is their dot product.
* Retrieval-augmented self-distillation: each user's ``distill_users`` most similar users are found once by the
  cosine of semantic user vectors; the loss adds ``distill_weight`` x MSE between the user's representation and
  the mean of those users' representations (encoded by the same model from their training histories, with no
  gradient). The authors apply it to every training sequence, not only long-tail users: so does this.

Deviations (docs in /work/notes/i33-peers.md): the cross-attention is causal (the authors' is not, which lets a
position see the items it is trained to predict); a semantic user vector is the mean of the user's training item
vectors (the authors embed a prompt listing the history's titles with the same LLM); semcollab's SASRec block
(pre-norm, GELU) and initialisation. Item vectors come from the text encoder settings or ``model_params.item_table``
(:func:`.alphafuse.semantic_item_vectors`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed as ddp
from ..config import at_least, fraction, one_of
from ..data.batches import BatchBuilder
from ..registry import register
from .alphafuse import SemanticItemSettings, encoder_config, semantic_item_vectors
from .base import SequenceModelConfig, next_item_loss
from .layers import attention_mask
from .sasrec import SASRec


@dataclass
class LLMESRConfig(SequenceModelConfig, SemanticItemSettings):
    # the authors' Beauty run (experiments/beauty.bash, main.py defaults): hidden 64, 2 blocks, 1 head, dropout 0.5
    heads: int = at_least(1, 1)
    dropout: float = fraction(0.5)
    attn_dropout: float = fraction(0.5)
    cross_attention: bool = True  # --use_cross_att in the authors' runs
    cross_heads: int = at_least(2, 1)
    id_init: str = one_of("pca", "pca", "random")  # pca: the ID table starts as the PCA of the text vectors
    distill_weight: float = at_least(0.1, 0, integer=False)  # alpha; 0 turns the self-distillation off
    distill_users: int = at_least(10, 1)  # similar users retrieved per user (sim_user_num)
    # batch: the similar users' states are encoded again for every batch, with dropout (the authors'; ~K extra
    # forward passes a batch); epoch: every user's state is encoded once at the start of each epoch, without
    # dropout, and each user's target is the mean of its similar users' cached states (targets up to an epoch old)
    distill_targets: str = one_of("batch", "batch", "epoch")

    def _check(self):
        yield from super()._check()
        if self.hidden % self.cross_heads:
            yield "cross_heads", f"must divide model_params.hidden={self.hidden}, got {self.cross_heads}"


class CrossViewAttention(nn.Module):
    """Queries from one view, keys and values from the other (causal, padding keys masked)."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v = (nn.Linear(hidden, hidden, bias=False) for _ in range(3))
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape

        def split(t):
            return t.view(B, L, self.heads, D // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(y)), split(self.v(y)), attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out(out.transpose(1, 2).reshape(B, L, D))


def pca_coordinates(vectors: np.ndarray, dim: int) -> np.ndarray:
    """The rows' coordinates on their top-``dim`` principal directions (centred, float64 SVD, deterministic
    signs); zero columns beyond the rank the rows allow."""
    x = vectors.astype(np.float64) - vectors.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:dim]
    vt = vt * np.where(vt[np.arange(len(vt)), np.abs(vt).argmax(1)] < 0, -1.0, 1.0)[:, None]
    out = np.zeros((len(x), dim))
    out[:, :len(vt)] = x @ vt.T
    return out


def similar_users(user_vectors: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """``(n_users, k)`` indices of each user's ``k`` most cosine-similar other users (self excluded; ties by
    index). Users without a vector (a zero row) neither retrieve nor get retrieved: their row is themselves."""
    u = F.normalize(user_vectors.float(), dim=-1)
    n = len(u)
    k = min(k, max(n - 1, 1))
    has = u.norm(dim=-1) > 0
    out = torch.arange(n)[:, None].repeat(1, k)
    for s in range(0, n, chunk):
        sim = u[s:s + chunk] @ u.T
        sim[:, ~has] = -torch.inf
        sim[~has[s:s + chunk]] = -torch.inf
        sim[torch.arange(len(sim)), torch.arange(s, s + len(sim))] = -torch.inf
        top = sim.topk(k, dim=1).indices
        top = torch.where(torch.isfinite(sim.gather(1, top)), top, torch.arange(s, s + len(sim))[:, None])
        out[s:s + chunk] = top
    return out


class OwnedWindows(BatchBuilder):
    """next_item batches that also carry each window's user (``owners``, ``(B, W)``: the user id repeated across
    the row, so the builder's padding trim and a rank's row shard keep it aligned with ``seqs``)."""

    def __init__(self, seqs: list, n_items: int, max_len: int, length_buckets: bool = False,
                 on_epoch: Callable[[], None] | None = None):
        super().__init__("next_item", seqs, n_items, max_len, length_buckets=length_buckets)
        self.on_epoch = on_epoch  # called as each epoch's batches start (LLM-ESR's epoch-old distillation targets)
        # sequence_windows cuts a history of n >= 2 items into ceil((n - 1) / max_len) windows, user by user
        counts = [-(-(len(s) - 1) // max_len) if len(s) >= 2 else 0 for s in seqs]
        self.owners = np.repeat(np.arange(len(seqs)), counts)
        if len(self.owners) != len(self.windows):
            raise RuntimeError(f"{len(self.owners)} window owners for {len(self.windows)} windows")

    def epoch(self, batch_size: int, rng: np.random.Generator, device) -> Iterator[dict]:
        if self.on_epoch is not None:
            self.on_epoch()
        yield from super().epoch(batch_size, rng, device)

    def _batch(self, idx: np.ndarray, rng: np.random.Generator) -> dict:
        batch = super()._batch(idx, rng)
        batch["owners"] = np.repeat(self.owners[idx][:, None], batch["seqs"].shape[1], 1)
        return batch


@register("llm-esr", task="ranking", config=LLMESRConfig, aliases=("llmesr",))
class LLMESR(SASRec):
    """Dual-view (ID + frozen text) SASRec with retrieval-augmented self-distillation."""

    def __init__(self, n_users: int, n_items: int, cfg: LLMESRConfig, item_vectors: np.ndarray):
        super().__init__(n_users, n_items, encoder_config(cfg))
        self.cfg = cfg
        if item_vectors.shape[0] != n_items + 1:
            raise ValueError(f"item_vectors has {item_vectors.shape[0]} rows, expected n_items + 1 = {n_items + 1}")
        text = F.normalize(torch.as_tensor(item_vectors, dtype=torch.float32), dim=-1)  # unit rows (as ada-002)
        text[0] = 0
        self.register_buffer("semantic", text)  # frozen: never a parameter
        d = text.shape[1]
        self.adapter = nn.Sequential(nn.Linear(d, max(d // 2, 1)), nn.Linear(max(d // 2, 1), cfg.hidden))
        if cfg.cross_attention:
            self.text_to_id = CrossViewAttention(cfg.hidden, cfg.cross_heads, cfg.attn_dropout)
            self.id_to_text = CrossViewAttention(cfg.hidden, cfg.cross_heads, cfg.attn_dropout)
        for module in (self.adapter, *([self.text_to_id, self.id_to_text] if cfg.cross_attention else [])):
            module.apply(self._init)  # SASRec's init (N(0, .02), zero biases) for the layers added here
        if cfg.id_init == "pca":
            with torch.no_grad():
                self.item_emb.weight[1:] = torch.as_tensor(pca_coordinates(text[1:].numpy(), cfg.hidden))
        # training-only retrieval state, set by training_batches (not saved: rebuilt from the split each fit)
        self.register_buffer("sim_users", torch.zeros(0, 0, dtype=torch.long), persistent=False)
        self.register_buffer("histories", torch.zeros(0, 0, dtype=torch.long), persistent=False)
        self._epoch_targets: torch.Tensor | None = None  # distill_targets=epoch: (n_users, 2 * hidden), this epoch's

    @classmethod
    def from_split(cls, split, cfg: LLMESRConfig) -> LLMESR:
        return cls(split.n_users, split.n_items, cfg, semantic_item_vectors(split, cfg))

    # ----------------------------------------------------------------- representations
    def view_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ID rows, adapted text rows)``, each ``(n_items + 1, hidden)``."""
        return self.item_emb.weight[: self.n_items + 1], self.adapter(self.semantic)

    def item_table(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The scoring table ``[ID | adapter(text)]``, ``(n_items + 1, 2 * hidden)``."""
        return torch.cat(self.view_tables(), 1)

    def encode(self, seqs: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``(B, L, 2 * hidden)``: the shared encoder's states over the ID view and over the text view."""
        seqs = seqs[:, -self.max_len:]
        ids, text = tables if tables is not None else self.view_tables()
        x_id, x_text = self.embed(seqs, ids), self.embed(seqs, text)
        mask = attention_mask(seqs, causal=True)
        if self.cfg.cross_attention:
            x_id, x_text = self.text_to_id(x_text, x_id, mask), self.id_to_text(x_id, x_text, mask)
        x = torch.cat([x_id, x_text])  # one pass of the shared blocks over both views
        for block in self.blocks:
            x = block(x, mask.repeat(2, 1, 1, 1))
        h_id, h_text = self.ln(x).chunk(2)
        return torch.cat([h_id, h_text], -1)

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        tables = self.view_tables()
        return self.encode(seqs, tables)[:, -1] @ torch.cat(tables, 1).T

    # ----------------------------------------------------------------- training
    def training_batches(self, seqs: list, n_items: int, length_buckets: bool = False) -> BatchBuilder:
        """next_item windows with their users; also retrieves every user's similar users (semantic user vectors:
        the mean of the user's training item vectors) and keeps their last ``max_len`` training items."""
        if self.cfg.distill_weight == 0:
            return super().training_batches(seqs, n_items, length_buckets)
        hist = np.zeros((len(seqs), self.max_len), dtype=np.int64)
        text = self.semantic.detach().cpu()
        users = torch.zeros(len(seqs), text.shape[1])
        for u, s in enumerate(seqs):
            if len(s):
                tail = np.asarray(s[-self.max_len:], dtype=np.int64)
                hist[u, self.max_len - len(tail):] = tail
                users[u] = text[torch.tensor(np.asarray(s, dtype=np.int64))].mean(0)  # a copy: histories are read-only
        device = self.semantic.device
        self.sim_users = similar_users(users, self.cfg.distill_users).to(device)
        self.histories = torch.as_tensor(hist, device=device)
        return OwnedWindows(seqs, n_items, self.max_len, length_buckets=length_buckets,
                            on_epoch=self.new_epoch if self.cfg.distill_targets == "epoch" else None)

    def new_epoch(self) -> None:
        """Encode this epoch's distillation targets with the weights the epoch starts from. Called by every rank as
        the epoch's batches start (outside the loss, where a rank with an empty shard of a batch would not join the
        gather): under torchrun each rank encodes its share of the users and the shares are gathered."""
        self._epoch_targets = None
        self._epoch_targets = self.epoch_targets()

    @torch.no_grad()
    def epoch_targets(self) -> torch.Tensor:
        """``(n_users, 2 * hidden)``: each user's mean of its similar users' last states, encoded without dropout
        (eval mode, restored after) once per epoch."""
        if self._epoch_targets is None:
            was = self.training
            self.eval()
            try:
                n = len(self.histories)
                states = ddp.gather_rows(self.last_states(self.histories[ddp.shard_rows(n)]), n)
            finally:
                self.train(was)
            self._epoch_targets = states[self.sim_users].mean(1)
        return self._epoch_targets

    def distill_loss(self, user_states: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        """MSE between the users' states and the mean state of their retrieved similar users (no gradient
        through the latter; dropout as in training, as the authors')."""
        if len(self.sim_users) == 0:
            raise RuntimeError("llm-esr: the self-distillation needs the similar users that training_batches "
                               "retrieves; build the batches with model.training_batches(...) first")
        if self.cfg.distill_targets == "epoch":
            return F.mse_loss(user_states, self.epoch_targets()[owners])
        sim = self.sim_users[owners]  # (B, K)
        with torch.no_grad():
            target = self.last_states(self.histories[sim.reshape(-1)]).view(*sim.shape, -1).mean(1)
        return F.mse_loss(user_states, target)

    def last_states(self, hist: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """``encode(hist)[:, -1]``, computed in chunks of similar length, each cut to its longest history: the
        retrieved users' histories are mostly far shorter than ``max_len`` (padding-invariant, so the same
        states; ~10x cheaper on Amazon data than one batch padded to ``max_len``)."""
        lengths = (hist > 0).sum(1)
        order = torch.argsort(lengths, stable=True)
        out = hist.new_zeros(0, 2 * self.cfg.hidden, dtype=self.item_emb.weight.dtype) if len(hist) == 0 else None
        for s in range(0, len(hist), chunk):
            rows = order[s:s + chunk]
            width = max(int(lengths[rows].max()), 1)
            states = self.encode(hist[rows, -width:])[:, -1]
            out = states.new_empty(len(hist), states.shape[1]) if out is None else out
            out[rows] = states
        return out

    def loss(self, batch: dict) -> torch.Tensor:
        tables = self.view_tables()
        hidden = self.encode(batch["seqs"], tables)
        loss = next_item_loss(hidden, batch["targets"], torch.cat(tables, 1), self.loss_type, self.neg_samples)
        if self.cfg.distill_weight > 0:
            if "owners" not in batch:
                raise RuntimeError("llm-esr: a batch without 'owners' (each window's user) cannot be distilled; "
                                   "build the batches with model.training_batches(...), or set distill_weight=0")
            loss = loss + self.cfg.distill_weight * self.distill_loss(hidden[:, -1], batch["owners"][:, 0])
        return loss
