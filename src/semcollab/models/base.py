"""The contracts semcollab models follow: :class:`Recommender` (ranking) and :class:`CTRModel` (click prediction).

A ranking model is a :class:`Recommender` (a :class:`torch.nn.Module`) with:

* ``score(users, seqs) -> (B, n_items + 1)`` — a score for every item index (column 0 is padding and
  is ignored) given user ids ``(B,)`` and their left-padded, time-ordered histories ``(B, L)``. Models
  use whichever of the two they need; diagnostics and serving only call ``score``.
* ``item_scorer(users, seqs) -> fn(start, stop) -> (B, stop - start)`` (optional) — the same scores a range of
  item indices at a time, so full-ranking evaluation over a million-item catalogue never holds a
  ``(B, n_items + 1)`` matrix. The default computes ``score`` once and slices it (right, but not bounded); a model
  whose score is a user vector times an item table overrides it (:func:`dot_scorer`). ``score_items`` is the
  one-range shortcut.
* ``loss(batch) -> scalar`` — the training loss of one batch built by
  :func:`semcollab.data.batches.make_batches` for the model's ``batch_kind``.
* ``batch_kind`` — ``"next_item"``, ``"cloze"``, ``"pairs"`` or ``None`` (nothing to train).
* ``max_len`` — how many recent items ``score`` looks at (``None``: it ignores histories).
* ``padding_invariant`` — ``True`` when a history's scores do not depend on how much left padding it gets
  (padding masked out, right-aligned positions): evaluation may then score users in length-sorted chunks,
  each cut to its longest history, instead of padding most of them to ``max_len``.
  SASRec sets it, so its subclasses inherit it: a subclass that pools over padding must set it back to False.

A CTR model is a :class:`CTRModel`; its methods below say what the CTR task calls and what the defaults do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import at_least, fraction, one_of, positive
from ..data.batches import BatchBuilder


class ServingFactors(NamedTuple):
    """A ranking model's scores as a product: ``encode(users, seqs) (B, D) @ items.T (D, n_items + 1)``, with the
    item columns in ``exclude`` (bool, n_items + 1) never recommended (-inf), e.g. items without text."""

    items: torch.Tensor
    encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    exclude: torch.Tensor | None = None


class Recommender(nn.Module):
    batch_kind: str | None = None
    max_len: int | None = None
    natural_loss: str = "ce"
    supported_losses: tuple[str, ...] = ("ce",)
    padding_invariant: bool = False

    def __init__(self, n_users: int, n_items: int):
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items
        self.loss_type = self.natural_loss
        self.neg_samples = 1

    def set_loss(self, loss: str, neg_samples: int = 1) -> None:
        loss = self.natural_loss if loss == "auto" else loss
        if loss not in self.supported_losses:
            raise ValueError(f"{type(self).__name__} supports loss in {self.supported_losses}, got {loss!r}")
        self.loss_type, self.neg_samples = loss, neg_samples

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, batch: dict) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def item_scorer(self, users: torch.Tensor, seqs: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
        """A function ``(start, stop) -> score(users, seqs)[:, start:stop]``, each call a new tensor the caller may
        write to. The user side is computed once here, each call builds only its items' columns, so a caller that
        walks the catalogue in ranges (:mod:`semcollab.evaluation.streaming`) holds ``B x (stop - start)`` scores.
        This default computes the whole ``score`` once and slices it: right for every model, but not bounded;
        override it where the scores are a product of user and item vectors."""
        scores = self.score(users, seqs)
        return lambda start, stop: scores[:, start:stop].clone()

    def score_items(self, users: torch.Tensor, seqs: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """``score(users, seqs)[:, start:stop]`` (B, stop - start), through :meth:`item_scorer`."""
        return self.item_scorer(users, seqs)(start, stop)

    def serving_factors(self) -> ServingFactors | None:
        """:class:`ServingFactors` with ``encode(users, seqs) @ items.T == score(users, seqs)``, or None (the
        default: no factoring known). The server computes the item side once and answers a request with one encoder
        pass and one matmul; it checks the identity at start-up and falls back to ``score`` if it fails. A model
        whose ``score`` is a user vector times an item table implements it; a subclass that scores its own way must
        check ``type(self).score`` as the models here do, so it never inherits a factoring that is not its own."""
        return None

    def training_batches(self, seqs: list, n_items: int, length_buckets: bool = False) -> BatchBuilder:
        """The builder of this model's training batches (its ``batch_kind``) over ``seqs``, the training histories
        (item indices in ``1..n_items``); the trainer asks once per fit and draws each epoch from it. Override it
        to give the batches model-specific settings, as BERT4Rec does with its mask rate and [MASK] token."""
        return BatchBuilder(self.batch_kind, seqs, n_items, self.max_len, length_buckets=length_buckets)


class CTRModel(nn.Module):
    """Base of every CTR model (``semcollab ctr train``): p(like | user, item, history) = sigmoid(logits).

    Batches come from :meth:`semcollab.data.ctr.CTRPart.batch`: ``users`` (B,), ``items`` (B,), ``history``
    (B, history_len, left-padded), ``labels`` (B,) float and ``row`` (the row numbers). A subclass defines
    :meth:`logits`; everything else has a default that fits an embedding model trained by the shared epoch loop
    (:func:`semcollab.train.ctr.fit_ctr`: Adam, BCE, early stopping on validation AUC, exact resume)."""

    #: True for a model that trains itself (:meth:`fit_ctr`, from its own ``model_params``: the LM models); the
    #: shared loop and its ``train.*`` settings are then not used, and ``train.*`` keys it would ignore are refused
    own_schedule: bool = False

    @classmethod
    def from_split(cls, split, cfg) -> CTRModel:
        """Build the model for a :class:`~semcollab.data.ctr.CTRSplit` from its typed config; the default passes
        the sizes (``cls(n_users, n_items, cfg)``). Override when the model needs the data (titles, rows)."""
        return cls(split.n_users, split.n_items, cfg)

    def logits(self, batch: dict) -> torch.Tensor:  # pragma: no cover - abstract
        """(B,) logits of p(like) for the batch's rows."""
        raise NotImplementedError

    def loss(self, batch: dict) -> torch.Tensor:
        """The training loss of one batch: binary cross-entropy of :meth:`logits` against ``labels``."""
        return F.binary_cross_entropy_with_logits(self.logits(batch), batch["labels"])

    def fit_ctr(self, split, train_cfg, device, log=print):  # pragma: no cover - own_schedule models only
        """Train on ``split`` (only called when :attr:`own_schedule` is True); returns a record of the training
        that ``run.json`` saves (its ``__dict__``)."""
        raise NotImplementedError(f"{type(self).__name__} sets own_schedule=True but does not define fit_ctr")

    def trainable_state_dict(self) -> dict:
        """What a saved run keeps (``model.safetensors``); a model with large frozen parts (an LM) returns only the
        tensors it trained, and rebuilds the rest from its config."""
        return self.state_dict()

    def load_trainable_state_dict(self, state: dict) -> None:
        """Load what :meth:`trainable_state_dict` saved (RuntimeError naming the tensors that do not fit)."""
        self.load_state_dict(state)


