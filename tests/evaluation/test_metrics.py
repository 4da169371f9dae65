import math

import numpy as np
import pytest
import torch

from semcollab.config import EvalConfig
from semcollab.data.dataset import EvalSet
from semcollab.evaluation.ctr import group_metrics
from semcollab.evaluation.metrics import (
    auc,
    full_ranking_metrics,
    log_loss,
    rank_based_metrics,
    uauc,
)
from semcollab.evaluation.ranking import evaluate_ranking, head_items


def test_full_ranking_hand_computed_two_targets():
    # items 0..5 (0 = padding, excluded); ranking by score: 3, 2, 5, 4, 1
    scores = torch.tensor([[-math.inf, 0.1, 0.8, 0.9, 0.3, 0.5]])
    targets = torch.tensor([[False, False, True, False, True, False]])  # T = {2, 4}: ranked at positions 1 and 3
    m = full_ranking_metrics(scores, targets, [1, 2, 4])
    assert m["hr@1"].item() == 0 and m["hr@2"].item() == 1
    assert m["recall@2"].item() == pytest.approx(0.5)
    assert m["recall@4"].item() == pytest.approx(1.0)
    # NDCG@2: one hit at pos 1 -> (1/log2 3) / (1 + 1/log2 3)
    assert m["ndcg@2"].item() == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    # NDCG@4: hits at pos 1 and 3 -> (1/log2 3 + 1/log2 5) / (1 + 1/log2 3)
    assert m["ndcg@4"].item() == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    assert m["mrr@1"].item() == 0 and m["mrr@2"].item() == pytest.approx(0.5)


def test_full_ranking_single_target_matches_rank_formula():
    torch.manual_seed(0)
    scores = torch.randn(50, 30)
    scores[:, 0] = -math.inf
    tgt = torch.randint(1, 30, (50,))
    mask = torch.zeros(50, 30, dtype=torch.bool)
    mask[torch.arange(50), tgt] = True
    ranks = (scores > scores[torch.arange(50), tgt][:, None]).sum(1)
    a = full_ranking_metrics(scores, mask, [5, 10])
    b = rank_based_metrics(ranks, [5, 10])
    for k in a:
        assert torch.allclose(a[k], b[k]), k


def test_ctr_metrics_hand_computed():
    y = [1, 0, 1, 0]
    s = [0.9, 0.8, 0.3, 0.1]
    # pairs (pos, neg): (.9,.8) (.9,.1) (.3,.8) (.3,.1) -> 3 of 4 correct
    assert auc(y, s) == pytest.approx(0.75)
    users = ["a", "a", "b", "b"]
    # user a: (.9 vs .8) -> 1; user b: (.3 vs .1) -> 1
    val, used, skipped = uauc(users, y, s)
    assert (val, used, skipped) == (1.0, 2, 0)
    val, used, skipped = uauc(["a", "a", "b", "c"], y, s)  # b and c have one class each
    assert (used, skipped) == (1, 2)
    expected = -(math.log(0.9) + math.log(0.2) + math.log(0.3) + math.log(0.9)) / 4
    assert log_loss(y, s) == pytest.approx(expected)
    assert group_metrics(np.asarray(users), np.asarray(y), np.asarray(s))["n"] == 4
    with pytest.raises(ValueError):
        auc([1, 1], [0.2, 0.3])


class Fixed(torch.nn.Module):
    max_len = None

    def __init__(self, scores):
        super().__init__()
        self.s = torch.as_tensor(scores, dtype=torch.float32)

    def score(self, users, seqs):
        return self.s[users]


def test_evaluator_masks_history_and_breaks_down():
    # 3 users, items 1..4; item 1 is the most popular (head with head_frac=.25)
    scores = [[0, 4, 3, 2, 1], [0, 4, 3, 2, 1], [0, 1, 2, 3, 4]]
    ev = EvalSet(np.array([0, 1, 2]), [np.array([1]), np.array([2]), np.array([4, 3])],
                 [np.array([2]), np.array([1]), np.array([1])])
    pop = np.array([0, 10, 5, 3, 1])
    assert head_items(pop, 0.25).tolist() == [False, True, False, False, False]
    cfg = EvalConfig(ks=[1, 2], chunk_size=2, long_user_min=2)
    res = evaluate_ranking(Fixed(scores), ev, 4, pop, cfg)
    # user0: history 1 masked -> top1 = 2 = target (hit@1); user1: top1 = 1 = target; user2: 4,3 masked -> 2,1 -> hit@2
    assert res["overall"]["hr@1"] == pytest.approx(2 / 3)
    assert res["overall"]["hr@2"] == pytest.approx(1.0)
    assert res["head"]["n_users"] == 2 and res["tail"]["n_users"] == 1
    assert res["head"]["hr@1"] == pytest.approx(0.5)
    assert res["long_users"]["n_users"] == 1 and res["long_users"]["hr@1"] == 0
    assert res["tail_max_train_interactions"] == 5  # items 2..4 are tail; the most popular of them has 5
    assert res["n_users_target_in_history"] == 0
    nomask = evaluate_ranking(Fixed(scores), ev, 4, pop, EvalConfig(ks=[1], mask_history=False), breakdowns=False)
    assert nomask["overall"]["hr@1"] == pytest.approx(1 / 3)


