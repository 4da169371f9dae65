"""Full-ranking (and sampled) evaluation of any :class:`~semcollab.models.base.Recommender`.

Users are scored in chunks so memory stays bounded at ``chunk_size x n_items`` floats, and under full ranking a
large catalogue is also walked in item chunks with a running top-k (``eval.item_chunk_size``;
:mod:`.streaming`), so no ``users x items`` matrix is built; history items are masked (configurable), padding is
always masked. Results carry head/tail item and short/long user breakdowns."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from ..config import EvalConfig, validate
from ..data.dataset import EvalSet
from ..models.pop_correction import corrected
from .metrics import full_ranking_metrics, rank_based_metrics
from .streaming import item_chunk_width, streamed_chunk_metrics


def pad_left(seqs: list[np.ndarray], max_len: int | None) -> torch.Tensor:
    """Left-pad (with item 0) the last ``max_len`` items of each sequence into a LongTensor."""
    L = max(1, max((len(s) for s in seqs), default=1))
    if max_len:
        L = min(L, max_len)
    out = np.zeros((len(seqs), L), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = s[-L:]
        if len(s):
            out[i, L - len(s):] = s
    return torch.from_numpy(out)


def _index_mask(rows: list[np.ndarray], n_cols: int, device) -> torch.Tensor:
    """Boolean (len(rows), n_cols) matrix with True at each row's indices."""
    return _pair_mask(*_pairs(rows, n_cols), (len(rows), n_cols), device)


