"""Ranking-time popularity correction (semcollab.models.pop_correction) for any ranking model: the corrected score by
hand, its item ranges and serving factors against it, ``eval.pop_correction`` in a run's evaluation, and serving."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from semcollab.config import ConfigError
from semcollab.models.pop_correction import PopularityCorrected, corrected
from tests.conftest import write_atomic
from tests.models.test_serving_factors import SEQS, USERS, make


class Fixed(torch.nn.Module):
    n_users, n_items, max_len = 2, 3, None

    def score(self, users, seqs):
        return torch.tensor([[0.0, 1.0, 2.0, 3.0]]).expand(len(users), -1)


def test_corrected_score_by_hand():
    m = PopularityCorrected(Fixed(), np.array([0, 0, 3, 7]), 0.5)
    got = m.score(torch.tensor([0]), torch.zeros(1, 2, dtype=torch.long))
    want = torch.tensor([[0.0, 1.0, 2.0 - 0.5 * np.log(4), 3.0 - 0.5 * np.log(8)]], dtype=torch.float32)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(m.item_scorer(torch.tensor([0]), None)(2, 4), want[:, 2:4])  # the default slicing
    assert corrected(Fixed, [0, 1, 2, 3], 0.0) is Fixed  # beta 0: the model itself
    with pytest.raises(ConfigError, match="pop_correction must be a finite number >= 0"):
        PopularityCorrected(Fixed(), np.array([0, 0, 3, 7]), -0.1)
    with pytest.raises(ConfigError, match="popularity has 3 rows"):
        PopularityCorrected(Fixed(), np.array([0, 3, 7]), 0.1)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "mf-bpr", "semantic", "alphafuse", "hybrid"])
def test_ranges_and_serving_factors_follow_the_corrected_score(name, toy_split, tmp_path):
    torch.manual_seed(0)
    model = make(name, toy_split, tmp_path).eval()
    pop = toy_split.item_popularity()
    wrapped = PopularityCorrected(model, pop, 0.7).eval()
    with torch.inference_mode():
        want = model.score(USERS, SEQS) - 0.7 * torch.log1p(torch.as_tensor(pop, dtype=torch.float32))
        got = wrapped.score(USERS, SEQS)
        finite = torch.isfinite(want)
        assert torch.equal(finite, torch.isfinite(got))
        torch.testing.assert_close(got[finite], want[finite])
        ranged = wrapped.item_scorer(USERS, SEQS)
        torch.testing.assert_close(torch.cat([ranged(0, 5), ranged(5, toy_split.n_items + 1)], 1)[finite],
                                   want[finite], rtol=1e-5, atol=1e-5)
        fac = wrapped.serving_factors()
        assert fac is not None and fac.items.shape[1] == model.serving_factors().items.shape[1] + 1
        served = fac.encode(USERS, SEQS) @ fac.items.T
        if fac.exclude is not None:  # the semantic model's items without text stay excluded
            served = served.masked_fill(fac.exclude, -torch.inf)
        assert torch.equal(torch.isfinite(served), finite)
        torch.testing.assert_close(served[finite], want[finite], rtol=1e-5, atol=1e-5)


def test_eval_pop_correction_in_a_run_and_in_serving(tmp_path):
    from semcollab.evaluation.ranking import evaluate_ranking
    from semcollab.tasks.ranking import load_ranking_run, run_ranking

    data = write_atomic(tmp_path / "toy")
    common = [f"data.path={data}", "train.epochs=2", "train.progress=false", "model_params.hidden=16",
              "model_params.layers=1", "model_params.max_len=8", "train.seed=0"]
    run = run_ranking("sasrec", "atomic:toy", overrides=[*common, f"output_dir={tmp_path / 'a'}",
                                                         "eval.pop_correction=2.0"], log=None).run_dir
    cfg, net, split = load_ranking_run(run)
    assert cfg.eval.pop_correction == 2.0
    pop = split.item_popularity()
    test = split.eval_set("test")
    with torch.inference_mode():
        own = json.loads((run / "metrics.json").read_text())["test"]
        by_wrapper = evaluate_ranking(PopularityCorrected(net, pop, 2.0), test, split.n_items, pop,
                                      dataclasses.replace(cfg.eval, pop_correction=0.0))
        plain = evaluate_ranking(net, test, split.n_items, pop, dataclasses.replace(cfg.eval, pop_correction=0.0))
    assert own["overall"] == by_wrapper["overall"]  # the run evaluated the corrected scores
    assert own["overall"] != plain["overall"]  # and beta 2 moved them on this toy set

    from semcollab.tasks.ranking import load_ranking_view

    view, user = load_ranking_view(run), split.user_vocab.ids[0]
    want = PopularityCorrected(net, pop, 2.0).score(torch.as_tensor([0]), torch.as_tensor(
        np.array(view.seen(user)[-8:], dtype=np.int64))[None])[0]
    torch.testing.assert_close(torch.as_tensor(view.score(user)), want[1:])  # `semcollab recommend` ranks the same

    pytest.importorskip("fastapi")
    from semcollab.serve.ranker import load_serving_run

    served = load_serving_run(run)  # the run's own eval.pop_correction
    unserved = load_serving_run(run, pop_correction=0.0)
    assert served.pop_correction == 2.0 and served.factored and unserved.factored
    users = torch.arange(4)
    seqs = served._pad([served.histories[u] for u in range(4)])
    with torch.inference_mode():
        torch.testing.assert_close(served._scores(users, seqs) - unserved._scores(users, seqs),
                                   (-2.0 * torch.log1p(torch.as_tensor(pop, dtype=torch.float32))).expand(4, -1),
                                   rtol=1e-4, atol=1e-4)


def test_two_different_corrections_are_refused(tmp_path):
    """The hybrid's older key (model_params.pop_correction) is read as eval.pop_correction; two values disagree."""
    from semcollab.tasks.ranking import run_ranking

    with pytest.raises(ConfigError, match="'model_params.pop_correction'.*'eval.pop_correction'.*disagree"):
        run_ranking("hybrid", "atomic:toy", overrides=[f"data.path={write_atomic(tmp_path / 'toy')}",
                                                       "eval.pop_correction=0.2", "model_params.pop_correction=0.3",
                                                       f"output_dir={tmp_path / 'r'}"], log=None)