def test_sampled_protocol_is_named_and_bounded():
    scores = [[0, 1, 2, 3, 4, 5, 6]] * 2
    ev = EvalSet(np.array([0, 1]), [np.array([1]), np.array([2])], [np.array([6]), np.array([1])])
    pop = np.array([0, 1, 1, 1, 1, 1, 1])
    res = evaluate_ranking(Fixed(scores), ev, 6, pop, EvalConfig(ks=[1], protocol="sampled", n_negatives=3), breakdowns=False)
    assert res["protocol"] == "sampled-uniform-3"
    # user0's target has the top score -> hit; user1's target (item 1) is the lowest score -> rank 3 -> miss
    assert res["overall"]["hr@1"] == pytest.approx(0.5)


def test_evaluator_rejects_nan_scores():
    ev = EvalSet(np.array([0]), [np.array([1])], [np.array([2])])
    with pytest.raises(FloatingPointError):
        evaluate_ranking(Fixed([[0, float("nan"), 1]]), ev, 2, np.array([0, 1, 1]), EvalConfig(ks=[1]))


def _dense_reference(scores, ev, n_items, pop, ks, mask_history):
    """The evaluator's one-chunk arithmetic written with dense (users, items) boolean masks, as it was before the
    bookkeeping went sparse: per-user metrics of the "all", "head" and "tail" groups and the repeat count."""
    s = torch.as_tensor(scores, dtype=torch.float32).clone()
    s[:, 0] = -torch.inf
    tmask = torch.zeros(s.shape, dtype=torch.bool)
    hmask = torch.zeros(s.shape, dtype=torch.bool)
    for i, (h, t) in enumerate(zip(ev.histories, ev.targets)):
        hmask[i, torch.as_tensor(h, dtype=torch.long)] = True
        tmask[i, torch.as_tensor(t, dtype=torch.long)] = True
    repeats = int((tmask & hmask).any(1).sum())
    if mask_history:
        s.masked_fill_(hmask, -torch.inf)
    head = torch.from_numpy(head_items(pop, 0.2))
    out = {}
    for g, gm in {"all": None, "head": head, "tail": ~head}.items():
        tm = tmask if gm is None else tmask & gm
        has = tm.any(1)
        out[g] = {k: float(v[has].mean()) for k, v in full_ranking_metrics(s, tm, ks).items()} if has.any() else {}
    return out, repeats


@pytest.mark.parametrize("mask_history", [True, False])
def test_sparse_bookkeeping_equals_dense_masks(mask_history):
    """Targets and histories kept as index pairs give the dense masks' metrics to the bit: duplicate targets and
    history entries in a row, targets repeating a history item, several targets per row, head/tail groups,
    chunks that cut rows."""
    rng = np.random.default_rng(5)
    n_users, n_items = 30, 40
    scores = rng.permutation(n_users * (n_items + 1)).reshape(n_users, n_items + 1).astype(np.float32)
    hists = [rng.integers(1, n_items + 1, rng.integers(1, 9)) for _ in range(n_users)]  # with duplicates
    tgts = [rng.integers(1, n_items + 1, rng.integers(1, 4)) for _ in range(n_users)]
    for i in range(0, n_users, 4):
        tgts[i] = np.array([hists[i][0], hists[i][0], tgts[i][0]])  # a repeat of the history, twice
    hists[1], tgts[1] = np.array([3, 7, 7]), np.array([7, 3])  # two different repeats: one user
    ev = EvalSet(np.arange(n_users), hists, tgts)
    pop = rng.integers(0, 30, n_items + 1)
    pop[0] = 0
    res = evaluate_ranking(Fixed(scores), ev, n_items, pop, EvalConfig(ks=[1, 5, 10], chunk_size=7,
                                                                      mask_history=mask_history))
    want, repeats = _dense_reference(scores, ev, n_items, pop, [1, 5, 10], mask_history)
    assert res["n_users_target_in_history"] == repeats >= 8
    assert res["overall"] == want["all"]
    for g in ("head", "tail"):
        assert {k: v for k, v in res[g].items() if k != "n_users"} == want[g]


def test_evaluator_rejects_a_nan_in_any_cell():
    """One NaN among finite scores, in a history cell that masking would hide: still refused."""
    ev = EvalSet(np.array([0, 1]), [np.array([1]), np.array([2])], [np.array([2]), np.array([3])])
    scores = [[0, 1, 2, 3], [0, 1, float("nan"), 3]]
    with pytest.raises(FloatingPointError, match="NaN"):
        evaluate_ranking(Fixed(scores), ev, 3, np.array([0, 1, 1, 1]), EvalConfig(ks=[1]))


@pytest.mark.parametrize("target", [5, -1])
def test_an_item_index_outside_the_catalogue_is_refused(target):
    """Index pairs must not fold an out-of-range item into the next user's row: it is an error, as it was with dense
    masks."""
    ev = EvalSet(np.array([0, 1]), [np.array([1]), np.array([2])], [np.array([target]), np.array([3])])
    with pytest.raises(IndexError, match="outside the catalogue"):
        evaluate_ranking(Fixed([[0, 1, 2, 3, 4]] * 2), ev, 4, np.array([0, 1, 1, 1, 1]), EvalConfig(ks=[1]))
