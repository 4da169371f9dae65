"""Is alignment enough? Pairwise diagnostics between two recommenders (e.g. semantic vs collaborative).

For each evaluated user both models rank all items (history masked). From the two top-K lists:

* overlap   — mean Jaccard of the two lists;
* agreement — fractions of users hit by both / only A / only B / neither;
* unique-hit contribution — of A's hits, the share B misses (and vice versa);
* oracle    — HR@K and NDCG@K when each user takes the better of the two lists (an upper bound
  on any per-user selection between the two views);
* fusions   — weighted sum of per-user standardised scores (weight chosen on validation users)
  and reciprocal-rank fusion; reported with the share of the best-single-to-oracle gap they close.

Everything is also split by head/tail target items and short/long-history users."""

from __future__ import annotations

import numpy as np
import torch

from ...data.dataset import EvalSet
from ...evaluation.metrics import full_ranking_metrics
from ...evaluation.ranking import _index_mask, head_items, score_users


def _masked_scores(model, users, hists, n_items, device):
    s = score_users(model, users, hists, device)
    s[:, 0] = -torch.inf
    return s.masked_fill(_index_mask(hists, n_items + 1, device), -torch.inf)


def _standardise(s: torch.Tensor) -> torch.Tensor:
    finite = torch.isfinite(s)
    z = torch.where(finite, s, torch.zeros_like(s))
    n = finite.sum(1, keepdim=True).clamp(min=1)
    mu = z.sum(1, keepdim=True) / n
    var = (torch.where(finite, (s - mu) ** 2, torch.zeros_like(s))).sum(1, keepdim=True) / n
    return torch.where(finite, (s - mu) / var.sqrt().clamp(min=1e-9), torch.full_like(s, -torch.inf))


def _rrf(s: torch.Tensor, k: int = 60) -> torch.Tensor:
    ranks = torch.empty_like(s)
    order = s.argsort(dim=1, descending=True)
    ranks.scatter_(1, order, torch.arange(s.shape[1], device=s.device, dtype=s.dtype).expand_as(s).contiguous())
    return torch.where(torch.isfinite(s), 1.0 / (k + ranks + 1), torch.full_like(s, -torch.inf))


FUSION_WEIGHTS = [round(w, 2) for w in np.linspace(0, 1, 11)]


@torch.no_grad()
def pair_statistics(model_a, model_b, ev: EvalSet, n_items: int, k: int = 10, device="cpu", chunk: int = 1024,
                    fusion_weight: float | None = None) -> dict[str, np.ndarray]:
    """Per-user arrays: jaccard, hit_a, hit_b, ndcg_a, ndcg_b, and fused ndcg/hit for every weight and RRF."""
    model_a.eval()
    model_b.eval()
    out: dict[str, list] = {}
    for start in range(0, len(ev), chunk):
        sl = slice(start, start + chunk)
        users, hists, tgts = ev.users[sl], ev.histories[sl], ev.targets[sl]
        sa = _masked_scores(model_a, users, hists, n_items, device)
        sb = _masked_scores(model_b, users, hists, n_items, device)
        tm = _index_mask(tgts, n_items + 1, device)
        ta, tb = sa.topk(k, 1).indices, sb.topk(k, 1).indices
        inter = (ta.unsqueeze(2) == tb.unsqueeze(1)).any(2).sum(1).float()
        out.setdefault("jaccard", []).append((inter / (2 * k - inter)).cpu())
        ma, mb = full_ranking_metrics(sa, tm, [k]), full_ranking_metrics(sb, tm, [k])
        for name, m in (("a", ma), ("b", mb)):
            out.setdefault(f"hit_{name}", []).append(m[f"hr@{k}"].cpu())
            out.setdefault(f"ndcg_{name}", []).append(m[f"ndcg@{k}"].cpu())
        za, zb = _standardise(sa), _standardise(sb)
        masked = ~(torch.isfinite(za) & torch.isfinite(zb))
        za, zb = za.masked_fill(masked, 0.0), zb.masked_fill(masked, 0.0)  # 0 * -inf would be NaN
        weights = FUSION_WEIGHTS if fusion_weight is None else [fusion_weight]
        for w in weights:
            fused = (w * za + (1 - w) * zb).masked_fill(masked, -torch.inf)
            mf = full_ranking_metrics(fused, tm, [k])
            out.setdefault(f"ndcg_w{w}", []).append(mf[f"ndcg@{k}"].cpu())
            out.setdefault(f"hit_w{w}", []).append(mf[f"hr@{k}"].cpu())
        mr = full_ranking_metrics((_rrf(sa) + _rrf(sb)).masked_fill(masked, -torch.inf), tm, [k])
        out.setdefault("ndcg_rrf", []).append(mr[f"ndcg@{k}"].cpu())
        out.setdefault("hit_rrf", []).append(mr[f"hr@{k}"].cpu())
    return {key: torch.cat(v).numpy() for key, v in out.items()}