@dataclass
class SequenceModelConfig:
    hidden: int = at_least(64, 1)
    layers: int = at_least(2, 1)
    heads: int = at_least(2, 1)
    dropout: float = fraction(0.2)
    attn_dropout: float = fraction(0.2)
    max_len: int = at_least(50, 1)

    def _check(self):
        if self.hidden % self.heads:
            yield "heads", f"must divide model_params.hidden={self.hidden}, got {self.heads}"


@dataclass
class SimilaritySettings:
    """How a sequence state meets an item vector: a ``dot`` product, or ``cosine`` similarity over a
    ``temperature`` (both sides unit vectors; a softmax over cosines in [-1, 1] needs the temperature to be peaked
    at all). Used by the models that set ``_similarity_ok`` (SASRec, AlphaFuse, the hybrid)."""

    similarity: str = one_of("dot", "dot", "cosine")
    temperature: float = positive(0.07)


def query_side(cfg, states: torch.Tensor) -> torch.Tensor:
    """The user side of the similarity ``cfg`` names: ``states`` (dot) or unit states / temperature (cosine)."""
    if getattr(cfg, "similarity", "dot") == "cosine":
        return F.normalize(states, dim=-1) / cfg.temperature
    return states


def item_side(cfg, table: torch.Tensor) -> torch.Tensor:
    """The item side of the similarity ``cfg`` names: ``table`` (dot) or its unit rows (cosine; zero rows stay
    zero)."""
    return F.normalize(table, dim=-1) if getattr(cfg, "similarity", "dot") == "cosine" else table


