"""Issue 31's cost study tools on a tiny shape: the synthetic table is what ``data prepare`` accepts with the
requested counts, bench_scale measures all three stages in child processes and resumes, capped stages are
extrapolated and say so, and the GPU script refuses to run without CUDA."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from semcollab.config import DataConfig, EvalConfig
from semcollab.data import load_split
from tests.script_loader import load_script

REPO = Path(__file__).resolve().parents[1]
SHAPE = "20000:500:200"


# bench_scale imports its neighbours
make_synthetic = load_script("benchmarks/make_synthetic.py", neighbours=True)
scale_stages = load_script("benchmarks/scale_stages.py", neighbours=True)
bench_scale = load_script("benchmarks/bench_scale.py", neighbours=True)
plot_scale = load_script("benchmarks/plot_scale.py", neighbours=True)


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))


def test_synthetic_table_passes_data_prepare_with_the_requested_counts(tmp_path):
    path = tmp_path / "syn.parquet"
    meta = make_synthetic.make_synthetic(path, 20_000, 500, 200, seed=3, log=None)
    assert not meta["reused"] and meta["bytes"] == path.stat().st_size
    df = pd.read_parquet(path)
    assert len(df) == 20_000 and df["user"].nunique() == 200 and df["item"].nunique() == 500
    assert (df.groupby("user")["timestamp"].diff().dropna() > 0).all()  # strictly increasing per user
    counts = df["item"].value_counts()
    assert counts.min() >= 5 and counts.max() > 10 * counts.median()  # every item survives 5-core; a Zipf head
    split = load_split(DataConfig(name="table", path=str(path), cache=False))
    s = split.stats
    assert (s["interactions"], s["users"], s["items"], s["duplicates_dropped"]) == (20_000, 200, 500, 0)
    assert make_synthetic.make_synthetic(path, 20_000, 500, 200, seed=3, log=None)["reused"]
    assert not make_synthetic.make_synthetic(path, 20_000, 500, 200, seed=4, log=None)["reused"]
    with pytest.raises(SystemExit, match="5-core"):
        make_synthetic.make_synthetic(path, 1_000, 500, 10, log=None)


def _bench(tmp_path, *extra) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_scale.py"), "--shapes", SHAPE, "--out",
           str(tmp_path / "scale.json"), "--work", str(tmp_path / "work"), "--eval-users", "100", "--threads", "1",
           "--max-minutes", "5", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)


@pytest.mark.slow  # six processes, ~20 s; the stage logic is tested in-process below
def test_bench_scale_measures_three_stages_and_resumes(tmp_path):
    first = _bench(tmp_path, "--stages", "prepare,epoch")
    assert first.returncode == 0, first.stderr
    rec = json.loads((tmp_path / "scale.json").read_text())["shapes"][SHAPE]
    assert set(rec) == {"shape", "synthetic", "prepare", "epoch"}
    epoch_log = tmp_path / "work" / SHAPE.replace(":", "_") / "epoch.log"
    stamp = epoch_log.stat().st_mtime_ns
    second = _bench(tmp_path)  # the same command with every stage: only eval is left to do
    assert second.returncode == 0, second.stderr
    assert "prepare ..." not in second.stdout and "eval ..." in second.stdout
    assert epoch_log.stat().st_mtime_ns == stamp
    data = json.loads((tmp_path / "scale.json").read_text())
    assert data["machine"]["cpu_count"] == os.cpu_count() and data["machine"]["import_floor_rss_mb"] > 0
    rec = data["shapes"][SHAPE]
    for stage in ("prepare", "epoch", "eval"):
        assert rec[stage]["status"] == "done" and rec[stage]["seconds"] > 0
        assert rec[stage]["peak_rss_mb"] > 0 and rec[stage]["exit_code"] == 0
    assert rec["prepare"]["stats"]["interactions"] == 20_000 and not rec["prepare"]["from_cache"]
    assert rec["epoch"]["split_from_cache"] and rec["epoch"]["steps"] == rec["epoch"]["n_batches"]
    assert rec["eval"]["users"] == rec["eval"]["users_evaluated"] == 100
    third = _bench(tmp_path)
    assert third.returncode == 0 and "already measured" in third.stdout
    other = _bench(tmp_path, "--neg-samples", "64")  # other settings never mix into the same JSON
    assert other.returncode != 0 and "settings" in other.stderr
    png = plot_scale.plot(tmp_path / "scale.json", tmp_path / "plot.png")
    assert png.stat().st_size > 10_000 and not list(tmp_path.glob("plot.tmp-*"))


def _stage_args(tmp_path, *extra):
    path = tmp_path / "syn.parquet"
    make_synthetic.make_synthetic(path, 20_000, 500, 200, log=None)
    return scale_stages.parse(["epoch", "--data", str(path), "--cache-dir", str(tmp_path / "cache"), "--result",
                               str(tmp_path / "r.json"), *extra])


def test_capped_epoch_is_extrapolated_and_says_so(tmp_path):
    args = _stage_args(tmp_path, "--batch-size", "8", "--max-minutes", "0.000001", "--neg-samples", "16")
    out = scale_stages.run_epoch(args)
    assert out["status"] == "extrapolated" and out["steps"] == 20 and out["n_batches"] > 20
    assert out["seconds"] == pytest.approx(out["measured_seconds"] * out["n_batches"] / 20)
    assert "extrapolated" in out["note"]


def test_capped_eval_is_extrapolated_and_says_so(tmp_path):
    args = _stage_args(tmp_path, "--eval-users", "100", "--eval-block-users", "10", "--eval-chunk-users", "10",
                       "--max-minutes", "0.000001")
    out = scale_stages.run_eval(args)
    assert out["status"] == "extrapolated" and out["users_evaluated"] == 10 and out["users"] == 100
    assert out["seconds"] == pytest.approx(out["measured_seconds"] * 10)


def test_eval_memory_bound_without_and_with_item_chunks():
    cfg, how = scale_stages.eval_config(1_000_000, 65_536, None)
    if "item_chunk_size" in {f.name for f in dataclasses.fields(EvalConfig)}:
        assert cfg.item_chunk_size == 65_536 and cfg.chunk_size == EvalConfig().chunk_size
    else:  # fewer users per chunk: a chunk's float32 scores stay within 256 MB, and the option is named as ignored
        assert cfg.chunk_size * 4 * 1_000_001 <= 256 << 20 and cfg.chunk_size == 67
        assert "ignored" in how["note"]
    assert scale_stages.eval_config(500, None, None)[0].chunk_size == EvalConfig().chunk_size


def test_eval_users_are_a_seeded_subset_of_the_test_users(tmp_path):
    args = _stage_args(tmp_path)
    split = load_split(scale_stages.data_config(args))
    ev = scale_stages.eval_users(split, 50, seed=1)
    assert len(ev) == 50 and np.all(np.diff(ev.users) > 0)
    assert np.array_equal(ev.users, scale_stages.eval_users(split, 50, seed=1).users)
    full = split.eval_set("test")
    pos = np.searchsorted(full.users, ev.users)
    assert all(np.array_equal(full.histories[p], h) for p, h in zip(pos, ev.histories))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_script_refuses_without_cuda(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "gpu" / "gpu_issue31.py"), "--out", str(out), "--work",
                           str(tmp_path / "w")], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 2 and "no GPU: not run" in done.stderr
    assert not out.exists() and not (tmp_path / "w").exists()


@pytest.mark.slow  # ~25 s: three children and a 2-process torchrun
def test_gpu_script_cpu_rehearsal_runs_the_flow_and_says_what_was_not_run(tmp_path):
    out = tmp_path / "gpu.json"
    env = dict(_env(), SEMCOLLAB_CACHE=str(tmp_path / "empty_cache"))  # gemma3-270m not fetched here
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "gpu" / "gpu_issue31.py"), "--cpu-rehearsal", "2",
                           "--shape", SHAPE, "--out", str(out), "--work", str(tmp_path / "w"), "--threads", "1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["rehearsal"] is True and "gpus" not in report["machine"]
    steps = report["steps"]
    assert steps["lm_embed_beauty"]["status"] == "not run" and "gemma3-270m" in steps["lm_embed_beauty"]["reason"]
    assert steps["synthetic"]["status"] == steps[f"prepare_{SHAPE}"]["status"] == "done"
    epoch = steps[f"epoch_{SHAPE}"]
    assert epoch["status"] == "done" and epoch["world_size"] == 2 and epoch["steps"] == epoch["n_batches"]
