"""experiments/hybrid_s3rec/pop_adjust.py: beta 0 reproduces the run's own metrics, the adjusted score is the
model's minus beta * log(1 + count) (by hand), a large beta pushes the top-10 towards the tail, and the two choice
rules read only validation figures."""

import json

import numpy as np
import torch

from tests.conftest import write_atomic
from tests.script_loader import load_script

pop_adjust = load_script("experiments/hybrid_s3rec/pop_adjust.py")


class Fixed(torch.nn.Module):
    n_users, n_items, max_len = 2, 3, None

    def score(self, users, seqs):
        return torch.tensor([[0.0, 1.0, 2.0, 3.0]]).expand(len(users), -1)


def test_adjusted_score_by_hand():
    m = pop_adjust.PopAdjusted(Fixed(), np.array([0, 0, 3, 7]), 0.5)
    got = m.score(torch.tensor([0]), torch.zeros(1, 2, dtype=torch.long))
    want = torch.tensor([[0.0, 1.0, 2.0 - 0.5 * np.log(4), 3.0 - 0.5 * np.log(8)]], dtype=torch.float32)
    torch.testing.assert_close(got, want)


def test_beta_zero_is_the_run_and_a_large_beta_favours_the_tail(tmp_path):
    from semcollab.tasks.ranking import run_ranking

    data = write_atomic(tmp_path / "toy")
    run = run_ranking("sasrec", "atomic:toy", overrides=[
        f"data.path={data}", "train.epochs=3", "train.progress=false", f"output_dir={tmp_path / 'runs'}",
        "model_params.hidden=16", "model_params.layers=1", "model_params.max_len=8"], log=None).run_dir
    res = pop_adjust.sweep(run, [0.0, 50.0], log=lambda s: None)
    own = json.loads((run / "metrics.json").read_text())
    base, big = res["rows"]
    assert base["test_all"] == own["test"]["overall"]["ndcg@10"]
    assert base["valid_tail"] == own["valid"]["tail"]["ndcg@10"]
    assert big["test_head"] <= base["test_head"]  # beta 50 ranks by inverse popularity: head targets sink
    rows = [{"beta": 0.0, "valid_all": 0.10}, {"beta": 0.1, "valid_all": 0.0995}, {"beta": 0.2, "valid_all": 0.098},
            {"beta": 0.3, "valid_all": 0.101}]
    assert pop_adjust.choose(rows, 0.01) == {"by_valid_ndcg": 0.3, "largest_within_0.01": 0.3}
    assert pop_adjust.choose(rows[:3], 0.01) == {"by_valid_ndcg": 0.0, "largest_within_0.01": 0.1}
