import numpy as np
import pytest
import torch

from semcollab.data.dataset import EvalSet
from semcollab.methods.complementarity.diagnose import diagnose, knn_overlap, linear_cka, pair_statistics, summarise
from semcollab.methods.complementarity.probes import fit_probe, r2_score


class Fixed(torch.nn.Module):
    max_len = None

    def __init__(self, scores, n_items):
        super().__init__()
        self.s = torch.as_tensor(np.asarray(scores), dtype=torch.float32)
        self.n_items = n_items

    def score(self, users, seqs):
        return self.s[users]


def ranking(order, n_items):
    """Scores that rank ``order`` first (descending) and everything else after."""
    s = np.zeros(n_items + 1, dtype=np.float32)
    for r, item in enumerate(order):
        s[item] = 100 - r
    return s


def test_known_overlap_agreement_and_oracle():
    n = 10
    # user 0: A top2 {1,2}, B top2 {2,3}, target 1 -> only A hits;   Jaccard 1/3
    # user 1: A top2 {4,5}, B top2 {4,5}, target 5 -> both hit;      Jaccard 1
    # user 2: A top2 {1,2}, B top2 {6,7}, target 7 -> only B hits;   Jaccard 0
    # user 3: A top2 {1,2}, B top2 {3,4}, target 9 -> neither;       Jaccard 0
    A = [ranking([1, 2], n), ranking([4, 5], n), ranking([1, 2], n), ranking([1, 2], n)]
    B = [ranking([2, 3], n), ranking([4, 5], n), ranking([6, 7], n), ranking([3, 4], n)]
    ev = EvalSet(np.arange(4), [np.array([8])] * 4, [np.array([1]), np.array([5]), np.array([7]), np.array([9])])
    st = pair_statistics(Fixed(A, n), Fixed(B, n), ev, n, k=2)
    np.testing.assert_allclose(st["jaccard"], [1 / 3, 1, 0, 0], atol=1e-6)
    s = summarise(st, np.ones(4, dtype=bool), weight=0.5)
    assert (s["hr_a"], s["hr_b"]) == (0.5, 0.5)
    assert (s["both_hit"], s["only_a"], s["only_b"], s["neither"]) == (0.25, 0.25, 0.25, 0.25)
    assert s["unique_share_a"] == 0.5 and s["unique_share_b"] == 0.5
    assert s["oracle_hr"] == 0.75
    assert s["fusion_weighted"]["hr"] <= s["oracle_hr"] and s["fusion_rrf"]["hr"] <= s["oracle_hr"]
    # weight 1.0 is model A alone, 0.0 is model B alone
    assert st["hit_w1.0"].tolist() == st["hit_a"].tolist() and st["hit_w0.0"].tolist() == st["hit_b"].tolist()


def test_probes_recover_linear_relation_and_reject_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16))
    w = rng.normal(size=(16, 8))
    y = x @ w
    f = fit_probe("linear", x[:300], y[:300], alpha=1e-3)
    assert r2_score(y[300:], f(x[300:])) > 0.99
    assert linear_cka(f(x[300:]), y[300:]) > 0.99
    assert knn_overlap(y[300:], y[300:], 5) == 1.0
    noise = rng.normal(size=(400, 8))
    g = fit_probe("linear", x[:300], noise[:300])
    assert r2_score(noise[300:], g(x[300:])) < 0.05
    low = fit_probe("lowrank", x[:300], y[:300], alpha=1e-3, rank=2)
    assert 0 < r2_score(y[300:], low(x[300:])) < r2_score(y[300:], f(x[300:]))


def test_diagnose_end_to_end_writes_json_and_png(toy_split, tmp_path):
    from semcollab.config import EvalConfig, TrainConfig
    from semcollab.models import build_model
    from semcollab.models.semantic import SemanticConfig, SemanticMean
    from semcollab.train.trainer import fit

    rng = np.random.default_rng(0)
    sem = SemanticMean(toy_split.n_users, toy_split.n_items, SemanticConfig(),
                       rng.normal(size=(toy_split.n_items + 1, 8)).astype(np.float32))
    sas = build_model("sasrec", {"hidden": 16, "layers": 1}, toy_split)
    fit(sas, toy_split, TrainConfig(epochs=2, progress=False), EvalConfig(ks=[10]), log=None)
    rep = diagnose(sem, sas, toy_split, k=5, names=("semantic", "sasrec"), out_dir=tmp_path)
    assert (tmp_path / "report.json").exists() and (tmp_path / "report.png").stat().st_size > 1000
    g = rep["groups"]["all"]
    assert g["oracle_hr"] >= max(g["hr_a"], g["hr_b"])
    assert pytest.approx(g["both_hit"] + g["only_a"] + g["only_b"] + g["neither"]) == 1.0
    assert set(rep["probes"]["splits"]) == {"in_distribution", "head_to_tail", "old_to_new"}


def test_fusion_models_learn(toy_split):
    from semcollab.data.batches import BatchBuilder
    from semcollab.models.fusion import FusionConfig, SemCollabFusion

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(toy_split.n_items + 1, 12)).astype(np.float32)
    for mode in ("aligned", "complementary"):
        torch.manual_seed(0)
        m = SemCollabFusion(toy_split.n_users, toy_split.n_items, FusionConfig(hidden=16, layers=1, mode=mode), vecs)
        m.set_loss("auto")
        b = BatchBuilder("next_item", toy_split.train_sequences(), toy_split.n_items, m.max_len)
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        losses = []
        for _ in range(30):
            tot = 0.0
            for batch in b.epoch(16, np.random.default_rng(0), "cpu"):
                loss = m.loss(batch)
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += loss.item()
            losses.append(tot)
        assert losses[-1] < 0.7 * losses[0], mode
        assert m.score(torch.tensor([0]), torch.tensor([[1, 2]])).shape == (1, toy_split.n_items + 1)
    assert m.last_gate is not None and m.last_gate.shape == (toy_split.n_items + 1, 16)
