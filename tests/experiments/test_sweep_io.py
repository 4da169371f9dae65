"""experiments/hybrid_s3rec/sweep_io.py: the NDCG@10 row reads each stage and group, and the output file holds every
run that finished when a later run fails."""

import json

import pytest
import torch

from tests.script_loader import load_script

sweep_io = load_script("experiments/hybrid_s3rec/sweep_io.py")


def test_ndcg_row_names_each_stage_and_group():
    metrics = {st: {g: {"ndcg@10": v + i, "hr@10": 1.0} for i, g in enumerate(("overall", "tail", "short_users", "head"))}
               for st, v in (("valid", 0.1), ("test", 0.2))}
    assert sweep_io.ndcg_row(metrics) == pytest.approx(
        {"valid_all": 0.1, "valid_tail": 1.1, "valid_short": 2.1, "test_all": 0.2, "test_tail": 1.2, "test_short": 2.2})
    assert sweep_io.ndcg_row(metrics, (("head", "head"),)) == pytest.approx({"valid_head": 3.1, "test_head": 3.2})


def test_output_keeps_the_runs_that_finished_before_a_failure(tmp_path):
    out = tmp_path / "deep" / "sweep.json"
    out.parent.mkdir()
    out.write_text('[{"run": "from an earlier sweep"}]')  # replaced, not added to

    def one(run):
        if run.name == "bad":
            raise RuntimeError("broken run")
        return {"run": run.name}

    with pytest.raises(RuntimeError, match="broken run"):
        sweep_io.sweep_runs([tmp_path / "a", tmp_path / "b", tmp_path / "bad", tmp_path / "c"], one, out)
    assert json.loads(out.read_text()) == [{"run": "a"}, {"run": "b"}]
    assert [p.name for p in out.parent.iterdir()] == ["sweep.json"]  # no temporary file left beside it
    assert sweep_io.sweep_runs([tmp_path / "c"], one, None) == [{"run": "c"}]


def test_evaluate_stages_scores_each_stage_without_autograd(monkeypatch):
    seen = []

    class Split:
        n_items = 7

        def eval_set(self, stage):
            return f"{stage}-set"

    def fake_evaluate(net, eval_set, n_items, pop, cfg):
        seen.append((eval_set, n_items, torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
        return {"overall": {"ndcg@10": len(seen)}}

    monkeypatch.setattr(sweep_io, "evaluate_ranking", fake_evaluate)
    out = sweep_io.evaluate_stages("net", Split(), "pop", "cfg")
    assert out == {"valid": {"overall": {"ndcg@10": 1}}, "test": {"overall": {"ndcg@10": 2}}}
    assert seen == [("valid-set", 7, True, False), ("test-set", 7, True, False)]
    assert torch.is_grad_enabled()  # left as it was
