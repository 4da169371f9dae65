"""ReaEmb's objectives as plain tensor maths: stage 1's contrastive loss (:func:`lrcl_loss`) and stage 2's
reward, advantages, clipped policy loss and Gaussian rollouts, plus the co-occurrence candidates stage 2 ranks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


# ------------------------------------------------------------------------------------------ stage-1 loss
def lrcl_loss(emb_a: torch.Tensor, emb_b: torch.Tensor, log_temp: torch.Tensor, soft_targets: bool = True,
              detach_targets: bool = False, normalize: bool = False, temp_min: float = 1e-3,
              temp_max: float = 100.0) -> torch.Tensor:
    """Symmetric in-batch InfoNCE between two views ``(B, d)``: row ``i`` of ``emb_a`` should pick row ``i``
    of ``emb_b`` and vice versa; logits ``A B^T / tau`` with ``tau = exp(log_temp)`` clamped.

    Targets: hard (the identity) or, as in the authors' ``Contrastive_Loss`` (the "simple CLIP" recipe),
    soft: ``softmax((A A^T + B B^T) / (2 tau))`` row-wise, so two different items whose views look alike
    are not pushed apart as hard as unrelated ones. The loss is the mean of the row-wise cross-entropies
    of ``logits`` and ``logits^T`` against the targets (symmetric). The authors use raw dot products of
    the mean-pooled states and let the gradient flow through the targets (``detach_targets=False``)."""
    if emb_a.shape != emb_b.shape or emb_a.dim() != 2:
        raise ValueError(f"views must both be (B, d), got {tuple(emb_a.shape)} and {tuple(emb_b.shape)}")
    with torch.autocast(emb_a.device.type, enabled=False):  # bf16 autocast (CUDA) would round the logits
        a, b = emb_a.float(), emb_b.float()
        if normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        temp = log_temp.float().exp().clamp(temp_min, temp_max)
        logits = a @ b.T / temp
        if soft_targets:
            targets = ((a @ a.T + b @ b.T) / (2 * temp)).softmax(-1)
            if detach_targets:
                targets = targets.detach()
        else:
            targets = torch.eye(len(a), device=a.device)
        loss_a = -(targets * logits.log_softmax(-1)).sum(-1)
        loss_b = -(targets.T * logits.T.log_softmax(-1)).sum(-1)
        return ((loss_a + loss_b) / 2).mean()


# ------------------------------------------------------------------------------------------ stage-2 math
def rank_reward(anchor: torch.Tensor, candidates: torch.Tensor, positive_index: int | torch.Tensor = 0) -> torch.Tensor:
    """``1 / (1 + log2(rank + 2))`` per row, ``rank`` = 0-based rank of the positive among the candidates
    by dot product with the anchor (the authors' ``pos_rank`` is an ``argsort`` index, so 0-based: rank 0
    earns 0.5, rank 9 of 10 about .23). Ties count against the positive (every other candidate scoring
    at least as high ranks above it), so a collapsed embedding cannot earn the top reward.

    ``anchor`` ``(B, d)``, ``candidates`` ``(B, K, d)``, ``positive_index`` an int or ``(B,)``."""
    with torch.autocast(anchor.device.type, enabled=False):  # bf16 would tie near-equal LM embeddings
        scores = torch.einsum("bd,bkd->bk", anchor.float(), candidates.float())
    b, k = scores.shape
    pos = torch.as_tensor(positive_index, device=scores.device).long().expand(b)
    pos_score = scores.gather(1, pos.unsqueeze(1))
    others = torch.ones_like(scores, dtype=torch.bool).scatter(1, pos.unsqueeze(1), False)
    rank = ((scores >= pos_score) & others).sum(1).float()
    return 1.0 / (1.0 + torch.log2(rank + 2.0))


def group_advantage(rewards: torch.Tensor, baseline_rewards: torch.Tensor, l2_normalize: bool = False) -> torch.Tensor:
    """``rewards - mean(baseline_rewards)``: every rollout's reward minus the batch mean of the noise-free
    rollouts' rewards (the authors' trainer). ``l2_normalize``: then divide by the L2 norm of all the
    advantages (+1e-6), as their trainer also does."""
    adv = rewards.float() - baseline_rewards.float().mean()
    if l2_normalize:
        adv = adv / (adv.norm() + 1e-6)
    return adv


def clipped_policy_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, advantage: torch.Tensor,
                        eps_low: float = 0.2, eps_high: float = 0.28) -> torch.Tensor:
    """PPO's clipped surrogate with an asymmetric clip (DAPO's "clip-higher"), negated and averaged:
    ``-mean(min(r A, clip(r, 1 - eps_low, 1 + eps_high) A))``, ``r = exp(logp_new - logp_old)``."""
    ratio = torch.exp(logp_new - logp_old)
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high)
    return -torch.minimum(ratio * advantage, clipped * advantage).mean()


def rollout_sigma(mu: torch.Tensor, sigma: float, units: str = "relative") -> torch.Tensor:
    """The rollouts' noise scale per row ``(B, 1)``: ``sigma``, times each thought vector's RMS when
    ``units`` is ``"relative"`` (see :class:`Stage2Config`); no gradient flows through it."""
    scale = torch.full((len(mu), 1), float(sigma), device=mu.device)
    if units == "relative":
        scale = scale * mu.detach().pow(2).mean(-1, keepdim=True).sqrt()
    return scale


def gaussian_log_prob(sample: torch.Tensor, mean: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Log-density of an isotropic Gaussian rollout ``sample ~ N(mean, sigma^2 I)``, summed over the last
    dimension. The policy is the thought module's output perturbed by noise, so this is the log-prob a
    policy-gradient step needs (gradient through ``mean``). The authors' trainer instead reuses TRL's
    per-token log-probs of the LM's own input tokens under the noisy thought as a surrogate."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=mean.device)  # broadcastable to ``sample``
    z = (sample.float() - mean.float()) / sigma
    log_sigma = torch.broadcast_to(torch.log(sigma), z.shape).sum(-1)
    return -0.5 * z.pow(2).sum(-1) - log_sigma - 0.5 * z.shape[-1] * math.log(2 * math.pi)


@dataclass
class Candidates:
    """Stage-2 candidate lists (item indices 1..n_items): ``candidates[r, 0]`` is the top co-occurring
    item of ``anchors[r]``, the rest random items that never co-occur with it."""

    anchors: np.ndarray  # (m,)
    candidates: np.ndarray  # (m, 1 + n_random)
    no_cooccurrence: int  # items skipped: they share no user sequence with any other item
    fallback_negatives: int  # anchors whose negatives had to include co-occurring items (tiny catalogues)


def co_occurrence_candidates(sequences: Sequence[Sequence[int]], n_items: int, n_random: int = 9,
                             rng: np.random.Generator | int | None = 0) -> Candidates:
    """Per item: its top co-occurring item + ``n_random`` random non-co-occurring items.

    Two items co-occur when they are in the same user's sequence; the count is the number of users that
    have both (the authors count position pairs in the whole interaction file; pass training sequences
    only, e.g. ``split.train_sequences()``, so no held-out event leaks). Ties go to the smaller index.
    Items with no co-occurring item are skipped and counted; when fewer than ``n_random`` items never
    co-occur with an anchor, the negatives are filled with other items (but never the anchor or its
    positive), as the authors do, and counted."""
    from scipy import sparse

    if n_random < 1 or n_items < n_random + 2:
        raise ValueError(f"need n_random >= 1 and n_items >= n_random + 2, got {n_random}, {n_items}")
    rng = np.random.default_rng(rng)
    rows, cols = [], []
    for u, seq in enumerate(sequences):
        items = np.unique(np.asarray(seq, dtype=np.int64))
        items = items[items > 0]
        if items.size and items.max() > n_items:
            raise ValueError(f"sequence {u} holds item {items.max()} > n_items={n_items}")
        rows.append(np.full(items.size, u))
        cols.append(items)
    rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    cols = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    x = sparse.csr_matrix((np.ones(rows.size, dtype=np.int64), (rows, cols)), shape=(len(sequences), n_items + 1))
    co = (x.T @ x).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    anchors, cands, skipped, fallback = [], [], 0, 0
    for i in range(1, n_items + 1):
        nbr = co.indices[co.indptr[i]:co.indptr[i + 1]]
        cnt = co.data[co.indptr[i]:co.indptr[i + 1]]
        if nbr.size == 0:
            skipped += 1
            continue
        best = cnt.max()
        pos = int(nbr[cnt == best].min())
        banned = np.zeros(n_items + 1, dtype=bool)
        banned[0] = banned[i] = True
        banned[nbr] = True
        pool = np.flatnonzero(~banned)
        if pool.size >= n_random:
            neg = rng.choice(pool, n_random, replace=False)
        else:
            fallback += 1
            extra = np.setdiff1d(nbr, [pos])
            neg = np.concatenate([rng.permutation(pool), rng.permutation(extra)])[:n_random]
        anchors.append(i)
        cands.append(np.concatenate([[pos], neg]))
    return Candidates(np.asarray(anchors, dtype=np.int64),
                      np.asarray(cands, dtype=np.int64).reshape(-1, 1 + n_random), skipped, fallback)
