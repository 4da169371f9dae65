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


def _tiny_prepared(tmp_path, monkeypatch):
    """A .gpu33 folder as prepare_issue33.py lays it out, on 60 synthetic users over 30 items: the interaction file
    and a float16 table (160 wide: above the null-space model's 128) carrying the split's item-id hash."""
    import json
    import random

    import numpy as np

    from semcollab.config import DataConfig
    from semcollab.data import load_split
    from semcollab.models.text_table import item_ids_sha256

    g = tmp_path / "g"
    (g / "shared" / "data" / "s3rec").mkdir(parents=True)
    (g / "tables").mkdir()
    rng = random.Random(0)
    lines = [" ".join(map(str, [u] + [rng.randint(1, 30) for _ in range(rng.randint(6, 10))])) for u in range(1, 61)]
    (g / "shared" / "data" / "s3rec" / "Beauty.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SEMCOLLAB_SHARED", str(g / "shared"))
    monkeypatch.setenv("SEMCOLLAB_CACHE", str(tmp_path / "cache"))
    split = load_split(DataConfig(name="s3rec:Beauty"), log=None)
    table = np.random.default_rng(0).normal(size=(split.n_items + 1, 160)).astype(np.float16)
    table[0] = 0
    np.save(g / "tables" / "Beauty-minilm.npy", table)
    (g / "tables" / "Beauty-minilm.json").write_text(json.dumps({"item_ids_sha256": item_ids_sha256(split.item_vocab.ids)}))
    return g


def test_rows_part_trains_semcollab_runs_from_the_prepared_tables(tmp_path, monkeypatch):
    """PART=rows: the text-reading setting reads the carried MiniLM table (model_params.item_table), SASRec does not,
    nothing is encoded (the device has no MiniLM package), and the table of the runs is written."""
    import yaml

    g = _tiny_prepared(tmp_path, monkeypatch)
    done = subprocess.run(
        ["bash", "experiments/gpu/run.sh", "33"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OUT": str(tmp_path / "out"), "G": str(g), "GPU33_ALLOW_CPU": "1", "PY": "python",
             "PART": "rows", "ROWS_DATASETS": "Beauty", "ROWS_STAGES": "main", "ROWS_MODELS": "hybrid-ns-128 sasrec",
             "JOBS": "2", "MINUTES": "1", "EXTRA": "--train.epochs=1"})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = tmp_path / "out" / "gpu_issue33" / "rows"
    configs = {c.parent.parent.name: yaml.safe_load(c.read_text()) for c in rows.glob("Beauty/*/*/config.yaml")}
    assert set(configs) == {"hybrid-ns-128", "sasrec"}
    assert configs["hybrid-ns-128"]["model_params"]["item_table"] == str(g / "tables" / "Beauty-minilm.npy")
    assert "item_table" not in configs["sasrec"]["model_params"]
    assert len(list(rows.glob("Beauty/*/*/metrics.json"))) == 2
    assert "| hybrid-ns-128 | 1 |" in (rows / "table.md").read_text()
    assert not (rows / "embed").exists()


def test_rows_part_refuses_a_dataset_without_a_table(tmp_path, monkeypatch):
    g = _tiny_prepared(tmp_path, monkeypatch)
    done = subprocess.run(
        ["bash", "experiments/gpu/run.sh", "33"], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "OUT": str(tmp_path / "out"), "G": str(g), "GPU33_ALLOW_CPU": "1", "PY": "python",
             "PART": "rows", "ROWS_DATASETS": "Toys_and_Games", "ROWS_STAGES": "main", "ROWS_MODELS": "alphafuse"})
    assert done.returncode != 0 and "no " + str(g / "tables" / "Toys_and_Games-minilm.npy") in done.stderr
    assert not list((tmp_path / "out").rglob("metrics.json"))
