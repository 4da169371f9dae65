"""CTR evaluation: probabilities for every row of a part, then AUC / UAUC / log-loss on all, warm and
cold rows. UAUC averages per-user AUC over users who have both labels in that group; the users skipped
for having one class are counted in the result, never silently dropped."""

from __future__ import annotations

import numpy as np
import torch

from ..data.ctr import CTRPart
from .metrics import auc, log_loss, uauc


@torch.no_grad()
def predict(model, part: CTRPart, batch_size: int = 1024, device="cpu") -> np.ndarray:
    """P(label = 1) for every row of ``part``, in row order (LM models score length-sorted batches)."""
    if hasattr(model, "predict"):
        return model.predict(part, device)
    model.eval()
    out = []
    for s in range(0, len(part), batch_size):
        idx = np.arange(s, min(s + batch_size, len(part)))
        out.append(torch.sigmoid(model.logits(part.batch(idx, device)).float()).cpu().numpy())
    probs = np.concatenate(out) if out else np.zeros(0)
    if np.isnan(probs).any():
        raise FloatingPointError("the model produced NaN probabilities")
    return probs


def group_metrics(users: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> dict:
    """AUC, UAUC (+ users used / skipped), log-loss and row counts of one group of rows."""
    res = {"n": int(len(labels)), "positive_rate": float(labels.mean()) if len(labels) else None}
    if len(labels) == 0:
        return res
    res["logloss"] = log_loss(labels, probs)
    res["auc"] = auc(labels, probs) if len(np.unique(labels)) == 2 else None
    try:
        res["uauc"], res["uauc_users"], res["uauc_users_skipped"] = uauc(users, labels, probs)
    except ValueError:  # no user with both labels in this group
        res["uauc"], res["uauc_users"] = None, 0
        res["uauc_users_skipped"] = int(len(np.unique(users)))
    return res


def ctr_report(part: CTRPart, probs: np.ndarray) -> dict:
    """Metrics on all rows and on warm / cold rows (warm = the item was seen in training)."""
    out = {}
    for name, mask in (("all", np.ones(len(part), dtype=bool)), ("warm", part.warm), ("cold", ~part.warm)):
        out[name] = group_metrics(part.users[mask], part.labels[mask], probs[mask])
    return out
