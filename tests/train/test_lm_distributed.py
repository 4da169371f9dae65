"""LM training (``train_lm``) data-parallel under torchrun: 2 gloo processes on the CPU against one process.

Tolerance. Two ranks take the optimiser steps one process takes, in float32, but round differently: each rank pads
and runs its half of a batch (other matrix shapes, other blocking), averages its rows' losses, weights the mean by
its share of the rows, and the gradients are summed by the all-reduce (another order of additions). A float32
reduction of n terms in another order differs by at most about n * eps relative (tests/tolerance.py); one step's
gradient goes through the forward and backward reductions of the tiny LM (transformer_reductions: ~500 terms for a
LoRA-on-tiny-Llama prompt) and the mean over the batch's rows. Adam divides each step by the gradient's running
scale, so a relative change of the gradient becomes one of the same size of the step; over STEPS steps the changes
add up (worst case). Hence RTOL = STEPS * (sum(reductions) + rows per batch) * eps, for the per-step losses and for
the trained weights (relative to each tensor's largest entry)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.child_process import child_env, child_failure
from tests.tolerance import transformer_reductions

ROOT = Path(__file__).resolve().parents[2]


def env() -> dict:
    """Read at call time: the test's own SEMCOLLAB_CACHE (tests/conftest.py) reaches the ranks."""
    return child_env()


EPS = torch.finfo(torch.float32).eps
CFG = {"epochs": 2, "lr": 1e-2, "warmup_ratio": 0.2, "seed": 3, "progress": False}
# 21 rows: batches of 8 are 8, 8, 5 (a 3 / 2 split: unequal shard weights); batches of 4 with 2 accumulated
# are 4, 4, 4, 4, 4, 1 (rank 1's share of the last is empty)
RUNS = {"plain": {**CFG, "batch_size": 8}, "accum": {**CFG, "batch_size": 4, "grad_accum": 2}}
STEPS, ROWS, MAX_TOKENS = 6, 8, 12

SCRIPT = r'''
import json, os, signal, sys
import torch
from safetensors.torch import save_file
from semcollab.lm import USER_TOKEN, LoRAConfig, add_lora, embed_with_soft_tokens, yes_no_logits, yes_no_loss
from semcollab import distributed as ddp
from semcollab.train.lm_steps import LMTrainConfig, train_lm
from tests.lm_helpers import prepare_lm

ddp.setup()
torch.set_num_threads(1)
lm_path, out, runs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
WORDS = ["toy", "story", "drama", "comedy", "action", "space", "war", "love", "golden", "eye"]
rows = [{"text": " ".join(WORDS[(i + j) % 10] for j in range(1 + i % 5)) + f" {USER_TOKEN} . title :",
         "user": i % 3, "label": (i * 7) % 3 == 0} for i in range(21)]
results = {}
for name, opts in runs.items():
    kill_at, ckpt = opts.pop("kill_at", None), opts.pop("ckpt", None)
    model, tok, yes_id, no_id, ids = prepare_lm(lm_path)
    torch.manual_seed(0)
    peft = add_lora(model, LoRAConfig(rank=2, dropout=0.0))  # no dropout: the ranks' masks are not one process's
    users, proj = torch.nn.Embedding(3, 8), torch.nn.Linear(8, model.config.hidden_size)
    lengths = [len(tok(r["text"])["input_ids"]) for r in rows]

    def collate(batch):
        enc = tok([r["text"] for r in batch], padding=True, return_tensors="pt")
        return {**enc, "user": torch.tensor([r["user"] for r in batch]),
                "label": torch.tensor([float(r["label"]) for r in batch])}

    def loss_fn(b):
        emb = embed_with_soft_tokens(peft, b["input_ids"], {ids[USER_TOKEN]: proj(users(b["user"]))})
        return yes_no_loss(yes_no_logits(peft, None, b["attention_mask"], yes_id, no_id, inputs_embeds=emb), b["label"])

    def should_stop(step):
        if step == kill_at and ddp.is_main():
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-training: the last checkpoint is of step kill_at - 1
        return False

    trainable = {"lm": peft, "users": users, "proj": proj}
    res = train_lm(loss_fn, trainable, rows, lengths, collate, LMTrainConfig(**opts), checkpoint_dir=ckpt,
                   should_stop=should_stop, log=print)
    results[name] = {"losses": res.losses, "steps": res.steps, "resumed": res.resumed_from_step,
                     "max_tokens": max(lengths)}
    if ddp.is_main():  # after each run: a later run of the list may be killed
        save_file({f"{k}.{n}": p.detach().contiguous() for k, m in trainable.items()
                   for n, p in m.named_parameters() if p.requires_grad}, os.path.join(out, name + ".safetensors"))
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump(results, f)
'''


