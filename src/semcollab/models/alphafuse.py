"""AlphaFuse (SIGIR 2025): ID embeddings learned in the null space of the language embeddings.

The frozen item text vectors are centred and their covariance decomposed (SVD); the item representation lives in
the top ``hidden`` (= d_s + d_n) directions of that spectrum, optionally whitened (each coordinate divided by the
square root of its eigenvalue). The first ``hidden - null_dim`` coordinates carry the semantic-rich subspace and
never change; the last ``null_dim`` coordinates (the directions with the smallest kept singular values, where the
language model says least) receive a trainable ID embedding, added to the frozen semantic coordinates there
(``cover=False``, the authors' default) or replacing them (``cover=True``). The representation feeds a SASRec
encoder and is its scoring table; training and scoring use cosine similarity over a temperature, as the authors'
InfoNCE loss does (``similarity=dot`` for plain dot products).

Why it is here: it is a published semantic + collaborative peer for issue 33 that changes only the item table, so
it runs on semcollab's SASRec encoder, batches and full-ranking evaluation unchanged. Item vectors come from the
text encoder settings (:class:`~semcollab.text.TextSettings`, as the fusion model) or from a precomputed LM item
table (``model_params.item_table``: an ``.npy`` of ``(n_items + 1, d)``, as in :mod:`.text_table`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import ConfigError, at_least, fraction, one_of
from ..registry import register
from ..text import EmbedConfig, TextSettings, item_embeddings
from .base import SequenceModelConfig, ServingFactors, SimilaritySettings, item_side, next_item_loss, query_side
from .sasrec import SASRec, SASRecConfig
from .text_table import load_item_table


@dataclass
class SemanticItemSettings(TextSettings):
    """Where a text-using peer gets its frozen item vectors: the text encoder settings, or ``item_table``."""

    item_table: str | None = None  # .npy (n_items + 1, d) or a folder holding item_table.npy; overrides the encoder

    def __post_init__(self):
        # absolute, so a saved run's config finds its table again from any working directory
        if self.item_table:
            self.item_table = str(Path(self.item_table).expanduser().resolve())


def semantic_item_vectors(split, cfg: SemanticItemSettings) -> np.ndarray:
    """``(n_items + 1, d)`` float32 item text vectors (row 0 = padding = zeros) for ``split``: the LM item table
    ``cfg.item_table`` when set (checked against the split's items), else the cached encoder output."""
    if cfg.item_table:
        table = load_item_table(cfg.item_table, split.n_items, list(split.item_vocab.ids)).copy()
        table[0] = 0
        return table
    vecs, _ = item_embeddings(split, EmbedConfig.from_model_config(cfg))
    return vecs.astype(np.float32)


@dataclass
class AlphaFuseConfig(SequenceModelConfig, SemanticItemSettings, SimilaritySettings):
    # the authors' SASRec settings (README, long-tail setting): d_s + d_n = 128, d_n = 64, one block, one head
    hidden: int = at_least(128, 2)  # d_s + d_n: the kept language directions (<= the text vectors' width)
    layers: int = at_least(1, 1)
    heads: int = at_least(1, 1)
    dropout: float = fraction(0.1)
    attn_dropout: float = fraction(0.1)
    null_dim: int = at_least(64, 1)  # d_n: trailing kept directions that carry the trainable ID embedding
    standardize: bool = True  # whiten the kept coordinates (divide by sqrt(eigenvalue)); the authors' default
    cover: bool = False  # True: the ID embedding replaces the semantic null-space coordinates instead of adding
    id_init: str = one_of("zeros", "zeros", "normal")  # authors: zeros (Beauty/Yelp long-tail), normal (Toys)
    similarity: str = one_of("cosine", "dot", "cosine")  # cosine / temperature (the authors' InfoNCE) or dot

    def _check(self):
        yield from super()._check()
        if self.null_dim >= self.hidden:
            yield "null_dim", f"must be < model_params.hidden={self.hidden} (d_s = hidden - null_dim), got " \
                              f"{self.null_dim}"


def encoder_config(cfg: SequenceModelConfig) -> SASRecConfig:
    """The plain SASRec config of ``cfg``'s encoder fields: the peers build their own item tables, so SASRec's
    LM-table adapter (``item_table`` there) must stay off."""
    return SASRecConfig(**{f.name: getattr(cfg, f.name) for f in fields(SequenceModelConfig)})


def null_space_basis(vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, basis, eigenvalues)`` of the rows of ``vectors``: the mean, the top-``dim`` eigenvectors of their
    covariance as orthonormal columns ``(d, dim)`` (float64 SVD, each column's largest loading positive so the
    result is deterministic) and their eigenvalues, largest first."""
    x = vectors.astype(np.float64)
    mean = x.mean(0)
    cov = np.cov(x - mean, rowvar=False) if len(x) > 1 else np.zeros((x.shape[1], x.shape[1]))
    u, s, _ = np.linalg.svd(np.atleast_2d(cov), full_matrices=False)
    u, s = u[:, :dim], s[:dim]
    sign = np.sign(u[np.abs(u).argmax(0), np.arange(u.shape[1])])
    sign[sign == 0] = 1
    return mean, u * sign, s


def spectral_coordinates(item_vectors: np.ndarray, dim: int, standardize: bool, model: str,
                         semantic_dims: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(coords (n_items + 1, dim), basis (d, dim))``: each item's centred text vector in the top-``dim`` directions
    of the items' covariance, each coordinate divided by the square root of its eigenvalue when ``standardize``
    (whitened); rows of items without a text vector (and padding) stay zero. Warns when the item texts span fewer
    than ``semantic_dims`` directions (a small catalogue: fewer items than dimensions), since the frozen semantic part
    then holds empty coordinates the ID part cannot use."""
    known = np.flatnonzero((item_vectors[1:] != 0).any(1)) + 1  # items without a text vector: ID only
    if len(known) == 0:
        raise ConfigError(f"{model}: every item text vector is zero; nothing to decompose")
    mean, basis, eig = null_space_basis(item_vectors[known], dim)
    rank = int((eig > max(eig[0], 0.0) * 1e-8).sum()) if eig[0] > 0 else 0
    if rank < semantic_dims:
        warnings.warn(f"{model}: the {len(known)} item texts span {rank} directions, fewer than the {semantic_dims} "
                      f"frozen semantic dimensions (model_params.hidden - model_params.null_dim): "
                      f"{semantic_dims - rank} of them are empty; lower model_params.hidden or raise null_dim",
                      stacklevel=3)
    scale = 1.0 / np.sqrt(np.maximum(eig, eig[0] * 1e-10 if eig[0] > 0 else 1.0)) if standardize \
        else np.ones_like(eig)
    coords = np.zeros((len(item_vectors), dim))
    coords[known] = (item_vectors[known].astype(np.float64) - mean) @ basis * scale
    return coords, basis


@register("alphafuse", task="ranking", config=AlphaFuseConfig)
class AlphaFuse(SASRec):
    """SASRec over ``[frozen semantic coordinates | semantic null-space coordinates + trainable ID]`` items."""

    _similarity_ok = True

    def __init__(self, n_users: int, n_items: int, cfg: AlphaFuseConfig, item_vectors: np.ndarray):
        super().__init__(n_users, n_items, encoder_config(cfg))
        self.cfg = cfg
        if item_vectors.shape[0] != n_items + 1:
            raise ValueError(f"item_vectors has {item_vectors.shape[0]} rows, expected n_items + 1 = {n_items + 1}")
        width = item_vectors.shape[1]
        if cfg.hidden > width:
            raise ConfigError(f"model_params.hidden={cfg.hidden} exceeds the text vectors' width {width}: AlphaFuse "
                              f"keeps at most that many language directions (set hidden <= {width})")
        coords, basis = spectral_coordinates(item_vectors, cfg.hidden, cfg.standardize, "AlphaFuse",
                                             cfg.hidden - cfg.null_dim)
        self.d_sem = cfg.hidden - cfg.null_dim
        # frozen, saved with the weights: the semantic item coordinates and the language-space basis behind them
        self.register_buffer("semantic", torch.as_tensor(coords, dtype=torch.float32))
        self.register_buffer("language_basis", torch.as_tensor(basis, dtype=torch.float32))
        # the ID embedding of the null-space coordinates (replaces SASRec's unused hidden-width ID table)
        self.item_emb = nn.Embedding(n_items + 1, cfg.null_dim, padding_idx=0)
        if cfg.id_init == "zeros":
            nn.init.zeros_(self.item_emb.weight)
        else:
            nn.init.normal_(self.item_emb.weight, 0.0, 1.0)
            with torch.no_grad():
                self.item_emb.weight[0] = 0

    @classmethod
    def from_split(cls, split, cfg: AlphaFuseConfig) -> AlphaFuse:
        return cls(split.n_users, split.n_items, cfg, semantic_item_vectors(split, cfg))

    def id_part(self) -> torch.Tensor:
        """The trainable part of the item representation ``(n_items + 1, hidden)``: zero outside the null space."""
        ids = self.item_emb.weight
        return torch.cat([ids.new_zeros(ids.shape[0], self.d_sem), ids], 1)

    def item_table(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The item representation ``(n_items + 1, hidden)`` (row 0 zero)."""
        sem = self.semantic
        if self.cfg.cover:
            sem = torch.cat([sem[:, :self.d_sem], sem.new_zeros(sem.shape[0], self.cfg.null_dim)], 1)
        return sem + self.id_part()

    def _encode(self, seqs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        # SASRec's embed multiplies its input by sqrt(hidden); the (whitened) coordinates go in unscaled, as the
        # authors feed them
        return self.forward(seqs, table * self.cfg.hidden ** -0.5)

    def _similarity_inputs(self, hidden: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return query_side(self.cfg, hidden), item_side(self.cfg, table)

    def serving_factors(self) -> ServingFactors:
        table = self.item_table().detach().clone()
        return ServingFactors(item_side(self.cfg, table), lambda u, s: query_side(self.cfg, self._encode(s, table)[:, -1]))

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        table = self.item_table()
        h, t = self._similarity_inputs(self._encode(seqs, table)[:, -1], table)
        return h @ t.T

    def loss(self, batch: dict) -> torch.Tensor:
        table = self.item_table()
        h, t = self._similarity_inputs(self._encode(batch["seqs"], table), table)
        return next_item_loss(h, batch["targets"], t, self.loss_type, self.neg_samples)