def _pairs(rows: list[np.ndarray], n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``(row, column)`` pairs of ``rows`` (each row's indices), sorted: what :func:`_index_mask` sets
    True, kept sparse (a chunk's targets and histories are a few entries per row of ``n_cols``)."""
    lens = [len(r) for r in rows]
    if not sum(lens):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cols = np.concatenate(rows).astype(np.int64)
    if cols.min() < 0 or cols.max() >= n_cols:  # a key would otherwise fold into the next row's columns
        raise IndexError(f"item index {int(cols.min() if cols.min() < 0 else cols.max())} is outside the "
                         f"catalogue's columns 0..{n_cols - 1}")
    keys = np.unique(np.repeat(np.arange(len(rows), dtype=np.int64), lens) * n_cols + cols)
    return keys // n_cols, keys % n_cols


def _pair_mask(r: np.ndarray, c: np.ndarray, shape: tuple[int, int], device) -> torch.Tensor:
    mask = torch.zeros(shape, dtype=torch.bool, device=device)
    mask[torch.from_numpy(r).to(device), torch.from_numpy(c).to(device)] = True
    return mask


def head_items(popularity: np.ndarray, head_frac: float) -> np.ndarray:
    """Boolean over item indices: the top ``head_frac`` of real items by training popularity."""
    n_items = len(popularity) - 1
    n_head = max(1, int(round(n_items * head_frac)))
    order = np.argsort(-popularity[1:], kind="stable") + 1
    is_head = np.zeros(len(popularity), dtype=bool)
    is_head[order[:n_head]] = True
    return is_head


@torch.no_grad()
def score_users(model, users: np.ndarray, histories: list[np.ndarray], device) -> torch.Tensor:
    seqs = pad_left(histories, getattr(model, "max_len", None)).to(device)
    return model.score(torch.as_tensor(users, device=device), seqs).float()


@torch.no_grad()
def evaluate_ranking(model, eval_set: EvalSet, n_items: int, popularity: np.ndarray, cfg: EvalConfig,
                     device: str | torch.device = "cpu", breakdowns: bool = True, seed: int = 0,
                     over_ranks: bool = False) -> dict:
    """Evaluate ``model`` on ``eval_set``; returns overall metrics and (optionally) breakdowns.

    ``over_ranks`` (every rank of a ``torch.distributed`` group calls it, with the same weights): under full
    ranking rank r scores the chunks r, r + N, ...; the per-user values are gathered and every rank returns the
    result one process computes, to the bit (the same chunks, put back in the same order).

    Full ranking streams over item chunks when ``cfg.item_chunk_size`` is set, or is ``None`` and one chunk of
    scores would pass :data:`~.streaming.DENSE_SCORE_BUDGET` (:func:`~.streaming.item_chunk_width`): the metrics
    are those of one chunk except where scores tie exactly (the tie order: :mod:`.streaming`)."""
    validate(cfg, "eval.")  # configs built in Python skip from_dict's checks
    model = corrected(model, popularity, cfg.pop_correction)
    if len(eval_set) == 0:
        raise ValueError("evaluation set is empty: no user has both a history and a held-out item")
    model.eval()
    ks = sorted(cfg.ks)
    head = head_items(popularity, cfg.head_frac)
    item_groups = {"all": None, "head": head, "tail": ~head} if breakdowns else {"all": None}  # numpy: index pairs
    groups = {g: None if m is None else torch.from_numpy(m).to(device) for g, m in item_groups.items()}  # streaming
    per_user: dict[str, dict[str, list]] = {g: {} for g in groups}
    present: dict[str, list] = {g: [] for g in groups}
    capped: list[int] = []  # users with fewer eligible negatives than asked for: their negative counts
    repeats = 0  # users whose held-out target is also in their history (re-purchases, re-visits)
    if cfg.protocol == "sampled":
        probs = None
        if cfg.negatives == "popularity":
            p = popularity.astype(np.float64).copy()
            p[0] = 0
            probs = p / p.sum()
        elif cfg.negatives != "uniform":
            raise ValueError(f"eval.negatives must be uniform or popularity, got {cfg.negatives!r}")
    elif cfg.protocol != "full":
        raise ValueError(f"eval.protocol must be full or sampled, got {cfg.protocol!r}")

    # a padding-invariant model scores users in order of history length, so each chunk is cut to its own
    # longest history rather than nearly always padded to max_len (Beauty: mean history ~8 of 50); the
    # per-user results are put back in eval_set order below
    lens = np.array([len(h) for h in eval_set.histories])  # also the short/long user split below
    order = np.argsort(lens, kind="stable") if getattr(model, "padding_invariant", False) else np.arange(len(eval_set))
    rank, size = _ranks() if over_ranks and cfg.protocol == "full" else (0, 1)
    mine = list(range(0, len(eval_set), cfg.chunk_size))[rank::size]
    width = item_chunk_width(cfg.item_chunk_size, cfg.chunk_size, n_items) if cfg.protocol == "full" else None
    for start in mine:
        idx = order[start:start + cfg.chunk_size]
        users = eval_set.users[idx]
        hists = [eval_set.histories[i] for i in idx]
        tgts = [eval_set.targets[i] for i in idx]
        if width is not None:
            seqs = pad_left(hists, getattr(model, "max_len", None)).to(device)
            has, metrics, rep = streamed_chunk_metrics(model, users, seqs, hists, tgts, n_items, ks, width,
                                                       cfg.mask_history, groups, device)
            repeats += rep
            for g in groups:
                present[g].append(has[g].cpu())
                for k, v in metrics[g].items():
                    per_user[g].setdefault(k, []).append(v.cpu())
            continue
        scores = score_users(model, users, hists, device)
        if scores.shape != (len(users), n_items + 1):
            raise ValueError(f"model.score returned shape {tuple(scores.shape)}, expected {(len(users), n_items + 1)}")
        if torch.isnan(scores.amax(1)).any():  # amax propagates NaN: one reduction, no (B, N) boolean matrix
            raise FloatingPointError("model produced NaN scores")
        scores[:, 0] = -torch.inf
        # targets and histories are a few items per user: their bookkeeping stays sparse (index pairs) instead of
        # passes over (B, N) boolean matrices, which cost as much as the scoring matmul on an 18k-item catalogue
        t_rows, t_cols = _pairs(tgts, n_items + 1)
        h_rows, h_cols = _pairs(hists, n_items + 1)
        target_mask = _pair_mask(t_rows, t_cols, scores.shape, device)  # = _index_mask(tgts, ...), pairs kept
        in_hist = np.isin(t_rows * (n_items + 1) + t_cols, h_rows * (n_items + 1) + h_cols)
        repeats += len(np.unique(t_rows[in_hist]))
        # the sampled protocol never masks: its negatives already exclude the history, and a target that
        # repeats a history item is scored like any other (as in the 100-negative papers' code)
        if cfg.mask_history and cfg.protocol == "full" and len(h_rows):
            scores[torch.from_numpy(h_rows).to(device), torch.from_numpy(h_cols).to(device)] = -torch.inf
        for g, items in item_groups.items():
            keep = slice(None) if items is None else items[t_cols]
            tm = target_mask if items is None else _pair_mask(t_rows[keep], t_cols[keep], scores.shape, device)
            n_targets = torch.bincount(torch.from_numpy(t_rows[keep]), minlength=len(users)).to(device)
            has = n_targets > 0
            present[g].append(has.cpu())
            if cfg.protocol == "full":
                m = full_ranking_metrics(scores, tm, ks, n_targets)
            else:
                m = _sampled(scores, tm, target_mask, users, hists, n_items, cfg, seed, probs, ks,
                             capped if g == "all" else [])
            for k, v in m.items():
                per_user[g].setdefault(k, []).append(v.cpu())

    if size > 1:
        present, per_user, repeats = _gather_chunks(mine, present, per_user, repeats, size)
    result = {"protocol": "full" if cfg.protocol == "full" else f"sampled-{cfg.negatives}-{cfg.n_negatives}",
              "n_users": len(eval_set), "n_users_skipped_no_history": int(eval_set.n_skipped_no_history),
              # under full ranking with eval.mask_history these targets are masked, so always a miss
              "n_users_target_in_history": repeats}
    back = torch.from_numpy(np.argsort(order, kind="stable"))  # sorted position of each eval_set user
    masks = {g: torch.cat(present[g])[back] for g in groups}
    vals = {g: {k: torch.cat(v)[back] for k, v in per_user[g].items()} for g in groups}
    result["overall"] = {k: float(v[masks["all"]].mean()) for k, v in vals["all"].items()}
    if cfg.protocol == "sampled":
        result["negatives_capped"] = {
            "users": len(capped), "min_negatives": int(min(capped)) if capped else cfg.n_negatives,
            "note": (f"{len(capped)} user(s) had fewer than {cfg.n_negatives} items they never interacted with"
                     f"{' and that were seen in training' if cfg.negatives == 'popularity' else ''}; "
                     "all of those were used as their negatives") if capped else "none",
        }
    if breakdowns:
        for g in ("head", "tail"):
            n = int(masks[g].sum())
            result[g] = {k: float(v[masks[g]].mean()) for k, v in vals[g].items()} if n else {}
            result[g]["n_users"] = n
        thr = cfg.long_user_min if cfg.long_user_min is not None else int(np.median(lens))
        long_mask = torch.from_numpy(lens >= thr)
        for name, um in (("short_users", ~long_mask), ("long_users", long_mask)):
            n = int(um.sum())
            result[name] = {k: float(v[um].mean()) for k, v in vals["all"].items()} if n else {}
            result[name]["n_users"] = n
        result["long_user_min_history"] = thr
        result["head_frac"] = cfg.head_frac
        # the popularity threshold the head_frac cut implies (papers state tails as "fewer than N interactions")
        tail_pop = popularity[1:][~head[1:]]
        result["tail_max_train_interactions"] = int(tail_pop.max()) if len(tail_pop) else None
    return result


def _ranks() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_chunks(mine: list[int], present: dict, per_user: dict, repeats: int, size: int):
    """Every rank's per-chunk results (``mine``: the chunks' first rows), on every rank, in chunk order."""
    parts = [None] * size
    dist.all_gather_object(parts, (mine, present, per_user, repeats))
    where = sorted((start, r, i) for r, part in enumerate(parts) for i, start in enumerate(part[0]))
    present = {g: [parts[r][1][g][i] for _, r, i in where] for g in present}
    per_user = {g: {k: [parts[r][2][g][k][i] for _, r, i in where] for k in parts[0][2][g]} for g in per_user}
    return present, per_user, sum(part[3] for part in parts)


def _sampled(scores, target_mask, all_targets, users, hists, n_items, cfg, seed, probs, ks, capped: list):
    """Rank each user's target (the lowest item index among the group's targets; leave-one-out has one) among
    ``n_negatives`` negatives drawn WITHOUT replacement from the items the user has not interacted with
    (history and every held-out target excluded, whatever the group).

    Each user's negatives come from a generator seeded by (seed, user), so they are the same in every
    group (all / head / tail) and whether or not breakdowns are computed.

    Drawing with replacement once counted one strong negative several times, so a 30-item catalogue gave
    a sampled HR below the full-ranking one; with distinct negatives the candidate set is a subset of the
    full ranking's and the sampled rank can never be worse. When fewer eligible items exist than asked
    for (a user who has seen almost everything; popularity sampling can draw only items seen in
    training), all of them are used and the user is counted in ``capped``.

    ``scores`` are not history-masked here (the negatives exclude the history anyway), so a target that
    repeats a history item can still be hit; a negative tied with the target counts half a place, so a
    model that scores everything alike ranks the target in the middle, not first."""
    B = scores.shape[0]
    ranks = torch.full((B,), float(n_items), device=scores.device)
    has = target_mask.any(1)
    tgt = target_mask.float().argmax(1)
    targets_cpu = all_targets.cpu().numpy()
    for i in range(B):
        if not has[i]:
            continue
        rng = np.random.default_rng([seed, int(users[i])])
        eligible = ~targets_cpu[i]
        eligible[0] = False
        eligible[hists[i]] = False
        if probs is not None:
            eligible &= probs > 0
        cand = np.flatnonzero(eligible)
        n = cfg.n_negatives
        if len(cand) <= n:
            negs = cand
            capped.append(len(cand))
        else:
            p = None
            if probs is not None:
                p = probs[cand] / probs[cand].sum()
            negs = rng.choice(cand, size=n, replace=False, p=p)
        s_t = scores[i, tgt[i]]
        s_n = scores[i, torch.as_tensor(negs, device=scores.device, dtype=torch.long)]
        ranks[i] = (s_n > s_t).sum() + 0.5 * (s_n == s_t).sum()  # ties: the expected rank of a random order
    return rank_based_metrics(ranks, ks)
