"""LLM-ESR's epoch distillation targets under torchrun: each of 2 gloo ranks encodes its share of the users (once
an epoch) and the shares are gathered, so every rank holds the one-process targets (the same weights; float32, rows encoded in
other chunks: within a few eps of the one-process values)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from tests.child_process import child_env, child_failure
from tests.models.test_alphafuse import ring_table
from tests.models.test_llm_esr import small

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import json, sys
import numpy as np, torch
from semcollab import distributed as ddp
from semcollab.config import DataConfig
from semcollab.data import load_split
from semcollab.models import build_model

ddp.setup()
torch.set_num_threads(1)
data, out, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
split = load_split(DataConfig(name="atomic:toy", path=data, cache=False))
torch.manual_seed(0)
m = build_model("llm-esr", params, split)
encoded, last_states = [], m.last_states
m.last_states = lambda hist, chunk=256: (encoded.append(len(hist)), last_states(hist, chunk))[1]
builder = m.training_batches(split.train_sequences(), split.n_items)
next(builder.epoch(16, np.random.default_rng(0), "cpu"))
np.save(f"{out}/targets-{ddp.rank()}.npy", m.epoch_targets().numpy())
json.dump(encoded, open(f"{out}/encoded-{ddp.rank()}.json", "w"))
'''


def test_two_ranks_gather_the_one_process_targets(toy_dir, toy_split, tmp_path):
    import json

    from semcollab.models import build_model

    params = small(ring_table(tmp_path / "text.npy", toy_split.n_items), distill_weight=0.5, distill_targets="epoch")
    script = tmp_path / "targets.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(script), str(toy_dir), str(tmp_path), json.dumps(params)], env=child_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, child_failure(proc)
    torch.manual_seed(0)
    one = build_model("llm-esr", params, toy_split)
    builder = one.training_batches(toy_split.train_sequences(), toy_split.n_items)
    next(builder.epoch(16, np.random.default_rng(0), "cpu"))
    want = one.epoch_targets().numpy()
    eps = float(torch.finfo(torch.float32).eps)
    for r in (0, 1):
        got = np.load(tmp_path / f"targets-{r}.npy")
        assert got.shape == want.shape == (toy_split.n_users, 32)
        np.testing.assert_allclose(got, want, rtol=0, atol=64 * eps * float(np.abs(want).max()))
    n = toy_split.n_users  # each rank encoded its own share of the users, once
    assert [json.loads((tmp_path / f"encoded-{r}.json").read_text()) for r in (0, 1)] == [[n - n // 2], [n // 2]]
