"""How a trained SAERec actually uses its intent branches, measured over the evaluation users.

:func:`saerec_branch_stats` reads the state at the LAST position of each evaluated user's history (the
position whose state scores the next item), in eval mode without gradients, batched through
``SAERec._branches``. Per user it takes

* the fusion weights of the personal and public branches (sigmoid gates for ``fusion=gate``, softmax
  weights for ``fusion=attention``; the sequence weight is always 1);
* the norms of ``h_seq``, ``g_per h_per`` and ``g_pub h_pub`` (how far the intents move the state);
* the exact linear split of the fused score of item j, ``h . e_j = h_seq . e_j + g_per h_per . e_j +
  g_pub h_pub . e_j`` (the same split as :meth:`SAERec.explain`), over the user's top-10 items;
* the top-10 lists and HR@10 / NDCG@10 of the fused score and of the ``h_seq``-only score (intent
  branches removed from the *same* trained model: not a separately trained SASRec), with padding and
  (by default) history items at -inf like :func:`~semcollab.evaluation.ranking.evaluate_ranking`;
* the entropy of the personal and public branch attentions over their valid slots;
* which personal intents receive attention, for coverage and concentration.

All results are plain floats / ints (``None`` where a quantity is undefined, e.g. the entropy of a
disabled branch), so the dict is JSON-able."""

from __future__ import annotations

import numpy as np
import torch

K = 10  # cut-off of the top lists and the ranking metrics
EPS = 1e-12


