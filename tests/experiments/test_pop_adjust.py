"""experiments/hybrid_s3rec/pop_adjust.py: beta 0 reproduces the run's own metrics, a large beta pushes the top-10
towards the tail, and the two choice rules read only validation figures (the corrected score itself:
tests/models/test_pop_correction.py)."""

import json

import pytest

from tests.conftest import write_atomic
from tests.script_loader import load_script

pop_adjust = load_script("experiments/hybrid_s3rec/pop_adjust.py", neighbours=True)


def tiny_sasrec_run(tmp_path, epochs: int):
    """A SASRec run folder trained on the toy data (what the sweep reads back)."""
    from semcollab.tasks.ranking import run_ranking

    data = write_atomic(tmp_path / "toy")
    return run_ranking("sasrec", "atomic:toy", overrides=[
        f"data.path={data}", f"train.epochs={epochs}", "train.progress=false", f"output_dir={tmp_path / 'runs'}",
        "model_params.hidden=16", "model_params.layers=1", "model_params.max_len=8"], log=None).run_dir


def test_beta_zero_is_the_run_and_a_large_beta_favours_the_tail(tmp_path):
    run = tiny_sasrec_run(tmp_path, epochs=3)
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


def test_main_keeps_the_finished_runs_in_out_when_a_later_run_fails(tmp_path):
    run = tiny_sasrec_run(tmp_path, epochs=1)
    out = tmp_path / "sweep.json"
    with pytest.raises(Exception):  # noqa: B017  (whichever error a folder without a run raises)
        pop_adjust.main([str(run), str(tmp_path / "not-a-run"), "--betas", "0.1", "--out", str(out)])
    (res,) = json.loads(out.read_text())
    assert res["run"] == str(run) and [r["beta"] for r in res["rows"]] == [0.0, 0.1] and "chosen" in res


def test_table_picks_each_runs_beta_and_tests_against_the_reference():
    def run(setting, seed, base, gain):
        rows = [{"beta": b, "valid_all": v, "test_all": base + gain * b, "test_hr@10": 0.1, "test_tail": 0.03 + b,
                 "test_head": 0.1, "test_short": 0.05} for b, v in ((0.0, 0.100), (0.2, 0.0995), (0.5, 0.09))]
        return {"run": f"out/Beauty/{setting}/r{seed}", "seed": seed, "rows": rows}

    results = [run("sasrec", 1, 0.050, 0.0), run("sasrec", 2, 0.052, 0.0), run("hyb", 1, 0.060, 0.01),
               run("hyb", 2, 0.062, 0.01)]
    for r in results:
        r.update(dataset="Beauty", setting=r["run"].split("/")[2])
    lines = list(pop_adjust.table_rows(results, "sasrec", 0.01))
    hyb = [line for line in lines if "| hyb |" in line]
    assert len(lines) == 2 + 6 and len(hyb) == 3
    assert "| as trained | 2 | 0, 0 | 0.0610 ± 0.0014 |" in hyb[0]
    assert "| largest within 1% | 2 | 0.2, 0.2 | 0.0630 ± 0.0014 |" in hyb[2] and "| 0.2300 ± 0.0000 |" in hyb[2]
    p = float(hyb[0].rstrip(" |").rsplit("|", 1)[1])
    assert 0 < p < 0.05  # 0.061 vs 0.051, sd 0.0014 each, two seeds
    assert lines[2].endswith("|  |")  # the reference as trained is not tested against itself
