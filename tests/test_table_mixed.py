"""`semcollab table runs/*` over ranking runs, CTR runs and a folder that is no run: a dataset column, sorted."""

import json
import re

import pytest

from tests.report_fixture import app, make_runs, runner


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return make_runs(tmp_path_factory.mktemp("table"))


def test_table_over_ranking_ctr_and_junk_folders(runs, tmp_path):
    base = runs["pop"].parent  # runs/: ranking runs, runs/ctr (a folder of CTR runs), and a junk folder
    (base / "junk").mkdir()
    md = tmp_path / "t.md"
    args = sorted(str(p) for p in base.iterdir()) + [str(runs["ctr"])]
    r = runner.invoke(app, ["table", *args, "--out", str(md)])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert said.count("warning: skipped") == 2
    assert f"{base / 'ctr'} is not a finished run folder: metrics.json is missing (it holds 1 run folders" in said
    assert f"{base / 'junk'} is not a finished run folder" in said
    ranking, ctr = md.read_text().strip().split("\n\n")
    assert ranking.splitlines()[0].startswith("| model | dataset | HR@10 |")
    rows = [line.split(" | ")[:2] for line in ranking.splitlines()[2:]]
    assert rows == [["| pop", "atomic:other"], ["| gru4rec", "atomic:toy"],
                    [f"| gru4rec ({runs['gru2'].name})", "atomic:toy"], ["| pop", "atomic:toy"]]
    pop_other = json.loads((runs["other"] / "metrics.json").read_text())["test"]["overall"]
    assert f"| {pop_other['ndcg@10']:.4f} |" in ranking.splitlines()[2]
    auc = json.loads((runs["ctr"] / "metrics.json").read_text())["test"]["all"]["auc"]
    assert re.match(rf"\| mf \[dim=8\] \| collm-ml-1m \| {auc:.4f} \|", ctr.splitlines()[2])


def test_table_with_no_run_is_an_error_naming_each_folder(tmp_path):
    (tmp_path / "a").mkdir()
    r = runner.invoke(app, ["table", str(tmp_path / "a"), str(tmp_path / "nope")])
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "no finished run folder to tabulate" in said
    assert f"{tmp_path / 'a'} is not a finished run folder: metrics.json is missing" in said
    assert f"{tmp_path / 'nope'} is not a folder" in said
