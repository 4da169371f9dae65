"""Ranking and CTR metrics.

Ranking metrics work on a chunk of users at once: a score matrix ``(B, N+1)`` and a boolean target
matrix of the same shape; one ``topk`` per chunk gives every metric at every cut-off. Definitions
(``T`` = a user's held-out items, ``hits_k`` = positions < k whose item is in ``T``):

* HR@K     = 1 if any of the top K is in T
* Recall@K = |top K ∩ T| / |T|
* NDCG@K   = sum over hits of 1/log2(pos+2), divided by the ideal DCG of min(|T|, K) hits
* MRR@K    = 1/(pos+1) of the first hit within K, else 0
"""

from __future__ import annotations

import numpy as np
import torch

RANK_METRICS = ("hr", "recall", "ndcg", "mrr")


def _discounts(k: int, device) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float32))


def metrics_from_hits(hits: torch.Tensor, n_targets: torch.Tensor, ks: list[int]) -> dict[str, torch.Tensor]:
    """Per-user metrics from a ``(B, maxK)`` 0/1 hit matrix (row = ranked list) and target counts."""
    hits = hits.float()
    maxk = hits.shape[1]
    disc = _discounts(maxk, hits.device)
    ideal = torch.cumsum(disc, 0)
    n_t = n_targets.clamp(min=1).to(hits.device)
    first = torch.where(hits.any(1), hits.argmax(1), torch.full_like(n_t, maxk))
    out = {}
    for k in ks:
        h = hits[:, :k]
        nhit = h.sum(1)
        out[f"hr@{k}"] = (nhit > 0).float()
        out[f"recall@{k}"] = nhit / n_t
        idcg = ideal[(torch.minimum(n_t, torch.full_like(n_t, k)) - 1).long()]
        out[f"ndcg@{k}"] = (h * disc[:k]).sum(1) / idcg
        out[f"mrr@{k}"] = torch.where(first < k, 1.0 / (first.float() + 1), torch.zeros_like(nhit))
    return out


def full_ranking_metrics(scores: torch.Tensor, targets: torch.Tensor, ks: list[int],
                         n_targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-user metrics over all items. ``scores`` already has excluded items (padding, history) at -inf.
    ``n_targets`` (each row's count of True in ``targets``), when the caller knows it, saves a pass over ``targets``."""
    maxk = min(max(ks), scores.shape[1])
    top = scores.topk(maxk, dim=1).indices
    hits = targets.gather(1, top)
    if n_targets is None:
        # targets are sparse: counting the nonzeros' rows is ~5x faster than a (B, N+1) boolean sum
        n_targets = torch.bincount(targets.nonzero()[:, 0], minlength=targets.shape[0])
    return metrics_from_hits(hits, n_targets, ks)


def rank_based_metrics(ranks: torch.Tensor, ks: list[int]) -> dict[str, torch.Tensor]:
    """Metrics for a single target per row from its 0-based rank among the candidates."""
    ranks = ranks.float()
    out = {}
    for k in ks:
        inside = ranks < k
        out[f"hr@{k}"] = inside.float()
        out[f"recall@{k}"] = inside.float()
        out[f"ndcg@{k}"] = torch.where(inside, 1.0 / torch.log2(ranks + 2), torch.zeros_like(ranks))
        out[f"mrr@{k}"] = torch.where(inside, 1.0 / (ranks + 1), torch.zeros_like(ranks))
    return out


# ---------------------------------------------------------------------------------------------- CTR
def auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("AUC is undefined when all labels are equal")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def uauc(users, labels, scores) -> tuple[float, int, int]:
    """User-averaged AUC (as in CoLLM): mean AUC over users having both classes.

    Returns ``(uauc, n_users_used, n_users_skipped_single_class)``."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    df = pd.DataFrame({"u": np.asarray(users), "y": np.asarray(labels), "s": np.asarray(scores, dtype=np.float64)})
    vals, skipped = [], 0
    for _, g in df.groupby("u", sort=False):
        if g["y"].nunique() < 2:
            skipped += 1
            continue
        vals.append(roc_auc_score(g["y"].to_numpy(), g["s"].to_numpy()))
    if not vals:
        raise ValueError("UAUC is undefined: no user has both positive and negative labels")
    return float(np.mean(vals)), len(vals), skipped


def log_loss(labels, probs, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    if np.isnan(p).any():
        raise ValueError("log-loss: predicted probabilities contain NaN")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