def dot_scorer(user_vectors: torch.Tensor, table: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
    """The :meth:`Recommender.item_scorer` of a model scoring ``user_vectors @ table.T``: each range multiplies the
    user vectors by its rows of ``table`` only. Equal to slicing the full product up to the BLAS kernel's rounding
    (MKL picks another kernel for a range a few columns wide: a last-bit difference there)."""
    return lambda start, stop: user_vectors @ table[start:stop].T


def draw_negatives(loss: str, targets: torch.Tensor, n_items: int, neg_samples: int) -> torch.Tensor | None:
    """The uniform negatives :func:`next_item_loss` draws for ``loss`` (``None`` for ``ce``, which uses none):
    ``bce`` one row per non-padding target, ``sampled_ce`` one shared row. Drawn ahead of the forward pass
    when a model wants to build only the item rows a batch reads (:func:`batch_item_rows`)."""
    if loss == "bce":
        return torch.randint(1, n_items + 1, (int((targets > 0).sum()), neg_samples), device=targets.device)
    if loss == "sampled_ce":
        return torch.randint(1, n_items + 1, (neg_samples,), device=targets.device)
    return None


def batch_item_rows(n_items: int, *indices: torch.Tensor) -> torch.Tensor:
    """The distinct item indices in ``1..n_items`` that a training batch reads (its histories, targets and
    negatives; padding and extra tokens such as BERT4Rec's [MASK] left out), sorted."""
    rows = torch.unique(torch.cat([i.reshape(-1) for i in indices]))
    return rows[(rows > 0) & (rows <= n_items)]


def table_loss_rows(has_table: bool, loss: str, batch: dict, n_items: int,
                    neg_samples: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(negatives, rows) for a model whose item rows come from an LM item table (``has_table``) and whose
    ``loss`` reads only some of them (sampled negatives): it builds just those rows. ``(None, None)``
    otherwise, so :func:`next_item_loss` draws the negatives itself and an ID model's random stream is
    what it always was."""
    if not has_table or loss == "ce":
        return None, None
    neg = draw_negatives(loss, batch["targets"], n_items, neg_samples)
    return neg, batch_item_rows(n_items, batch["seqs"], batch["targets"], neg)


def next_item_loss(hidden: torch.Tensor, targets: torch.Tensor, item_emb: torch.Tensor, loss: str,
                   neg_samples: int = 1, negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Loss for predicting ``targets`` (0 = ignore) from ``hidden`` states ``(..., D)``.

    Only non-padding positions are scored, which on short-sequence data (Amazon: ~9 items per user)
    cuts the full-softmax cost several-fold. ``ce``: softmax over all items; ``bce``: one positive
    versus ``neg_samples`` uniformly drawn negatives per position (the original SASRec loss);
    ``sampled_ce``: softmax over the target and ``neg_samples`` uniform negatives shared by the batch
    (a negative equal to a position's target is masked out). On large catalogues the full softmax is
    memory-bound on CPU (the ``positions x items`` logits dominate an epoch); the sampled one keeps most
    of its per-epoch quality at a fraction of the cost. ``negatives``: ones drawn beforehand by
    :func:`draw_negatives` (else drawn here, the same way)."""
    keep = targets > 0
    h = hidden[keep]
    t = targets[keep]
    if loss == "ce":
        logits = h @ item_emb.T
        logits[:, 0] = -torch.inf
        return F.cross_entropy(logits.float(), t)
    if loss == "bce":
        neg = draw_negatives(loss, targets, item_emb.shape[0] - 1, neg_samples) if negatives is None else negatives
        pos_logit = (h * item_emb[t]).sum(-1, keepdim=True)
        neg_logit = torch.einsum("pd,pnd->pn", h, item_emb[neg])
        return (F.binary_cross_entropy_with_logits(pos_logit.float(), torch.ones_like(pos_logit.float()))
                + F.binary_cross_entropy_with_logits(neg_logit.float(), torch.zeros_like(neg_logit.float())))
    if loss == "sampled_ce":
        neg = draw_negatives(loss, targets, item_emb.shape[0] - 1, neg_samples) if negatives is None else negatives
        pos_logit = (h * item_emb[t]).sum(-1, keepdim=True)
        neg_logit = (h @ item_emb[neg].T).masked_fill(neg.unsqueeze(0) == t.unsqueeze(1), -torch.inf)
        logits = torch.cat([pos_logit, neg_logit], 1).float()
        return F.cross_entropy(logits, torch.zeros_like(t))
    raise ValueError(f"unknown loss {loss!r}")


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric in-batch InfoNCE between row-aligned ``a`` and ``b`` (cosine similarities / temperature):
    row i of ``a`` should pick row i of ``b`` and vice versa."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
