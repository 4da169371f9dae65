"""experiments/seed_table.py, the one seed / Welch tool: mean ± std over seeds on a tiny fixture of run folders,
Welch's p against a hand computation, and the --welch table; experiments/study_config.py, which the study
scripts read their grids with."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import special

from tests.script_loader import REPO, load_script

ROOT = REPO
TOOL = ROOT / "experiments" / "seed_table.py"
STUDY_CONFIG = ROOT / "experiments" / "study_config.py"


def load(path: Path):
    return load_script(str(path.relative_to(REPO)))


seed_table = load(TOOL)


def write_run(group: Path, seed: int, ndcg: float, params: str = "{}", valid: float | None = None,
              hardware: str = "CPU (x86_64, 1 threads)") -> None:
    """One run folder; ``valid``: its validation NDCG@10 too (metrics.json then holds both splits)."""
    run = group / f"20260101-00000{seed}-sasrec"
    run.mkdir(parents=True)

    def split(v):
        part = {"ndcg@10": v, "hr@10": 2 * v}
        return {"overall": part, "head": part, "tail": part, "short_users": {"ndcg@10": v / 2}}

    metrics = {"test": split(ndcg)} | ({"valid": split(valid)} if valid is not None else {})
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "run.json").write_text(json.dumps({"hardware": hardware, "fit": {"epochs_run": 10 + seed, "best_epoch": seed,
                                                                            "seconds_per_epoch": 4.0 + seed}}))
    (run / "config.yaml").write_text(f"model: sasrec\nmodel_params: {params}\ntrain:\n  seed: {seed}\n")


def tool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_welch_p_matches_a_hand_computation():
    a, b = [1.0, 2.0, 3.0], [4.0, 6.0, 8.0, 10.0]
    # by hand: means 2 and 7, variances 1 and 20/3; se² = 1/3 + 5/3 = 2, t = -5/√2;
    # Welch–Satterthwaite df = 2² / ((1/3)²/2 + (5/3)²/3) = 4 / (1/18 + 25/27) = 216/53
    t, df = -5 / math.sqrt(2), 216 / 53
    p = special.betainc(df / 2, 0.5, df / (df + t * t))  # two-sided p of Student's t with df degrees of freedom
    got_t, got_p = seed_table.welch(seed_table.summary(a), seed_table.summary(b))
    assert got_t == pytest.approx(t, rel=1e-12)
    assert got_p == pytest.approx(p, rel=1e-9)
    assert 0.02 < got_p < 0.05  # the sanity anchor: t = -3.54 on ~4 df


def test_mean_sd_uses_the_sample_std_and_prints_one_value_alone():
    assert seed_table.mean_sd([0.1, 0.2, 0.3]) == "0.2000 ± 0.1000"
    assert seed_table.mean_sd([0.12345]) == "0.1235"
    assert seed_table.summary([0.5])[0] == 0.5 and math.isnan(seed_table.summary([0.5])[1])


def test_table_gives_mean_sd_per_setting_from_run_folders(tmp_path):
    for seed, v in ((1, 0.10), (2, 0.20), (3, 0.30)):
        write_run(tmp_path / "sasrec", seed, v)
    write_run(tmp_path / "ablation", 1, 0.05, "{use_personal: false}")
    r = tool(tmp_path / "sasrec", tmp_path / "ablation")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("| setting | runs | HR@10 | NDCG@10 |")
    assert lines[2] == ("| sasrec | 3 | 0.4000 ± 0.2000 | 0.2000 ± 0.1000 | 0.2000 ± 0.1000 | 0.2000 ± 0.1000 | "
                        "11 (1), 12 (2), 13 (3) |")
    assert lines[3] == "| sasrec [use_personal=False] | 1 | 0.1000 | 0.0500 | 0.0500 | 0.0500 | 11 (1) |"


def test_folder_names_and_the_wider_table(tmp_path):
    for seed, v in ((1, 0.10), (2, 0.20)):
        write_run(tmp_path / "sasrec-cos", seed, v, "{similarity: cosine}")
    r = tool("--folder-names", "--more", tmp_path / "sasrec-cos")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith("| short-history NDCG@10 | s / epoch | epochs (best) |")
    # short users: ndcg / 2 -> 0.05, 0.10; seconds 5 and 6 -> 5.5 ± 0.7 (sample std 0.707)
    assert lines[2] == ("| sasrec-cos | 2 | 0.3000 ± 0.1414 | 0.1500 ± 0.0707 | 0.1500 ± 0.0707 | 0.1500 ± 0.0707 | "
                        "0.0750 ± 0.0354 | 5.5 ± 0.7 | 11 (1), 12 (2) |")


def test_seconds_per_epoch_from_different_hardware_are_marked(tmp_path):
    write_run(tmp_path / "hybrid", 1, 0.10, hardware="CPU (AMD EPYC 9B14, x86_64, 1 threads)")
    write_run(tmp_path / "hybrid", 2, 0.20, hardware="CPU (Intel(R) Xeon(R) Processor, x86_64, 1 threads)")
    write_run(tmp_path / "sasrec", 1, 0.10)
    write_run(tmp_path / "sasrec", 2, 0.20)
    lines = tool("--folder-names", "--more", tmp_path / "hybrid", tmp_path / "sasrec").stdout.splitlines()
    assert "| 5.5 ± 0.7 (mixed hardware) | 11 (1), 12 (2) |" in lines[2]
    assert "| 5.5 ± 0.7 | 11 (1), 12 (2) |" in lines[3]


def test_welch_table_from_run_folders(tmp_path):
    a, b = [0.10, 0.20, 0.30], [0.40, 0.60, 0.80, 1.00]
    for seed, v in enumerate(a, 1):
        write_run(tmp_path / "a", seed, v)
    for seed, v in enumerate(b, 1):
        write_run(tmp_path / "b", seed, v)
    r = tool("--welch", tmp_path / "a", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()[2:]
    assert len(rows) == 3 and [row.split(" | ")[2] for row in rows] == ["overall", "head", "tail"]
    t, p = seed_table.welch(seed_table.summary(a), seed_table.summary(b))  # the hand-checked case, scaled by 0.1
    assert rows[0].endswith(f"| 0.2000 (n=3) | 0.7000 (n=4) | -0.5000 | {t:.2f} | {p:.3f} |")
    assert f"{t:.2f}" == "-3.54"


def test_split_valid_reads_the_validation_metrics_and_says_so(tmp_path):
    # test and validation rank the two groups in opposite orders: the tables must follow the split asked for
    for seed, (t, v) in enumerate([(0.10, 0.40), (0.20, 0.60), (0.30, 0.80)], 1):
        write_run(tmp_path / "a", seed, t, valid=v)
    for seed, (t, v) in enumerate([(0.40, 0.10), (0.60, 0.20), (0.80, 0.30), (1.00, 0.40)], 1):
        write_run(tmp_path / "b", seed, t, valid=v)
    r = tool("--welch", "--split", "valid", tmp_path / "a", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "| A | B | part | valid ndcg@10 A | valid ndcg@10 B | diff | t | p |"
    t, p = seed_table.welch(seed_table.summary([0.4, 0.6, 0.8]), seed_table.summary([0.1, 0.2, 0.3, 0.4]))
    assert lines[2].endswith(f"| 0.6000 (n=3) | 0.2500 (n=4) | +0.3500 | {t:.2f} | {p:.3f} |")
    assert tool("--welch", tmp_path / "a", tmp_path / "b").stdout.splitlines()[2].split(" | ")[5] == "-0.5000"
    r = tool("--split", "valid", "--more", tmp_path / "a")
    assert r.stdout.splitlines()[0].startswith("| setting | runs | valid HR@10 | valid NDCG@10 |")
    assert "| valid short-history NDCG@10 |" in r.stdout.splitlines()[0]
    assert r.stdout.splitlines()[2].startswith("| sasrec | 3 | 1.2000 ± 0.4000 | 0.6000 ± 0.2000 |")


def test_split_missing_from_a_run_is_an_error_naming_the_file(tmp_path):
    for seed in (1, 2):
        write_run(tmp_path / "a", seed, 0.1)  # test only
    r = tool("--welch", "--split", "valid", tmp_path / "a", tmp_path / "a")
    assert r.returncode != 0
    assert "metrics.json: no 'valid' split (it has: test)" in r.stderr and str(tmp_path / "a") in r.stderr
    assert tool("--split", "train", tmp_path / "a").returncode == 2  # not a split the runs record


def test_welch_refuses_an_odd_group_count_and_a_one_run_group(tmp_path):
    write_run(tmp_path / "a", 1, 0.1)
    r = tool("--welch", tmp_path / "a")
    assert r.returncode != 0 and "pairs" in r.stderr
    r = tool("--welch", tmp_path / "a", tmp_path / "a")
    assert r.returncode != 0 and "needs at least 2 finished runs" in r.stderr


def _with_history(group: Path, seed: int, curve: list[float]) -> None:
    """Give the run of ``seed`` in ``group`` a training history: validation NDCG@10 ``curve[e - 1]`` at epoch e."""
    record = next(group.glob(f"*0{seed}-sasrec")) / "run.json"
    rec = json.loads(record.read_text())
    rec["fit"]["history"] = [{"epoch": e, "loss": 1.0, "valid_ndcg@10": v} for e, v in enumerate(curve, 1)]
    record.write_text(json.dumps(rec))


def test_curve_gives_validation_ndcg_at_each_epoch_and_counts_runs_that_stopped(tmp_path):
    for seed, curve in ((1, [0.1, 0.2, 0.3]), (2, [0.2, 0.4])):  # seed 2 stopped after epoch 2
        write_run(tmp_path / "slow", seed, 0.1)
        _with_history(tmp_path / "slow", seed, curve)
    rows = list(seed_table.curve_rows([str(tmp_path / "slow")], [1, 2, 3, 9]))
    assert rows[0] == ("| setting | runs | valid NDCG@10 at epoch 1 | valid NDCG@10 at epoch 2 | "
                       "valid NDCG@10 at epoch 3 | valid NDCG@10 at epoch 9 |")
    # by hand: epoch 1 -> 0.1, 0.2: mean 0.15, sample std 0.0707; epoch 2 -> 0.2, 0.4: 0.3 ± 0.1414; epoch 3: seed 1
    assert rows[2] == f"| {tmp_path / 'slow'} | 2 | 0.1500 ± 0.0707 | 0.3000 ± 0.1414 | 0.3000 (n=1) | - |"
    r = tool("--curve", "1,2", tmp_path / "slow")
    assert r.returncode == 0 and "0.1500 ± 0.0707" in r.stdout


def test_curve_refuses_bad_epochs_runs_without_history_and_welch_beside_it(tmp_path):
    write_run(tmp_path / "a", 1, 0.1)
    assert tool("--curve", "5,x", tmp_path / "a").returncode == 2
    r = tool("--curve", "0", tmp_path / "a")
    assert r.returncode != 0 and "epochs >= 1" in r.stderr
    r = tool("--curve", "1", tmp_path / "a")
    assert r.returncode != 0 and "run.json: no training history" in r.stderr
    assert tool("--curve", "1", "--welch", tmp_path / "a", tmp_path / "a").returncode == 2


def test_study_config_prints_mappings_lists_and_scalars(tmp_path):
    cfg = tmp_path / "study.yaml"
    cfg.write_text("variants:\n  plain: ''\n  tied: --sae.tied=true\nseeds: [1, 2]\nname: x\nnested: {k: 3}\n")

    def get(key):
        return subprocess.run([sys.executable, str(STUDY_CONFIG), str(cfg), key], capture_output=True, text=True)

    assert get("variants").stdout == "plain\t\ntied\t--sae.tied=true\n"
    assert get("seeds").stdout == "1\n2\n" and get("name").stdout == "x\n" and get("nested.k").stdout == "3\n"
    r = get("missing")
    assert r.returncode != 0 and "no key 'missing'" in r.stderr and str(cfg) in r.stderr


def test_every_study_config_parses_and_the_ctr_grid_holds_numbers():
    configs = sorted((ROOT / "experiments").glob("*/*.yaml"))
    assert configs
    grid = load(ROOT / "experiments" / "ctr_ml1m" / "baselines.py").GRID
    values = [v for model in grid.values() for vs in model.values() for v in vs]
    assert not any(isinstance(v, str) for v in values), "a float written as 1e-5 is read as a string by YAML"
    assert np.isclose(grid["mf"]["train.weight_decay"], [0.0, 1e-6, 1e-5, 1e-4, 1e-3]).all()
