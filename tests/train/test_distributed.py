"""Data-parallel training under torchrun (2 gloo processes on the CPU) against one process.

Tolerance. One process and two ranks take the same optimiser steps in float32 but round differently: each rank
averages its shard's targets, the shard means are rescaled and DDP sums the two gradients (another order of
additions), and an epoch's loss is summed over ranks. A float32 sum of n terms in another order differs by at most
about n * eps relative (eps = torch.finfo(torch.float32).eps = 1.2e-7); a toy batch sums at most TERMS = 16 rows x
15 targets = 240 terms. Adam divides each step by the gradient's running scale, so a relative change of the
gradient becomes a change of about the same relative size of the step; over the STEPS = 4 epochs x 3 batches the
changes add up (worst case) rather than shrink. Hence RTOL = STEPS * TERMS * eps = 3.4e-4, for the per-epoch
losses and the test metrics (an item's rank could only change where two scores are closer than that). Measured:
the losses agree to 9e-8 relative (under one eps) and the test metrics are bit-equal, for SASRec, BERT4Rec and
GRU4Rec (MF-BPR takes ~25 steps of 16 pairs an epoch: 100 x 16 terms, inside the same bound; measured 2e-8)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from semcollab.distributed import shard_rows, shard_scale, torchrun_command, without_nproc
from tests.child_process import child_env, child_failure

EPS = torch.finfo(torch.float32).eps
STEPS, TERMS = 4 * 3, 16 * 15  # 4 epochs of 3 batches (48 users, batch 16); rows x targets per row
RTOL = STEPS * TERMS * EPS
ROOT = Path(__file__).resolve().parents[2]


def write_data(directory: Path, n_users=48, n_items=30, seed=0) -> Path:
    """Users walking items in order, with histories of 4 to 15 events: shards get unequal numbers of targets."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        start, length = rng.integers(1, n_items + 1), rng.integers(4, 16)
        rows += [(u, (start + t - 1) % n_items + 1, 1000 * u + t) for t in range(length)]
    directory.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["user_id:token", "item_id:token", "timestamp:float"]).to_csv(
        directory / "toy.inter", sep="\t", index=False)
    return directory


SEQ = ["--model_params.hidden=16", "--model_params.layers=1", "--model_params.dropout=0"]  # no dropout: the ranks'
PARAMS = {"sasrec": SEQ + ["--model_params.attn_dropout=0"],  # masks could not be those of one process
          "bert4rec": SEQ + ["--model_params.attn_dropout=0"], "gru4rec": SEQ, "mf-bpr": ["--model_params.hidden=16"]}


def command(data: Path, out: Path, nproc: int, model="sasrec", extra=()) -> list[str]:
    args = ["train", "--model", model, "--dataset", "atomic:toy", f"--data.path={data}", "--data.cache=false",
            "--train.epochs=4", "--train.batch_size=16", "--train.progress=false", "--train.patience=10",
            "--train.lr=0.01", *PARAMS[model], "--eval.ks=[5,10]", f"--output_dir={out}", *extra]
    if nproc > 1:
        args.append(f"--nproc={nproc}")
    return [sys.executable, "-m", "semcollab", *args]


ENV = child_env()


