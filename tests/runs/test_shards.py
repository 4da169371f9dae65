"""Sharded inference files, one process: the plan, the atomic shard + manifest, the merge, and a resume that keeps a
valid shard and redoes a missing, partial or corrupt one (counted by calls of the compute function). The ranks are
driven one after another through :class:`ShardLayout`, the steps :func:`compute_sharded` runs between barriers;
tests/lm/test_sharded_inference.py runs them under torchrun."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semcollab.errors import DistributedError, SemcollabError
from semcollab.runs.shards import (
    ShardLayout,
    ShardSite,
    active_site,
    compute_sharded,
    content_key,
    inference_shards,
    plan_shards,
    read_shard,
    texts_digest,
)

N = 23
BATCHES = [np.arange(s, min(s + 5, N))[::-1] for s in range(0, N, 5)]  # 5 batches, the last of 3 rows


class Counted:
    """``compute``: rows ``i`` -> ``[i, i**2]`` (float32), counting the batches it was asked for."""

    def __init__(self):
        self.calls, self.batches = 0, 0

    def __call__(self, own):
        self.calls += 1
        self.batches += len(own)
        rows = np.concatenate(own) if own else np.zeros(0, dtype=np.int64)
        return np.stack([rows, rows ** 2], axis=1).astype(np.float32)


def expected() -> np.ndarray:
    i = np.arange(N)
    return np.stack([i, i ** 2], axis=1).astype(np.float32)


def run_ranks(layout: ShardLayout, compute, ranks=None) -> list[bool]:
    return [layout.ensure(r, compute) for r in (range(layout.world) if ranks is None else ranks)]


def test_plan_balances_costs_and_covers_every_batch():
    assert plan_shards([1, 1, 1, 1, 1], 2) == [[0, 2, 4], [1, 3]]  # equal costs: round robin
    plan = plan_shards([100, 60, 50, 40, 10], 2)
    loads = [sum([100, 60, 50, 40, 10][i] for i in p) for p in plan]
    assert sorted(i for p in plan for i in p) == list(range(5)) and abs(loads[0] - loads[1]) <= 30
    assert plan_shards([3], 3) == [[0], [], []]  # fewer batches than ranks: some shards are empty
    assert all(p == sorted(p) for p in plan)


def test_one_process_is_the_plain_loop_and_writes_nothing(tmp_path):
    f = Counted()
    site = ShardSite(tmp_path / "shards", content_key("x"))
    np.testing.assert_array_equal(compute_sharded(site, N, BATCHES, f), expected())
    assert f.calls == 1 and not (tmp_path / "shards").exists()
    assert compute_sharded(None, 0, [], lambda own: np.zeros((0, 2), np.float32)).shape == (0, 2)


def test_shards_and_merge(tmp_path):
    site = ShardSite(tmp_path, content_key("model", "float32", texts_digest(["a", "b"])))
    layout = ShardLayout(site, N, BATCHES, 2)
    f = Counted()
    assert run_ranks(layout, f) == [True, True] and f.batches == len(BATCHES)
    names = sorted(p.name for p in layout.folder.iterdir())
    assert names == ["shard-0-of-2.json", "shard-0-of-2.npy", "shard-1-of-2.json", "shard-1-of-2.npy"]  # no tmp
    meta = json.loads((layout.folder / "shard-1-of-2.json").read_text())
    assert meta["key"] == site.key and meta["rank"] == 1 and meta["rows"] == len(layout.rows(1))
    np.testing.assert_array_equal(layout.merge(), expected())
    assert sorted(p.name for p in layout.folder.iterdir()) == ["merged.json", "merged.npy"]  # shards removed
    np.testing.assert_array_equal(layout.merged(), expected())
    assert np.load(layout.folder / "merged.npy", allow_pickle=False).dtype == np.float32


def test_resume_keeps_a_valid_shard_and_redoes_a_missing_one(tmp_path):
    layout = ShardLayout(ShardSite(tmp_path, content_key("k")), N, BATCHES, 2)
    first = Counted()
    run_ranks(layout, first, ranks=[0])  # rank 1 was killed before writing its shard
    kept = layout.folder / "shard-0-of-2.npy"
    stamp = kept.stat().st_mtime_ns
    again = Counted()
    assert run_ranks(layout, again) == [False, True]  # rank 0's kept, rank 1's computed
    assert again.calls == 1 and again.batches == len(layout.plan[1]) and kept.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(layout.merge(), expected())


@pytest.mark.parametrize("damage", ["truncated", "flipped", "no-manifest", "other-key", "tmp-only"])
def test_resume_redoes_a_partial_or_corrupt_shard(tmp_path, damage):
    site = ShardSite(tmp_path, content_key("k"))
    layout = ShardLayout(site, N, BATCHES, 2)
    run_ranks(layout, Counted())
    npy, meta = layout.folder / "shard-1-of-2.npy", layout.folder / "shard-1-of-2.json"
    if damage == "truncated":
        npy.write_bytes(npy.read_bytes()[:-7])
    elif damage == "flipped":
        blob = bytearray(npy.read_bytes())
        blob[-1] ^= 0xFF
        npy.write_bytes(bytes(blob))
    elif damage == "no-manifest":
        meta.unlink()
    elif damage == "other-key":  # the same folder can only hold another key by a hash prefix collision
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "key": content_key("other")}))
    else:  # killed while writing: only the temporary file exists
        npy.rename(layout.folder / ".tmp-shard-1-of-2.npy-x")
        meta.unlink()
    f = Counted()
    assert run_ranks(layout, f) == [False, True] and f.calls == 1
    np.testing.assert_array_equal(layout.merge(), expected())
    assert not list(layout.folder.glob(".tmp-*"))


def test_a_changed_plan_or_world_size_is_not_reused(tmp_path):
    site = ShardSite(tmp_path, content_key("k"))
    run_ranks(ShardLayout(site, N, BATCHES, 2), Counted())
    f = Counted()
    three = ShardLayout(site, N, BATCHES, 3)
    assert run_ranks(three, f) == [True, True, True]  # other names: computed anew
    np.testing.assert_array_equal(three.merge(), expected())
    assert not list(three.folder.glob("shard-*"))  # the 2-rank leftovers go too
    other = ShardLayout(site, N, [np.arange(N)], 2)  # other batches, same key: the manifests do not match
    run_ranks(ShardLayout(site, N, BATCHES, 2), Counted())
    g = Counted()
    assert run_ranks(other, g) == [True, True]


def test_merge_refuses_a_missing_shard(tmp_path):
    layout = ShardLayout(ShardSite(tmp_path, content_key("k")), N, BATCHES, 2)
    run_ranks(layout, Counted(), ranks=[0])
    with pytest.raises(DistributedError, match="rank 1") as exc:
        layout.merge()
    assert isinstance(exc.value, SemcollabError)


def test_a_wrong_row_count_names_the_rank(tmp_path):
    layout = ShardLayout(ShardSite(tmp_path, content_key("k")), N, BATCHES, 2)
    with pytest.raises(DistributedError, match="rank 1: .* returned 1 rows"):
        layout.ensure(1, lambda own: np.zeros((1, 2), np.float32))


def test_site_context_and_keys(tmp_path):
    assert active_site() is None
    with inference_shards(tmp_path, "abc") as site:
        assert active_site() == site and site.child("x").key == content_key("abc", "x") != site.key
    assert active_site() is None
    assert texts_digest(["ab", "c"]) != texts_digest(["a", "bc"])
    assert read_shard(tmp_path, "absent", {}) is None
