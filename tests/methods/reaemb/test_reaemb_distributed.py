"""``semcollab reaemb train --nproc 2``: 2 gloo ranks on the CPU write one run folder with both stages, and stage 1
(its in-batch negatives gathered over the ranks) takes the losses of one process.

Views: the items' texts have one attribute (``text_fields=[title]``), so both views are the text itself and no draw
differs between ranks and one process; LoRA dropout is 0. What remains is rounding: a rank pads its slice of a
batch to the slice's longest text instead of the batch's, and sums in another order. Hence
RTOL = steps * (sum of a forward pass's reduction lengths + rows per batch) * eps(fp32), per-step loss."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoConfig

from semcollab.methods.reaemb import stage_state, train_reaemb
from tests.child_process import child_failure

from ...tolerance import transformer_reductions
from .test_pipeline import base_overrides, write_toy_s3rec

ROOT = Path(__file__).resolve().parents[3]
STEPS, BATCH, MAX_TOKENS = 3, 4, 24  # 11 items with text in batches of 4: 4, 4, 3 (a 2 / 2 and a 2 / 1 split)


def overrides(data, lm, out) -> list[str]:
    return base_overrides(data, lm, out, **{"text_fields": "[title]", "stage1.lora_dropout": 0.0,
                                            "stage1.max_steps": STEPS, "stage1.batch_size": BATCH})


def test_reaemb_train_nproc_2_matches_one_process_stage1(tiny_causal_lm, tmp_path):
    toy_s3rec = write_toy_s3rec(tmp_path / "data")
    out = tmp_path / "two"
    opts = [f"--{o}" for o in overrides(toy_s3rec, tiny_causal_lm, out) if not o.startswith(("dataset=", "lm="))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "semcollab", "reaemb", "train", "--dataset", "s3rec:Toy", "--lm",
                        str(tiny_causal_lm), *opts, "--nproc", "2"], env=env, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, child_failure(r)
    assert r.stdout.count("stage1: ") == 1 and r.stdout.count("stage2: ") == 1, r.stdout  # rank 0 alone prints
    two = {s: stage_state(out, s) for s in ("stage1", "stage2")}
    assert two["stage1"]["steps"] == STEPS and two["stage2"]["steps"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "stage1", "stage2", "timing.json"]
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]

    one = train_reaemb(None, "stage1", log=None, overrides=overrides(toy_s3rec, tiny_causal_lm, tmp_path / "one"))
    losses_1, losses_2 = torch.tensor(one.stages["stage1"]["losses"]), torch.tensor(two["stage1"]["losses"])
    reductions = transformer_reductions(AutoConfig.from_pretrained(tiny_causal_lm), MAX_TOKENS, lora_rank=2)
    rtol = STEPS * (sum(reductions) + BATCH) * torch.finfo(torch.float32).eps
    rel = float(((losses_2 - losses_1).abs() / losses_1.abs()).max())
    assert rel <= rtol, f"stage-1 losses {losses_2.tolist()} vs one process {losses_1.tolist()}: {rel:.2e} > {rtol:.2e}"
    assert not torch.equal(losses_1[0], losses_1[-1])  # the runs train: the comparison is not of constants


GRADIENT_SCRIPT = """
import sys
import torch
import torch.distributed as dist
from semcollab.methods.reaemb.objectives import lrcl_loss
from semcollab.methods.reaemb.stages import gather_views
from semcollab import distributed as ddp

ddp.setup()
torch.manual_seed(0)
views, w = torch.randn(2, 7, 5), torch.randn(5, 4)  # the same on every rank: 7 rows, split 4 / 3


def grads(rows, weight, gather):
    proj, log_temp = w.clone().requires_grad_(), torch.tensor(0.3, requires_grad=True)
    a, b = views[0, rows] @ proj, views[1, rows] @ proj
    if gather:
        a, b = gather_views(a, b)
    (lrcl_loss(a, b, log_temp) * weight).backward()  # what train_lm backpropagates
    return torch.cat([proj.grad.ravel(), log_temp.grad.view(1)])


one = grads(slice(None), 1.0, False)  # one process, the whole batch
mine = ddp.shard_rows(7)
g = grads(mine, ddp.shard_scale(mine.stop - mine.start, 7), True)
dist.all_reduce(g)  # train_lm's average over the ranks
g /= ddp.world_size()
if ddp.is_main():
    torch.save({"one": one, "two": g}, sys.argv[1])
"""


def test_gathered_stage1_gradient_is_the_one_process_gradient(tmp_path):
    """:func:`gather_views` under ``train_lm``'s shard weights (unequal 4 / 3 slices) and its mean over the ranks
    give the one-process gradient, for the projection (reached through the rows) and the temperature (used on
    every rank): AdamW would hide a constant factor in the loss trajectory above, so the gradient is checked."""
    script, out = tmp_path / "grad.py", tmp_path / "grads.pt"
    script.write_text(GRADIENT_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        str(script), str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, child_failure(r)
    g = torch.load(out, weights_only=True)
    # fp32 loss of 7 rows x 4 dims; a reordered sum per element: a few eps of the largest gradient
    tol = 64 * torch.finfo(torch.float32).eps * float(g["one"].abs().max())
    assert float((g["two"] - g["one"]).abs().max()) <= tol, (g["two"], g["one"])
