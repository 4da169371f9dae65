"""The sampled protocol: distinct negatives the user never touched, capped when too few exist, and never a
lower hit rate than full ranking of the same scores."""

import numpy as np
import pytest
import torch

from semcollab.config import DataConfig, EvalConfig
from semcollab.data import load_split
from semcollab.data.dataset import EvalSet
from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.models import build_model

from .test_metrics import Fixed


@pytest.mark.timeout(20)
def test_user_who_saw_every_item_does_not_hang_and_is_reported():
    # 5 items; user 0 has seen 1..4 and the target is 5: no negative exists at all
    ev = EvalSet(np.array([0, 1]), [np.array([1, 2, 3, 4]), np.array([1])], [np.array([5]), np.array([2])])
    scores = [[0, 5, 4, 3, 2, 1], [0, 5, 4, 3, 2, 1]]
    res = evaluate_ranking(Fixed(scores), ev, 5, np.ones(6), EvalConfig(ks=[1], protocol="sampled", n_negatives=100),
                           breakdowns=False)
    cap = res["negatives_capped"]
    assert cap["users"] == 2 and cap["min_negatives"] == 0  # user 1 has 3 eligible items (3, 4, 5), user 0 none
    assert "fewer than 100" in cap["note"]
    # user 0: no negatives -> rank 0 -> hit; user 1: target 2 (score 4) vs negatives 3,4,5 (3,2,1) -> hit
    assert res["overall"]["hr@1"] == 1.0


def test_negatives_are_distinct_and_exclude_history_and_targets():
    # item scores rise with the index; the target (item 1) loses to every negative, so its rank = #negatives
    n_items = 30
    scores = [list(range(n_items + 1))]
    hist = np.array([2, 3, 4])
    ev = EvalSet(np.array([0]), [hist], [np.array([1])])
    for n_neg in (5, 26, 1000):
        res = evaluate_ranking(Fixed(scores), ev, n_items, np.ones(n_items + 1),
                               EvalConfig(ks=[30], protocol="sampled", n_negatives=n_neg), breakdowns=False)
        eligible = n_items - 1 - len(hist)  # not the target, not the history
        expected_rank = min(n_neg, eligible)
        # mrr@30 = 1/(rank+1): rank is exactly the number of distinct eligible negatives drawn
        assert res["overall"]["mrr@30"] == pytest.approx(1 / (expected_rank + 1))


def _full_and_sampled(model, split, n_neg, negatives="uniform", ks=(10,)):
    pop = split.item_popularity()
    ev = split.eval_set("test")
    full = evaluate_ranking(model, ev, split.n_items, pop, EvalConfig(ks=list(ks)), breakdowns=False)
    samp = evaluate_ranking(model, ev, split.n_items, pop, EvalConfig(ks=list(ks), protocol="sampled",
                            n_negatives=n_neg, negatives=negatives), breakdowns=False)
    return full["overall"], samp["overall"], samp


@pytest.mark.parametrize("n_neg", [1000, 100])
def test_sampled_never_below_full_on_a_30_item_catalogue(tmp_path, n_neg):
    from tests.conftest import write_atomic

    d = write_atomic(tmp_path / "small", n_users=40, n_items=30, per_user=8)
    split = load_split(DataConfig(name="atomic:toy", path=str(d), cache=False))
    torch.manual_seed(0)
    model = build_model("sasrec", {"hidden": 8, "layers": 1}, split)  # untrained: arbitrary but fixed scores
    full, samp, res = _full_and_sampled(model, split, n_neg)
    assert samp["hr@10"] >= full["hr@10"]
    assert res["negatives_capped"]["users"] == len(split.eval_set("test"))  # 30 items: every user is capped


@pytest.mark.parametrize("negatives", ["uniform", "popularity"])
def test_sampled_never_below_full_on_real_ml100k(ml100k_dir, negatives):
    split = load_split(DataConfig(name="ml-100k", path=str(ml100k_dir)))
    model = build_model("pop", {}, split)
    full, samp, _ = _full_and_sampled(model, split, 100, negatives, ks=(1, 10, 50))
    for k in ("hr@1", "hr@10", "hr@50", "ndcg@10"):
        assert samp[k] >= full[k] - 1e-9, (k, samp[k], full[k])
    # and with as many negatives as there are items, the sampled protocol is the full ranking
    full_all, samp_all, _ = _full_and_sampled(model, split, split.n_items, "uniform", ks=(10,))
    assert samp_all["hr@10"] == pytest.approx(full_all["hr@10"], abs=0.01)  # ties are broken differently


def test_same_negatives_with_and_without_breakdowns_and_across_chunks(tmp_path):
    from tests.conftest import write_atomic

    d = write_atomic(tmp_path / "small", n_users=40, n_items=60, per_user=8)
    split = load_split(DataConfig(name="atomic:toy", path=str(d), cache=False))
    torch.manual_seed(0)
    model = build_model("sasrec", {"hidden": 8, "layers": 1}, split)
    ev, pop = split.eval_set("test"), split.item_popularity()
    cfg = EvalConfig(ks=[5], protocol="sampled", n_negatives=20, chunk_size=7)
    with_b = evaluate_ranking(model, ev, split.n_items, pop, cfg, breakdowns=True)
    without = evaluate_ranking(model, ev, split.n_items, pop, cfg, breakdowns=False)
    one_chunk = evaluate_ranking(model, ev, split.n_items, pop, EvalConfig(ks=[5], protocol="sampled", n_negatives=20),
                                 breakdowns=False)
    assert with_b["overall"] == without["overall"] == one_chunk["overall"]


def test_a_target_repeating_a_history_item_can_be_hit_when_sampled_and_is_counted():
    """Yelp: 6.7% of test targets repeat a history item. Full ranking with history masking makes them a
    certain miss (S3-Rec's convention, documented); the sampled protocol scores them like any target."""
    n_items = 10
    scores = [[0] + [1.0] * n_items]
    scores[0][3] = 9.0  # the repeated target is the model's top item
    ev = EvalSet(np.array([0]), [np.array([3, 4])], [np.array([3])])
    pop = np.ones(n_items + 1)
    full = evaluate_ranking(Fixed(scores), ev, n_items, pop, EvalConfig(ks=[1]), breakdowns=False)
    samp = evaluate_ranking(Fixed(scores), ev, n_items, pop, EvalConfig(ks=[1], protocol="sampled", n_negatives=5),
                            breakdowns=False)
    assert full["overall"]["hr@1"] == 0.0 and samp["overall"]["hr@1"] == 1.0
    assert full["n_users_target_in_history"] == samp["n_users_target_in_history"] == 1
    unmasked = evaluate_ranking(Fixed(scores), ev, n_items, pop, EvalConfig(ks=[1], mask_history=False),
                                breakdowns=False)
    assert unmasked["overall"]["hr@1"] == 1.0


def test_sampled_ties_count_half_a_place():
    """A model that scores every item alike must not hit every time: with 8 tied negatives the target's
    expected rank is 4 (hand-computed: HR@4 0, HR@5 1, MRR@5 = 1/5)."""
    n_items = 20
    ev = EvalSet(np.array([0]), [np.array([1])], [np.array([2])])
    res = evaluate_ranking(Fixed([[0.0] * (n_items + 1)]), ev, n_items, np.ones(n_items + 1),
                           EvalConfig(ks=[4, 5], protocol="sampled", n_negatives=8), breakdowns=False)
    assert res["overall"]["hr@4"] == 0.0 and res["overall"]["hr@5"] == 1.0
    assert res["overall"]["mrr@5"] == pytest.approx(1 / 5)
