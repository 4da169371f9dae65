"""LM inference sharded over 2 gloo processes under torchrun against one process: item embeddings (``semcollab embed
--nproc 2``), a rank killed before writing its shard and the launch resumed, ReaEmb's plain item table
(``semcollab reaemb table --nproc 2``) and LM CTR scores.

Tolerance: none -- bit-equal. Each rank computes whole batches of the one-process batch order
(:func:`semcollab.runs.shards.plan_shards` assigns batches, never rows), so every row is computed with the same
padding and the same kernels; the ranks and the test process run one thread each (a kernel's summation order, and
so its last bits, may change with the thread count). Merging only copies rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from semcollab.config import DataConfig
from semcollab.data import load_split
from semcollab.text import EmbedConfig
from semcollab.text.embed_items import embed_items
from tests.child_process import child_env, child_failure
from tests.conftest import WORDS, write_atomic

ROOT = Path(__file__).resolve().parents[2]


def env(cache: Path) -> dict:
    return child_env(SEMCOLLAB_CACHE=str(cache))


def toy_with_texts(directory: Path, n_items=40) -> Path:
    """The conftest toy data with item titles of 1 to 14 words: batches of unequal lengths."""
    write_atomic(directory, n_items=n_items)
    rng = np.random.default_rng(3)
    titles = [" ".join(rng.choice(WORDS, rng.integers(1, 15))) for _ in range(n_items)]
    pd.DataFrame({"item_id:token": range(1, n_items + 1), "movie_title:token_seq": titles,
                  "class:token_seq": ["Drama" if i % 2 else "Comedy" for i in range(1, n_items + 1)]}).to_csv(
        directory / "toy.item", sep="\t", index=False)
    return directory


def one_process(data: Path, lm: Path, cache: Path) -> tuple[np.ndarray, dict]:
    split = load_split(DataConfig(name="atomic:toy", path=str(data), cache=False))
    return embed_items(split, EmbedConfig(encoder=str(lm), pooling="last", batch_size=4, cache_dir=str(cache)))


def launch(cmd: list[str], cache: Path, expect_ok=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env(cache), cwd=ROOT, capture_output=True, text=True, timeout=240)
    if expect_ok:
        assert proc.returncode == 0, child_failure(proc)
        assert "terminate called" not in proc.stderr
    return proc


def test_embed_nproc_2_equals_one_process(tmp_path, tiny_llama):
    data = toy_with_texts(tmp_path / "toy")
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "semcollab", "embed", "--nproc", "2", "--encoder", str(tiny_llama), "--pooling",
           "last", "--batch-size", "4", "--dataset", "atomic:toy", f"--data.path={data}", "--data.cache=false",
           "--out", str(tmp_path / "emb")]
    proc = launch(cmd, cache)
    assert proc.stdout.count("item vectors of dim") == 1  # rank 0 alone prints
    sharded = np.load(tmp_path / "emb" / "toy" / "item_embeddings.npy", allow_pickle=False)
    ref, ref_stats = one_process(data, tiny_llama, tmp_path / "ref-cache")
    assert ref_stats["encoded"] > 8  # several batches of 4, so both ranks had work
    assert sharded.shape == ref.shape and np.array_equal(sharded, ref)  # row for row, bit for bit
    assert not list((cache / "shards").rglob("*.npy"))  # merged, then the shards and their folder removed
    again, stats = one_process(data, tiny_llama, cache)  # the sharded run filled the cache one process reads
    assert stats["encoded"] == 0 and np.array_equal(again, ref)


KILL_SCRIPT = '''
import json, os, signal, sys, time
from pathlib import Path
import numpy as np
from semcollab.config import DataConfig
from semcollab.data import load_split
from semcollab.runs.shards import ShardLayout
from semcollab.text import EmbedConfig
from semcollab.text.embed_items import embed_items
from semcollab import distributed as ddp

data, lm, cache, out, kill = sys.argv[1:6]
ensure = ShardLayout.ensure

def watched(self, r, compute):
    if kill == "1" and r == 1:  # die before writing, once rank 0's shard is on disk
        for _ in range(600):
            if (self.folder / "shard-0-of-2.json").exists():
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
    computed = ensure(self, r, compute)
    shard = self.folder / f"{self.name(r)}.npy"
    Path(out, f"rank{r}.json").write_text(json.dumps({"computed": computed, "mtime": shard.stat().st_mtime_ns,
                                                       "folder": str(self.folder)}))
    return computed

ShardLayout.ensure = watched
ddp.setup()
split = load_split(DataConfig(name="atomic:toy", path=data, cache=False))
vecs, _ = embed_items(split, EmbedConfig(encoder=lm, pooling="last", batch_size=4, cache_dir=cache))
np.save(Path(out, f"vecs{ddp.rank()}.npy"), vecs)
'''


def test_a_killed_rank_is_redone_and_the_other_shard_kept(tmp_path, tiny_llama):
    data = toy_with_texts(tmp_path / "toy")
    (tmp_path / "kill.py").write_text(KILL_SCRIPT)
    cache, out1, out2 = tmp_path / "cache", tmp_path / "first", tmp_path / "again"
    out1.mkdir(), out2.mkdir()

    def cmd(out: Path, kill: str) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                str(tmp_path / "kill.py"), str(data), str(tiny_llama), str(cache), str(out), kill]

    first = launch(cmd(out1, "1"), cache, expect_ok=False)
    assert first.returncode != 0
    rank0 = json.loads((out1 / "rank0.json").read_text())
    assert rank0["computed"] and not (out1 / "rank1.json").exists()
    folder = Path(rank0["folder"])
    assert (folder / "shard-0-of-2.npy").exists() and not (folder / "shard-1-of-2.npy").exists()
    launch(cmd(out2, "0"), cache)
    r0, r1 = (json.loads((out2 / f"rank{r}.json").read_text()) for r in (0, 1))
    assert not r0["computed"] and r0["mtime"] == rank0["mtime"]  # rank 0's shard kept, untouched
    assert r1["computed"] and r0["folder"] == str(folder)  # rank 1's redone, in the same keyed folder
    ref, _ = one_process(data, tiny_llama, tmp_path / "ref-cache")
    for r in (0, 1):  # every rank returns the merged vectors
        assert np.array_equal(np.load(out2 / f"vecs{r}.npy"), ref)
    assert not folder.exists()


CTR_SCRIPT = '''
import sys
import numpy as np
import torch
from semcollab.runs.shards import inference_shards
from semcollab.tasks.ctr import build_ctr_model, prepare_ctr
from semcollab import distributed as ddp
from tests.tasks.test_ctr import toy_ctr

lm, shards, out = sys.argv[1:4]
ddp.setup()
split = prepare_ctr(toy_ctr(rows=160), history_len=3)
torch.manual_seed(0)
model = build_ctr_model("tallrec", {"lm": lm, "score_batch_size": 8, "max_length": 64, "lora_rank": 2}, split)
with inference_shards(shards, "ctr-test"):
    probs = model.predict(split.parts["test"])
if ddp.is_main():
    np.save(out, probs)
'''


def test_sharded_ctr_scores_equal_one_process(tmp_path, tiny_yes_no_lm):
    import torch

    from semcollab.tasks.ctr import build_ctr_model, prepare_ctr
    from tests.tasks.test_ctr import toy_ctr

    (tmp_path / "ctr.py").write_text(CTR_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(tmp_path / "ctr.py"), str(tiny_yes_no_lm), str(tmp_path / "shards"), str(tmp_path / "probs.npy")]
    launch(cmd, tmp_path / "cache")
    sharded = np.load(tmp_path / "probs.npy")
    split = prepare_ctr(toy_ctr(rows=160), history_len=3)
    torch.manual_seed(0)
    model = build_ctr_model("tallrec", {"lm": str(tiny_yes_no_lm), "score_batch_size": 8, "max_length": 64,
                                        "lora_rank": 2}, split)
    ref = model.predict(split.parts["test"])
    assert len(ref) > 16 and ref.dtype == sharded.dtype == np.float64
    assert np.array_equal(sharded, ref) and np.unique(ref).size > 1


@pytest.mark.slow  # ~18 s; the shard machinery is the embed and CTR tests' (runs/shards.py)
def test_reaemb_table_nproc_2_equals_one_process(tmp_path, tiny_causal_lm):
    from semcollab.methods.reaemb import reaemb_table
    from tests.methods.reaemb.test_pipeline import N_ITEMS, write_toy_s3rec

    data = write_toy_s3rec(tmp_path / "data")
    ov = [f"data.path={data}", "data.user_k=1", "data.item_k=1", "encoder.max_length=64", "device=cpu"]
    cmd = [sys.executable, "-m", "semcollab", "reaemb", "table", "--plain", "--nproc", "2", "--dataset", "s3rec:Toy",
           "--lm", str(tiny_causal_lm), "--batch-size", "2", "--out", str(tmp_path / "plain.npy"),
           *[f"--{o}" for o in ov]]
    proc = launch(cmd, tmp_path / "cache")
    assert proc.stdout.count("plain table (") == 1 and proc.stdout.count("items with text") == 1  # rank 0 alone
    sharded = np.load(tmp_path / "plain.npy", allow_pickle=False)
    path, meta = reaemb_table(None, "s3rec:Toy", "plain", overrides=[*ov, f"lm={tiny_causal_lm}"], batch_size=2,
                              log=None)
    ref = np.load(path)
    assert ref.shape == (N_ITEMS + 1, 32) and np.array_equal(sharded, ref)  # 6 batches of 2 over 2 ranks
    assert json.loads((tmp_path / "plain.json").read_text())["key"] == meta["key"]  # the same cache key


@pytest.mark.parametrize("argv", [["embed", "--nproc", "2", "--out", "x"], ["embed", "--nproc=2"]])
def test_nproc_is_dropped_from_the_relaunched_command(argv):
    from semcollab.distributed import without_nproc

    assert "--nproc" not in " ".join(without_nproc(argv))