def attention_entropy(attn: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy in nats of each row of ``attn`` (B, P) over its ``valid`` slots (B, P) bool, and the number of
    valid slots per row. Slots with weight 0 add 0 (0 log 0 = 0); invalid slots are ignored."""
    a = attn.float() * valid
    ent = -(torch.where(a > 0, a * torch.log(a.clamp(min=EPS)), torch.zeros_like(a))).sum(-1)
    return ent, valid.sum(-1)


def normalised_entropy(ent: torch.Tensor, n_valid: torch.Tensor) -> torch.Tensor:
    """``ent / log(n_valid)`` for rows with at least two valid slots; NaN elsewhere (undefined)."""
    n = n_valid.float()
    return torch.where(n >= 2, ent / torch.log(n.clamp(min=2)), torch.full_like(ent, float("nan")))


@torch.no_grad()
def last_position_terms(model, seqs: torch.Tensor) -> dict:
    """The branches of ``model`` (an SAERec) at the last position of each row of ``seqs`` (B, L), in eval mode.

    Returns ``weights`` (B, 3) (sequence, personal, public; the sequence one is 1), ``h_seq``, ``personal``
    (= g_per h_per), ``public`` (= g_pub h_pub) and ``fused``, each (B, H); and, for each enabled intent
    branch, ``<branch>_attn`` (B, P) with ``<branch>_valid`` (B, P) bool, plus ``personal_latents`` (B, P).
    ``fused == h_seq + personal + public`` (up to float rounding)."""
    model.eval()
    seqs = seqs[:, -model.max_len:]
    fused, g, parts, extras = model._branches(seqs)
    g_last = g[:, -1]
    out = {"weights": g_last, "h_seq": parts[0][:, -1], "personal": g_last[:, 1:2] * parts[1][:, -1],
           "public": g_last[:, 2:3] * parts[2][:, -1], "fused": fused[:, -1]}
    if "personal" in extras:
        lat, attn, _ = extras["personal"]
        _, wts = model.personal_intents(seqs)  # eval mode: deterministic, no EMA update; wts > 0 = valid slot
        out["personal_attn"], out["personal_valid"], out["personal_latents"] = attn[:, -1], wts[:, -1] > 0, lat[:, -1]
    if "public" in extras:
        _, attn, _ = extras["public"]
        out["public_attn"] = attn[:, -1]
        out["public_valid"] = torch.ones_like(attn[:, -1], dtype=torch.bool)
    return out


def score_terms(model, terms: dict, items: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The ``sequence``, ``personal`` and ``public`` terms of the score, and the model's own ``fused`` score
    (``fused . e_j``, computed from the fused state, so it equals ``model.score``; the three terms sum to it
    up to float rounding).

    ``items``: None for every item index (B, N+1), or (B, k) item indices per user (gives (B, k))."""
    table = model.item_table()
    if items is None:
        return {name: terms[key] @ table.T for name, key in NAMES}
    e = table[items]  # (B, k, H)
    return {name: torch.einsum("bh,bkh->bk", terms[key], e) for name, key in NAMES}


NAMES = (("sequence", "h_seq"), ("personal", "personal"), ("public", "public"), ("fused", "fused"))


def _share(term: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
    """|term| / (|seq| + |term|), 0 where both are 0."""
    den = seq.abs() + term.abs()
    return torch.where(den > 0, term.abs() / den.clamp(min=EPS), torch.zeros_like(den))


def _mean(x) -> float | None:
    x = torch.as_tensor(x, dtype=torch.float64)
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else None


def _std(x) -> float | None:
    x = torch.as_tensor(x, dtype=torch.float64)
    x = x[~torch.isnan(x)]
    return float(x.std(unbiased=False)) if x.numel() else None


@torch.no_grad()
def saerec_branch_stats(model, split, stage: str = "test", max_users: int | None = 2000, batch_size: int = 256,
                        seed: int = 0, mask_history: bool = True) -> dict:
    """Branch usage of ``model`` (a trained :class:`~semcollab.methods.saerec.model.SAERec`) over the evaluation users
    of ``stage`` ("valid" or "test"); at most ``max_users`` of them (a seeded random sample; None: all).

    See the module docstring for what is measured; the keys are listed in ``BRANCH_STAT_KEYS``."""
    from ...evaluation.metrics import full_ranking_metrics
    from ...evaluation.ranking import _index_mask, pad_left
    from .model import SAERec

    if not isinstance(model, SAERec):
        raise TypeError(f"branch statistics need a SAERec model, got {type(model).__name__}")
    if max_users is not None and max_users < 1:
        raise ValueError(f"max_users must be at least 1 (or None for all), got {max_users}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    eval_set = split.eval_set(stage)
    n_total = len(eval_set)
    if n_total == 0:
        raise ValueError(f"the {stage} set is empty: no user has both a history and a held-out item")
    if max_users is not None and n_total > max_users:
        eval_set = eval_set.subset(np.isin(np.arange(n_total),
                                           np.random.default_rng(seed).choice(n_total, max_users, replace=False)))
    cfg = model.cfg
    model.eval()
    device = next(model.parameters()).device
    n_items = model.n_items
    k = min(K, n_items)
    acc: dict[str, list] = {}

    def add(name, value):
        acc.setdefault(name, []).append(value.detach().double().cpu())

    mass = torch.zeros(model.n_latents, dtype=torch.float64)  # personal attention mass per latent
    for start in range(0, len(eval_set), batch_size):
        sl = slice(start, start + batch_size)
        hists, tgts = eval_set.histories[sl], eval_set.targets[sl]
        seqs = pad_left(hists, model.max_len).to(device)
        t = last_position_terms(model, seqs)
        add("w_per", t["weights"][:, 1])
        add("w_pub", t["weights"][:, 2])
        n_seq = t["h_seq"].norm(dim=-1)
        for name, vec in (("per", t["personal"]), ("pub", t["public"]), ("int", t["personal"] + t["public"])):
            n = vec.norm(dim=-1)
            add(f"norm_{name}", n)
            add(f"ratio_{name}", torch.where(n_seq > 0, n / n_seq.clamp(min=EPS), torch.full_like(n, float("nan"))))
        add("norm_seq", n_seq)

        # full scores: fused (the model's own score) and h_seq only, with the evaluator's masking
        full = score_terms(model, t)
        excluded = torch.zeros_like(full["fused"], dtype=torch.bool)
        excluded[:, 0] = True
        if mask_history:
            excluded |= _index_mask(hists, n_items + 1, device)
        fused = full["fused"].masked_fill(excluded, -torch.inf)
        seq_only = full["sequence"].masked_fill(excluded, -torch.inf)
        target_mask = _index_mask(tgts, n_items + 1, device)
        m_f = full_ranking_metrics(fused, target_mask, [k])
        m_s = full_ranking_metrics(seq_only, target_mask, [k])
        add("hr_f", m_f[f"hr@{k}"])
        add("ndcg_f", m_f[f"ndcg@{k}"])
        add("hr_s", m_s[f"hr@{k}"])
        add("ndcg_s", m_s[f"ndcg@{k}"])

        top_f, top_s = fused.topk(k, dim=1).indices, seq_only.topk(k, dim=1).indices
        overlap = (top_f[:, :, None] == top_s[:, None, :]).any(-1).sum(1).double()
        add("overlap", overlap / k)
        add("changed", (overlap < k).double())
        add("order_changed", (top_f != top_s).any(1).double())

        # score share of the intent terms over the fused top-k
        parts = {name: full[name].gather(1, top_f) for name in ("sequence", "personal", "public")}
        add("share_per", _share(parts["personal"], parts["sequence"]).mean(1))
        add("share_pub", _share(parts["public"], parts["sequence"]).mean(1))
        add("share_int", _share(parts["personal"] + parts["public"], parts["sequence"]).mean(1))

        for branch in ("personal", "public"):
            if f"{branch}_attn" not in t:
                continue
            ent, n_valid = attention_entropy(t[f"{branch}_attn"], t[f"{branch}_valid"])
            add(f"ent_{branch}", torch.where(n_valid > 0, ent, torch.full_like(ent, float("nan"))))
            add(f"nent_{branch}", normalised_entropy(ent, n_valid))
            add(f"slots_{branch}", n_valid)
        if "personal_attn" in t:
            a = t["personal_attn"].double() * t["personal_valid"]
            mass.index_add_(0, t["personal_latents"].reshape(-1).cpu(), a.reshape(-1).cpu())

    v = {name: torch.cat(vals) for name, vals in acc.items()}
    use_per, use_pub = cfg.use_personal, cfg.use_public
    candidates = getattr(model, "candidates", None)
    n_candidates = model.n_latents if candidates is None else len(candidates)
    act_idx, act_val = model.act_idx[1:].cpu(), model.act_val[1:].cpu()
    alive = int(torch.unique(act_idx[act_val > 0]).numel())
    covered = int((mass > 0).sum())
    total_mass = float(mass.sum())

    out = {
        "stage": stage, "users": len(eval_set), "users_total": n_total, "k": k, "mask_history": bool(mask_history),
        "retrieval": cfg.retrieval, "public": cfg.public, "fusion": cfg.fusion, "intent_source": cfg.intent_source,
        "use_personal": bool(use_per), "use_public": bool(use_pub),
        "weight_personal_mean": _mean(v["w_per"]), "weight_personal_std": _std(v["w_per"]),
        "weight_public_mean": _mean(v["w_pub"]), "weight_public_std": _std(v["w_pub"]),
        "norm_seq_mean": _mean(v["norm_seq"]), "norm_personal_mean": _mean(v["norm_per"]),
        "norm_public_mean": _mean(v["norm_pub"]), "norm_intent_mean": _mean(v["norm_int"]),
        "ratio_personal_mean": _mean(v["ratio_per"]), "ratio_public_mean": _mean(v["ratio_pub"]),
        "ratio_intent_mean": _mean(v["ratio_int"]),
        "share_personal_top10": _mean(v["share_per"]), "share_public_top10": _mean(v["share_pub"]),
        "share_intent_top10": _mean(v["share_int"]),
        "top10_changed_frac": _mean(v["changed"]), "top10_order_changed_frac": _mean(v["order_changed"]),
        "overlap@10_mean": _mean(v["overlap"]),
        "hr@10_fused": _mean(v["hr_f"]), "ndcg@10_fused": _mean(v["ndcg_f"]),
        "hr@10_seq_only": _mean(v["hr_s"]), "ndcg@10_seq_only": _mean(v["ndcg_s"]),
        "hr@10_delta": _mean(v["hr_f"] - v["hr_s"]), "ndcg@10_delta": _mean(v["ndcg_f"] - v["ndcg_s"]),
        "hits_gained_frac": _mean((v["hr_f"] > v["hr_s"]).double()),
        "hits_lost_frac": _mean((v["hr_f"] < v["hr_s"]).double()),
    }
    for branch in ("personal", "public"):
        on = f"ent_{branch}" in v
        out[f"entropy_{branch}_mean"] = _mean(v[f"ent_{branch}"]) if on else None
        out[f"entropy_{branch}_norm_mean"] = _mean(v[f"nent_{branch}"]) if on else None
        out[f"slots_{branch}_mean"] = _mean(v[f"slots_{branch}"]) if on else 0.0
    out["personal_empty_frac"] = _mean((v["slots_personal"] == 0).double()) if use_per else None
    out.update({
        "coverage_personal": covered, "n_candidates": int(n_candidates),
        "coverage_personal_frac": covered / n_candidates if n_candidates else 0.0,
        "top10_intent_mass_share": float(mass.topk(min(10, len(mass))).values.sum()) / total_mass if total_mass > 0
        else 0.0,
        "alive_latents": alive, "n_latents": int(model.n_latents), "alive_frac": alive / model.n_latents,
    })
    return out


BRANCH_STAT_KEYS = {
    "stage": "evaluation stage the users and targets come from (valid or test)",
    "users": "users measured (a seeded sample of at most max_users)",
    "users_total": "users of the stage's evaluation set",
    "k": "cut-off of top lists and metrics (10, fewer with fewer items)",
    "mask_history": "whether history items were excluded from the rankings (like the evaluator)",
    "retrieval / public / fusion / intent_source / use_personal / use_public": "the run's SAERec settings",
    "weight_{personal,public}_{mean,std}": "fusion weight of the branch at the last position (gate or attention)",
    "norm_seq_mean": "mean ||h_seq||",
    "norm_{personal,public,intent}_mean": "mean ||g_per h_per||, ||g_pub h_pub||, ||g_per h_per + g_pub h_pub||",
    "ratio_{personal,public,intent}_mean": "mean per-user ratio of that norm to ||h_seq||",
    "share_{personal,public,intent}_top10": "mean over the fused top-10 of |term| / (|sequence term| + |term|)",
    "top10_changed_frac": "users whose top-10 set changes when the intent terms are dropped (h_seq-only score)",
    "top10_order_changed_frac": "users whose ordered top-10 list changes",
    "overlap@10_mean": "mean |top10(fused) & top10(h_seq only)| / 10",
    "hr@10_fused / ndcg@10_fused": "metrics of the model's own (fused) score on the sampled users",
    "hr@10_seq_only / ndcg@10_seq_only": "the same with the intent branches removed (h_seq only)",
    "hr@10_delta / ndcg@10_delta": "fused minus h_seq-only",
    "hits_gained_frac / hits_lost_frac": "users hit@10 by the fused score only / by the h_seq-only score only",
    "entropy_{personal,public}_mean": "mean attention entropy (nats) over valid slots (None: branch off)",
    "entropy_{personal,public}_norm_mean": "mean entropy / log(valid slots), users with >= 2 valid slots",
    "slots_{personal,public}_mean": "mean number of valid intent slots at the last position",
    "personal_empty_frac": "users with no personal intent at all at the last position",
    "coverage_personal": "distinct personal intents with attention > 0 at some user's last position",
    "n_candidates": "latents that may be intents (the keep-list, or all)",
    "coverage_personal_frac": "coverage_personal / n_candidates",
    "top10_intent_mass_share": "share of all personal attention mass taken by the 10 most-attended intents",
    "alive_latents / n_latents / alive_frac": "latents firing on at least one item in the SAE activation table",
}


__all__ = ["BRANCH_STAT_KEYS", "attention_entropy", "last_position_terms",
           "normalised_entropy", "saerec_branch_stats", "score_terms"]