def launch(tmp: Path, lm_path, out: Path, nproc: int, runs: dict, killed=False) -> dict:
    """The script in one process (plain python) or under torchrun; rank 0's results and trained weights
    (``killed``: the last run kills the launch; the results of the runs before it)."""
    script = tmp / "train_script.py"
    script.write_text(SCRIPT)
    out.mkdir(parents=True, exist_ok=True)
    head = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
            if nproc > 1 else [sys.executable])
    proc = subprocess.run([*head, str(script), str(lm_path), str(out), json.dumps(runs)], env=env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    if killed:
        assert proc.returncode != 0 and "FloatingPointError" not in proc.stderr, child_failure(proc)
    else:
        assert proc.returncode == 0, child_failure(proc)
        assert "terminate called" not in proc.stderr  # every rank left its process group before exiting
    from safetensors.torch import load_file

    res = json.loads((out / "result.json").read_text())
    return {name: {**r, "weights": load_file(str(out / f"{name}.safetensors"))} for name, r in res.items()}


KILLED = {**RUNS["plain"], "checkpoint_every": 1, "kill_at": 4}


@pytest.fixture(scope="module")
def one_and_two(tiny_causal_lm, tmp_path_factory):
    """One process, then 2 ranks; the 2-rank launch ends with a run that rank 0 SIGKILLs after step 4 (one launch
    less: each costs seconds of imports)."""
    tmp = tmp_path_factory.mktemp("lm-ddp")
    one = launch(tmp, tiny_causal_lm, tmp / "one", 1, RUNS)
    two = launch(tmp, tiny_causal_lm, tmp / "two", 2, {**RUNS, "killed": {**KILLED, "ckpt": str(tmp / "ckpt")}},
                 killed=True)
    return tmp, one, two


def rtol(lm_path) -> float:
    from transformers import AutoConfig

    reductions = transformer_reductions(AutoConfig.from_pretrained(lm_path), MAX_TOKENS, lora_rank=2, head=True)
    return STEPS * (sum(reductions) + ROWS) * EPS


@pytest.mark.parametrize("name", list(RUNS))
def test_two_ranks_take_the_steps_of_one_process(one_and_two, tiny_causal_lm, name):
    _, one, two = one_and_two
    a, b, tol = one[name], two[name], rtol(tiny_causal_lm)
    assert a["max_tokens"] <= MAX_TOKENS
    assert a["steps"] == b["steps"] == STEPS and len(set(a["losses"])) == STEPS  # the loss moves
    rel = [abs(x - y) / max(abs(x), 1e-3) for x, y in zip(a["losses"], b["losses"])]
    print(name, "losses", a["losses"], b["losses"], "max rel diff", max(rel), "tolerance", tol)
    assert max(rel) <= tol, (a["losses"], b["losses"])
    assert a["weights"].keys() == b["weights"].keys() and any("lora_B" in k for k in a["weights"])
    worst = 0.0
    for k, w in a["weights"].items():
        diff = float((w - b["weights"][k]).abs().max()) / max(float(w.abs().max()), 1e-3)
        worst = max(worst, diff)
        assert diff <= tol, (k, diff, tol)
    print(name, "weights max rel diff", worst)
    moved = sum(float(v.abs().sum()) for k, v in a["weights"].items() if "lora_B" in k)
    assert moved > 0  # the adapter trained (B starts at zero)


def test_killed_two_rank_run_resumes_to_the_unbroken_run(one_and_two, tiny_causal_lm):
    """Rank 0 SIGKILLs itself after step 4 (checkpoints every step; torchrun then ends rank 1); the same command
    resumes from step 3 and ends as the unbroken 2-rank run, to the bit."""
    tmp, _, two = one_and_two
    ckpt = tmp / "ckpt"
    assert "killed" not in two and (ckpt / "checkpoint.pt").exists()
    again = launch(tmp, tiny_causal_lm, tmp / "again", 2,
                   {"plain": {**RUNS["plain"], "checkpoint_every": 1, "ckpt": str(ckpt)}})["plain"]
    assert again["resumed"] == 3 and again["losses"] == two["plain"]["losses"]
    for k, w in two["plain"]["weights"].items():
        assert torch.equal(w, again["weights"][k]), k


def test_ctr_train_nproc_2_writes_one_run(tmp_path, tiny_yes_no_lm):
    """``semcollab ctr train --model tallrec ... --nproc 2`` on a tiny CoLLM-format split: one run folder, one
    printed table."""
    from tests.tasks.test_ctr_cli import write_collm_folder

    data = write_collm_folder(tmp_path / "collm", rows=(32, 12, 12))
    out = tmp_path / "runs"
    args = ["ctr", "train", "--model", "tallrec", f"--data.path={data}", "--data.allow_pickle=true",
            "--train.progress=false", f"--model_params.lm={tiny_yes_no_lm}", "--model_params.batch_size=8",
            "--model_params.max_length=64", "--model_params.lora_rank=2", "--model_params.lm_lr=1e-3",
            "--model_params.checkpoint_every=0", "--model_params.score_batch_size=32", f"--output_dir={out}",
            "--nproc", "2"]
    proc = subprocess.run([sys.executable, "-m", "semcollab", *args], env=env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, child_failure(proc)
    runs = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1, runs  # rank 0 alone writes the run folder
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["test"]["all"]["auc"] is not None
    assert json.loads((runs[0] / "run.json").read_text())["fit"]["stages"]["step1-lora"]["steps"] == 4
    assert proc.stdout.count("run saved to") == 1  # rank 0 alone prints
