"""experiments/gpu/run.sh 33 (issue 33's GPU-only row, RecTools UniSRec): its refusals, which are all that can run
without a GPU and the prepared .gpu33 folder (the plumbing was checked on tiny files with GPU33_ALLOW_CPU=1)."""

import os
import subprocess

import pytest
import torch

from tests.script_loader import REPO


def _run(tmp_path, **env):
    return subprocess.run(["bash", "experiments/gpu/run.sh", "33"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OUT": str(tmp_path / "out"), **env})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_cuda(tmp_path):
    done = _run(tmp_path, G=str(tmp_path / "none"))
    assert done.returncode == 2 and "no GPU: not run" in done.stderr
    assert not (tmp_path / "out").exists()


def test_refuses_without_prepared_tables(tmp_path):
    (tmp_path / "g" / "tables").mkdir(parents=True)
    done = _run(tmp_path, G=str(tmp_path / "g"), GPU33_ALLOW_CPU="1", PY="python")
    assert done.returncode == 2 and "prepare_issue33.py" in done.stderr
    assert not (tmp_path / "out").exists()
