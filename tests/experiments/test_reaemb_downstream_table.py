"""The downstream table script: runs from several folders and an earlier printed table whose runs are gone merge
into one cell per setting, and the Welch test of a merged cell matches a hand computation."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "reaemb_s3rec" / "downstream_table.py"
ARCHIVE = ROOT / "scripts" / "archive_runs.py"


def write_run(root: Path, emb: str, seed: int, ndcg: float, tail: float = 0.001):
    run = root / "Yelp" / "sasrec" / emb / f"seed{seed}" / "20260101-000000"
    run.mkdir(parents=True)
    test = {"overall": {"ndcg@10": ndcg, "hr@10": 2 * ndcg}, "tail": {"ndcg@10": tail},
            "tail_max_train_interactions": 17}
    (run / "metrics.json").write_text(json.dumps({"test": test}))
    (run / "run.json").write_text(json.dumps({"fit": {"epochs_run": 50, "best_epoch": 30, "stopped_by": "patience"}}))
    (run / "sampled-uniform-100.json").write_text(json.dumps({"overall": {"ndcg@10": 0.4, "hr@10": 0.7},
                                                              "tail": {"ndcg@10": 0.2}}))
    return run


EARLIER = """
### Yelp

Tail: test targets among the 80% least popular items in training (at most 17 training interactions).

| model | item embedding | runs | NDCG@10 full | tail NDCG@10 full | HR@10 sampled-100 | NDCG@10 sampled-100 | tail NDCG@10 sampled-100 | NDCG@10 popularity-100 | epochs (best) |
|---|---|---|---|---|---|---|---|---|---|
| sasrec | ID | 3 | 0.0177 ± 0.0003 | 0.0044 ± 0.0007 | 0.7655 ± 0.0022 | 0.4896 ± 0.0011 | 0.3551 ± 0.0017 | 0.3550 ± 0.0007 | 81 (61), 48 (28), 75 (55) |
| sasrec | ReaEmb stage 1 | 1 | 0.0121 | 0.0002 | 0.6691 | 0.4067 | 0.2006 | 0.2348 | 56 (36) |
"""


def write_earlier(tmp_path: Path, text: str = EARLIER) -> Path:
    earlier = tmp_path / "earlier.md"
    earlier.write_text(text)
    return earlier


def table(*args):
    out = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    return out.returncode, out.stdout, out.stderr


def test_earlier_one_run_cell_pools_with_new_seeds_and_tests_against_printed_stats(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "stage1", 2, 0.0131)
    write_run(runs, "stage1", 3, 0.0141)
    earlier = write_earlier(tmp_path)
    rc, out, err = table(runs, "--earlier", earlier)
    assert rc == 0, err
    vals = np.array([0.0121, 0.0131, 0.0141])
    row = next(ln for ln in out.splitlines() if "| ReaEmb stage 1 |" in ln)
    assert f"| 3 | {vals.mean():.4f} ± {vals.std(ddof=1):.4f}† |" in row
    assert row.endswith("| 56 (36)†, 50 (30), 50 (30) |")
    id_row = next(ln for ln in out.splitlines() if "| ID |" in ln)
    assert "| 3 | 0.0177 ± 0.0003† |" in id_row
    p = stats.ttest_ind_from_stats(vals.mean(), vals.std(ddof=1), 3, 0.0177, 0.0003, 3, equal_var=False).pvalue
    assert f"| Yelp | sasrec | stage1 vs id | full | overall | {vals.mean() - 0.0177:+.4f} | {p:.2f} |" in out
    # the earlier cell printed no popularity tail: no test on it rather than one from a part of the runs
    assert "| stage1 vs id | popularity | tail |" not in out


def test_refuses_a_seed_finished_in_two_folders_and_a_seed1_twice(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_run(a, "stage1", 2, 0.01)
    write_run(b, "stage1", 2, 0.02)
    rc, _, err = table(a, b)
    assert rc != 0 and "seed2 is finished in two" in err
    c = tmp_path / "c"
    write_run(c, "stage1", 1, 0.01)
    earlier = write_earlier(tmp_path)
    rc, _, err = table(c, "--earlier", earlier)
    assert rc != 0 and "seed1 is both" in err


def test_refuses_new_runs_beside_an_earlier_several_run_cell_and_unreadable_rows(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "id", 4, 0.018)
    earlier = write_earlier(tmp_path)
    rc, _, err = table(runs, "--earlier", earlier)
    assert rc != 0 and "3-run cell" in err
    write_earlier(tmp_path, EARLIER.replace("0.0121 |", "n/a |"))
    rc, _, err = table(tmp_path / "runs", "--earlier", earlier)
    assert rc != 0 and "earlier.md:9" in err and "n/a" in err


def test_archive_copies_result_files_only_and_never_overwrites(tmp_path):
    src, dst = tmp_path / "runs", tmp_path / "kept"
    run = write_run(src, "plain", 1, 0.015)
    (run / "model.pt").write_bytes(b"weights")
    unfinished = src / "Yelp" / "sasrec" / "plain" / "seed2" / "x"
    unfinished.mkdir(parents=True)
    (unfinished / "run.json").write_text("{}")

    def go():
        return subprocess.run([sys.executable, str(ARCHIVE), str(src), str(dst)], capture_output=True, text=True)

    r = go()
    assert r.returncode == 0 and "3 file(s) copied" in r.stdout
    kept = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert kept == [f"Yelp/sasrec/plain/seed1/{run.name}/{n}"
                    for n in ("metrics.json", "run.json", "sampled-uniform-100.json")]
    assert "0 file(s) copied" in go().stdout
    (run / "metrics.json").write_text("{}")
    r = go()
    assert r.returncode != 0 and "metrics.json" in r.stderr
    assert json.loads((dst / kept[0]).read_text())["test"]["overall"]["ndcg@10"] == pytest.approx(0.015)