def summarise(stats: dict[str, np.ndarray], mask: np.ndarray, weight: float) -> dict:
    """Aggregate per-user arrays over ``mask`` into the report's numbers."""
    n = int(mask.sum())
    if n == 0:
        return {"n_users": 0}
    g = {key: v[mask] for key, v in stats.items()}
    ha, hb = g["hit_a"] > 0, g["hit_b"] > 0
    hr_a, hr_b = float(ha.mean()), float(hb.mean())
    nd_a, nd_b = float(g["ndcg_a"].mean()), float(g["ndcg_b"].mean())
    oracle_hr = float((ha | hb).mean())
    oracle_ndcg = float(np.maximum(g["ndcg_a"], g["ndcg_b"]).mean())
    best_ndcg = max(nd_a, nd_b)
    gap = oracle_ndcg - best_ndcg

    def closed(v):
        return (v - best_ndcg) / gap if gap > 1e-12 else None

    fw, frrf = float(g[f"ndcg_w{weight}"].mean()), float(g["ndcg_rrf"].mean())
    return {
        "n_users": n,
        "jaccard": float(g["jaccard"].mean()),
        "hr_a": hr_a, "hr_b": hr_b, "ndcg_a": nd_a, "ndcg_b": nd_b,
        "both_hit": float((ha & hb).mean()), "only_a": float((ha & ~hb).mean()),
        "only_b": float((~ha & hb).mean()), "neither": float((~ha & ~hb).mean()),
        "unique_share_a": float((ha & ~hb).sum() / max(ha.sum(), 1)),
        "unique_share_b": float((hb & ~ha).sum() / max(hb.sum(), 1)),
        "oracle_hr": oracle_hr, "oracle_ndcg": oracle_ndcg,
        "fusion_weighted": {"weight_a": weight, "hr": float(g[f"hit_w{weight}"].mean()), "ndcg": fw,
                            "gap_closed": closed(fw)},
        "fusion_rrf": {"hr": float(g["hit_rrf"].mean()), "ndcg": frrf, "gap_closed": closed(frrf)},
    }


def complementarity_report(model_a, model_b, split, k: int = 10, device="cpu", head_frac: float = 0.2,
                           names: tuple[str, str] = ("A", "B")) -> dict:
    """Full pairwise report on the test users; the fusion weight is chosen on validation users."""
    n_items = split.n_items
    valid_stats = pair_statistics(model_a, model_b, split.eval_set("valid"), n_items, k, device)
    weight = max(FUSION_WEIGHTS, key=lambda w: float(valid_stats[f"ndcg_w{w}"].mean()))
    ev = split.eval_set("test")
    stats = pair_statistics(model_a, model_b, ev, n_items, k, device, fusion_weight=weight)
    pop = split.item_popularity()
    is_head = head_items(pop, head_frac)
    # a user's group is the group of their (first) target; LOO has exactly one
    head_user = np.array([bool(is_head[t[0]]) for t in ev.targets])
    lens = np.array([len(h) for h in ev.histories])
    thr = int(np.median(lens))
    everyone = np.ones(len(ev), dtype=bool)
    groups = {"all": everyone, "head_items": head_user, "tail_items": ~head_user,
              "short_users": lens < thr, "long_users": lens >= thr}
    return {
        "models": {"a": names[0], "b": names[1]}, "k": k, "dataset": split.name, "stage": "test",
        "fusion_weight_selected_on_valid": weight, "head_frac": head_frac, "long_user_min_history": thr,
        "groups": {g: summarise(stats, m, weight) for g, m in groups.items()},
    }
