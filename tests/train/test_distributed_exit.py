"""How ranks leave a torchrun process group (semcollab.distributed): a rank that ends normally waits for the others
before tearing its gloo connections down; a rank that ends on an error leaves at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.child_process import child_env, child_failure

ROOT = Path(__file__).resolve().parents[2]
RANK0_WORK = 3.0  # seconds rank 0 works after the last collective (writing a run folder, say)

SCRIPT = r'''
import atexit, json, os, sys, time
sys.path.insert(0, "src")
out, mode = sys.argv[1], sys.argv[2]
rank = int(os.environ["RANK"])
# registered before setup(): runs after semcollab's own exit handler (atexit is last in, first out)
atexit.register(lambda: open(os.path.join(out, f"left-{rank}"), "w").write(str(time.time())))
import torch
from semcollab import distributed as ddp
ddp.setup()
t = torch.ones(4)
torch.distributed.all_reduce(t)
open(os.path.join(out, f"collective-{rank}"), "w").write(str(time.time()))
if rank == 0:
    time.sleep(float(sys.argv[3]))
elif mode == "error":
    raise ValueError("rank 1 fails on its own")
elif mode == "cli-error":
    ddp.leaving_on_error()
'''


def run(tmp: Path, mode: str) -> tuple[subprocess.CompletedProcess, dict]:
    script = tmp / "exit_script.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(script), str(tmp), mode, str(RANK0_WORK)], env=child_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    times = {p.name: float(p.read_text()) for p in tmp.iterdir() if p.name.split("-")[0] in ("left", "collective")}
    return proc, times


def test_a_normal_end_waits_for_every_rank(tmp_path):
    proc, t = run(tmp_path, "normal")
    assert proc.returncode == 0, child_failure(proc)
    assert "terminate called" not in proc.stderr
    # rank 1 had nothing left to do after the collective, yet left only once rank 0 had done its work
    assert t["left-1"] - t["collective-0"] >= RANK0_WORK * 0.9, json.dumps(t)


def test_a_rank_ending_on_an_error_leaves_at_once(tmp_path):
    for mode in ("error", "cli-error"):
        tmp = tmp_path / mode
        tmp.mkdir()
        proc, t = run(tmp, mode)
        if mode == "error":
            assert proc.returncode != 0 and "rank 1 fails on its own" in proc.stderr
        # rank 1 did not wait for rank 0's remaining work (torchrun may then stop rank 0)
        assert t["left-1"] - t["collective-1"] < RANK0_WORK * 0.9, (mode, json.dumps(t))