def train(data: Path, out: Path, nproc: int, model="sasrec", extra=()) -> dict:
    """``semcollab train`` (``--nproc 2``: relaunched under torchrun); the run's metrics and fit record."""
    proc = subprocess.run(command(data, out, nproc, model, extra), env=ENV, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, child_failure(proc)
    assert "terminate called" not in proc.stderr  # every rank left its process group before exiting
    runs = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1, runs  # the run folder is written once, by rank 0
    run = runs[0]
    return {"metrics": json.loads((run / "metrics.json").read_text()),
            "fit": json.loads((run / "run.json").read_text())["fit"], "stdout": proc.stdout}


def close(a: float, b: float) -> bool:
    return abs(a - b) <= RTOL * max(abs(a), abs(b), 1e-3)


# bert4rec: each rank masks its rows as one process does; mf-bpr: its negatives, likewise
@pytest.mark.parametrize("model", ["sasrec", "bert4rec", "gru4rec", "mf-bpr"])
def test_two_ranks_follow_one_process(tmp_path, model):
    data = write_data(tmp_path / "toy")
    one = train(data, tmp_path / "one", 1, model)
    two = train(data, tmp_path / "two", 2, model)
    l1 = [h["loss"] for h in one["fit"]["history"]]
    l2 = [h["loss"] for h in two["fit"]["history"]]
    print("losses", l1, l2, "max rel diff", max(abs(a - b) / abs(a) for a, b in zip(l1, l2)))
    assert len(l1) == len(l2) == 4
    assert all(close(a, b) for a, b in zip(l1, l2)), (l1, l2)
    t1, t2 = one["metrics"]["test"]["overall"], two["metrics"]["test"]["overall"]
    print("test", t1, t2)
    for k in ("hr@10", "ndcg@10", "mrr@10"):
        assert close(t1[k], t2[k]), (k, t1[k], t2[k])
    assert two["stdout"].count("run saved to") == 1  # rank 0 alone prints


def test_shards_cover_the_batch(monkeypatch):
    import semcollab.distributed as d

    for n in (0, 1, 5, 16):
        monkeypatch.setattr(d, "world_size", lambda: 2)
        parts = []
        for r in (0, 1):
            monkeypatch.setattr(d, "rank", lambda r=r: r)
            parts.append(shard_rows(n))
        assert [i for s in parts for i in range(n)[s]] == list(range(n))
        assert shard_scale(3, 6) == 1.0


def test_launch_command():
    assert without_nproc(["train", "--nproc", "2", "--model", "x", "--nproc=3"]) == ["--model", "x"]
    cmd = torchrun_command(2, ["train", "--model", "x"])
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--nproc-per-node=2" in cmd


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc), deepest first."""
    out = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        out += descendants(int(child)) + [int(child)]
    return out


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the ranks' PIDs in /proc")
def test_killed_distributed_run_resumes_to_the_same_result(tmp_path):
    """2 ranks, a checkpoint after every epoch; the whole launch (torchrun and both ranks) is SIGKILLed once epoch 2
    is logged, then the same command is run again: it resumes and ends as an unbroken 2-rank run, to the bit."""
    data = write_data(tmp_path / "toy")
    extra = ("--train.checkpoint_minutes=0", "--train.epochs=5")
    whole = train(data, tmp_path / "whole", 2, extra=extra)
    out = tmp_path / "killed"
    proc = subprocess.Popen(command(data, out, 2, extra=extra), env=ENV, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in proc.stdout:
            if line.startswith("epoch=2 "):
                for pid in descendants(proc.pid):  # the ranks (torchrun starts them in sessions of their own)
                    os.kill(pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode != 0
    assert list(out.glob(".resume/*")) and not [p for p in out.iterdir() if not p.name.startswith(".")]
    again = train(data, out, 2, extra=extra)
    assert "resuming from epoch" in again["stdout"]
    strip = [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in whole["fit"]["history"]]
    assert [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in again["fit"]["history"]] == strip
    assert again["metrics"] == whole["metrics"]


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
cfg, pop = EvalConfig(ks=[5, 10], chunk_size=7), split.item_popularity()
split_res = evaluate_ranking(net, split.eval_set("test"), split.n_items, pop, cfg, over_ranks=True)
if ddp.is_main():
    one = evaluate_ranking(net, split.eval_set("test"), split.n_items, pop, cfg)
    json.dump({"split": split_res, "one": one}, open(sys.argv[2], "w"))
dist.destroy_process_group()
'''


def test_evaluation_split_over_ranks_is_the_one_process_result(tmp_path):
    """7-user chunks (7 chunks for 48 users: rank 0 scores 4, rank 1 scores 3), gathered: bit-equal metrics and
    breakdowns."""
    data = write_data(tmp_path / "toy")
    (tmp_path / "ev.py").write_text(EVAL_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(tmp_path / "ev.py"), str(data), str(tmp_path / "out.json")]
    proc = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, child_failure(proc)
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["split"] == out["one"]


def test_other_tasks_refuse_torchrun(monkeypatch):
    from semcollab.errors import DistributedError, SemcollabError
    from semcollab.pipeline import run

    assert issubclass(DistributedError, SemcollabError)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DistributedError, match="trains in one process only"):  # the CTR models without an LM
        run(model="mf", dataset="ml-100k", task="ctr", save=False)
    with pytest.raises(DistributedError, match="reaemb train --nproc"):
        run(model="reaemb", dataset="ml-100k", task="item-table", save=False)
    with pytest.raises(DistributedError, match="inside a torchrun launch"):
        from semcollab.distributed import launch
        launch(2, ["train"])
