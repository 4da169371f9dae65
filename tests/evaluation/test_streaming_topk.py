"""Full ranking streamed over item chunks (``eval.item_chunk_size``) against the one-chunk path, the tie order,
every ID model's ``item_scorer`` against its ``score``, memory at a million items, and two gloo ranks."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from semcollab.config import ConfigError, EvalConfig, from_dict
from semcollab.data.dataset import EvalSet
from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.evaluation.streaming import DENSE_SCORE_BUDGET, item_chunk_width, merge_topk, streamed_topk
from semcollab.models import build_model
from semcollab.models.sasrec import SASRec
from tests.child_process import child_failure
from tests.evaluation.test_metrics import Fixed as ScoreTable  # a fixed score table: only ``score``
from tests.tolerance import rounding_tol
from tests.train.test_distributed import ENV, ROOT, write_data


def random_case(n_users=40, n_items=60, seed=0, repeats=True):
    """Distinct random scores; histories of 1..12 items, 1..4 targets (some repeating a history item)."""
    rng = np.random.default_rng(seed)
    scores = rng.permutation(n_users * (n_items + 1)).reshape(n_users, n_items + 1).astype(np.float32)
    hists = [rng.choice(np.arange(1, n_items + 1), rng.integers(1, 13), replace=False) for _ in range(n_users)]
    tgts = []
    for h in hists:
        t = rng.choice(np.arange(1, n_items + 1), rng.integers(1, 5), replace=False)
        if repeats and rng.random() < 0.2:
            t[0] = h[0]
        tgts.append(t)
    pop = rng.integers(0, 50, n_items + 1)
    pop[0] = 0
    return ScoreTable(scores), EvalSet(np.arange(n_users), hists, tgts), n_items, pop


@pytest.mark.parametrize("mask_history", [True, False])
@pytest.mark.parametrize("item_chunk_size", [1, 7, 13, 60, 61, 1000])
def test_streaming_equals_one_chunk_without_ties(mask_history, item_chunk_size):
    """Chunks of 1 to the whole catalogue (7 and 13 do not divide 61 columns), multi-target rows, history
    repeats, head/tail and short/long breakdowns: the same result dict, to the bit."""
    model, ev, n_items, pop = random_case()
    base = dict(ks=[1, 5, 10], chunk_size=7, mask_history=mask_history)
    one = evaluate_ranking(model, ev, n_items, pop, EvalConfig(**base))
    streamed = evaluate_ranking(model, ev, n_items, pop, EvalConfig(**base, item_chunk_size=item_chunk_size))
    assert streamed == one
    assert one["n_users_target_in_history"] > 0 and one["head"]["n_users"] > 0 and one["tail"]["n_users"] > 0


def test_streaming_hand_computed():
    """The evaluator test of test_metrics.py, in item chunks of 2: user0 (history 1 masked) ranks 2 first = its
    target; user1 ranks 1 first = its target; user2 (4 and 3 masked) ranks 2, 1: its target 1 is second."""
    scores = [[0, 4, 3, 2, 1], [0, 4, 3, 2, 1], [0, 1, 2, 3, 4]]
    ev = EvalSet(np.array([0, 1, 2]), [np.array([1]), np.array([2]), np.array([4, 3])],
                 [np.array([2]), np.array([1]), np.array([1])])
    pop = np.array([0, 10, 5, 3, 1])
    res = evaluate_ranking(ScoreTable(scores), ev, 4, pop,
                           EvalConfig(ks=[1, 2], chunk_size=2, long_user_min=2, item_chunk_size=2))
    assert res["overall"]["hr@1"] == pytest.approx(2 / 3) and res["overall"]["hr@2"] == 1.0
    assert res["overall"]["mrr@2"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert res["overall"]["ndcg@2"] == pytest.approx((1 + 1 + 1 / math.log2(3)) / 3)
    assert res["head"]["n_users"] == 2 and res["head"]["hr@1"] == pytest.approx(0.5)
    assert res["long_users"]["n_users"] == 1 and res["long_users"]["hr@1"] == 0


def test_ties_keep_the_lower_item_whatever_the_chunks():
    """Every item scored alike: the top-k is the lowest unmasked item indices, for any item chunk size."""
    ev = EvalSet(np.array([0]), [np.array([1])], [np.array([3])])
    for width in (1, 2, 3, 5, 100):
        res = evaluate_ranking(ScoreTable([[1.0] * 6]), ev, 5, np.array([0, 5, 4, 3, 2, 1]),
                               EvalConfig(ks=[1, 2], item_chunk_size=width), breakdowns=False)
        # ranked: 2, 3, 4, 5 (0 = padding and 1 = history are masked) -> target 3 at position 1
        assert res["overall"] == {"hr@1": 0.0, "recall@1": 0.0, "ndcg@1": 0.0, "mrr@1": 0.0, "hr@2": 1.0,
                                  "recall@2": 1.0, "ndcg@2": pytest.approx(1 / math.log2(3)), "mrr@2": 0.5}, width


@pytest.mark.parametrize("width", [1, 3, 4, 9, 50])
def test_streamed_topk_is_the_score_then_index_order(width):
    """With many ties (scores drawn from 4 values, some rows masked to -inf throughout), the streamed top-k is the
    first k of a stable sort by score descending, for every chunk width."""
    rng = np.random.default_rng(1)
    scores = torch.as_tensor(rng.integers(0, 4, (6, 23)), dtype=torch.float32)
    hists = [rng.choice(np.arange(1, 23), n, replace=False) for n in (0, 3, 20, 22, 5, 1)]
    vals, items = streamed_topk(lambda a, b: scores[:, a:b].clone(), 6, 23, 8, width, hists, True, "cpu")
    masked = scores.clone()
    masked[:, 0] = -torch.inf
    for r, h in enumerate(hists):
        masked[r, torch.as_tensor(h, dtype=torch.long)] = -torch.inf
    ref = masked.sort(dim=1, descending=True, stable=True)
    assert torch.equal(items, ref.indices[:, :8]) and torch.equal(vals, ref.values[:, :8])


def test_merge_keeps_running_list_sorted():
    top_v, top_i = torch.tensor([[5.0, 3.0]]), torch.tensor([[4, 1]])
    v, i = merge_topk(top_v, top_i, torch.tensor([[3.0, 6.0, 5.0]]), 10, 3)
    assert v.tolist() == [[6.0, 5.0, 5.0]] and i.tolist() == [[11, 4, 12]]


def test_item_chunk_size_setting():
    assert item_chunk_width(None, 1024, 12_101) is None  # Beauty: one chunk, today's path
    assert item_chunk_width(None, 1024, 1_000_000) == DENSE_SCORE_BUDGET // (4 * 1024)
    assert item_chunk_width(None, 10**7, 1_000_000) == 1024  # never narrower than MIN_AUTO_ITEM_CHUNK
    assert item_chunk_width(7, 1024, 30) == 7
    assert from_dict(EvalConfig, {"item_chunk_size": 5}).item_chunk_size == 5
    for bad in (0, -3, "x"):
        with pytest.raises(ConfigError, match="eval.item_chunk_size"):
            from_dict(EvalConfig, {"item_chunk_size": bad}, prefix="eval.")


class DoubledSASRec(SASRec):
    """A subclass with a score of its own (as fusion and SAERec have): it must get the default item_scorer."""

    def score(self, users, seqs):
        return 2 * super().score(users, seqs) + 1


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec", "mf-bpr", "pop", "doubled"])
def test_score_items_equals_score_slices(name, toy_split):
    torch.manual_seed(0)
    if name == "doubled":
        model = DoubledSASRec(toy_split.n_users, toy_split.n_items)
    else:
        model = build_model(name, {"hidden": 16} if name != "pop" else {}, toy_split)
    model.eval()
    users, seqs = torch.tensor([0, 3, 5]), torch.tensor([[0, 0, 1, 2], [5, 6, 7, 8], [0, 0, 0, 9]])
    with torch.no_grad():
        full = model.score(users, seqs)
        scorer = model.item_scorer(users, seqs)
        n = toy_split.n_items + 1
        for width in (1, 7, 16, n):
            parts = torch.cat([scorer(a, min(a + width, n)) for a in range(0, n, width)], 1)
            # a product of D = 16 terms: MKL may round a narrow or shifted range in another kernel (measured: bit-equal
            # for ranges >= 64 items at 64..1024 users, a last-bit difference for a few columns or a shifted start)
            assert torch.allclose(parts, full, rtol=0, atol=rounding_tol(full, 16)), (name, width)
        assert torch.allclose(model.score_items(users, seqs, 3, n), full[:, 3:], rtol=0, atol=rounding_tol(full, 16))
        assert torch.equal(model.score_items(users, seqs, 0, n), full)  # the whole range is the same product


MEMORY_SCRIPT = '''
import resource, sys, time
import numpy as np, torch
from semcollab.config import EvalConfig
from semcollab.data.dataset import EvalSet
from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.models.mf_bpr import MFBPR, MFConfig

n_users, n_items = 2000, 1_000_000
torch.manual_seed(0)
model = MFBPR(n_users, n_items, MFConfig(hidden=32))
rng = np.random.default_rng(0)
hists = [rng.integers(1, n_items + 1, rng.integers(1, 20)) for _ in range(n_users)]
ev = EvalSet(np.arange(n_users), hists, [rng.integers(1, n_items + 1, 1) for _ in range(n_users)])
pop = np.zeros(n_items + 1, dtype=np.int64)
pop[1:] = rng.integers(0, 100, n_items)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
res = evaluate_ranking(model, ev, n_items, pop, EvalConfig(ks=[10, 20]))
print(before, time.perf_counter() - t, res["n_users"], res["overall"]["hr@20"])
'''


@pytest.mark.slow
def test_million_item_evaluation_stays_bounded(tmp_path):
    """2,000 users over 1,000,000 items (MF-BPR, hidden 32: a 128 MB item table) with the automatic setting:
    1024-user chunks walk 65,536-item chunks (256 MB of scores each). The child's peak resident memory stays under
    1.5 GB (measured: ~760 MB, of which ~430 MB is torch, the model and the data before evaluating); one chunk
    would need a 1024 x 1M float matrix (4 GB) plus its boolean masks."""
    (tmp_path / "mem.py").write_text(MEMORY_SCRIPT)
    proc = subprocess.run([sys.executable, str(tmp_path / "mem.py")], env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, child_failure(proc)
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    before_kb, seconds, n_users, _ = proc.stdout.split()
    print(f"peak {peak_mb:.0f} MB (setup {int(before_kb) / 1024:.0f} MB), {float(seconds):.1f} s for {n_users} users")
    assert peak_mb < 1536


EVAL_SCRIPT = '''
import json, sys
import torch.distributed as dist
from semcollab.config import DataConfig, EvalConfig
from semcollab.data import load_split
from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.models import build_model
from semcollab import distributed as ddp
from semcollab.train.trainer import seed_everything

ddp.setup()
split = load_split(DataConfig(name="atomic:toy", path=sys.argv[1], cache=False))
seed_everything(0)
net = build_model("sasrec", {"hidden": 16, "layers": 1}, split)
pop = split.item_popularity()
streamed = EvalConfig(ks=[5, 10], chunk_size=7, item_chunk_size=8)
split_res = evaluate_ranking(net, split.eval_set("test"), split.n_items, pop, streamed, over_ranks=True)
if ddp.is_main():
    one = evaluate_ranking(net, split.eval_set("test"), split.n_items, pop, streamed)
    dense = evaluate_ranking(net, split.eval_set("test"), split.n_items, pop, EvalConfig(ks=[5, 10], chunk_size=7))
    json.dump({"split": split_res, "one": one, "dense": dense}, open(sys.argv[2], "w"))
dist.destroy_process_group()
'''


def test_streamed_evaluation_split_over_two_ranks(tmp_path):
    """2 gloo ranks, 7-user chunks, 8-item chunks: the gathered result is the one-process streamed one, to the
    bit, and (no exact ties in a random SASRec's scores) the one-chunk one."""
    data = write_data(tmp_path / "toy")
    (tmp_path / "ev.py").write_text(EVAL_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(tmp_path / "ev.py"), str(data), str(tmp_path / "out.json")]
    proc = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, child_failure(proc)
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["split"] == out["one"]
    assert out["one"] == out["dense"]
