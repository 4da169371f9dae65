"""Temporal-split sanity checks, cache self-repair, unwritable caches and Split.fingerprint."""

import errno
import json
import re

import pandas as pd
import pytest

from semcollab.config import DataConfig
from semcollab.data import DataError, RawDataset, load_split, prepare
from semcollab.data import cache as cache_mod


def raw_from(rows):
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    return RawDataset("t", inter, pd.DataFrame({"item": inter["item"].astype(str).unique()}), [])


# ------------------------------------------------------------------ temporal split
def test_temporal_valid_users_without_history_fail_at_prepare():
    # every user's events all fall after the validation cut-off except users who only train
    rows = [("old", f"i{t}", t) for t in range(8)] + [("new", "i1", 100), ("new", "i2", 101)]
    with pytest.raises(DataError, match=r"no validation user has training history.*data\.valid_frac"):
        prepare(raw_from(rows), user_k=1, item_k=1, split="temporal", valid_frac=0.1, test_frac=0.1)


def test_temporal_test_users_without_history_fail_at_prepare():
    rows = [("a", f"i{t}", t) for t in range(8)] + [("a", "i9", 50), ("z", "i1", 100)]
    with pytest.raises(DataError, match=r"no test user has.*data\.test_frac"):
        prepare(raw_from(rows), user_k=1, item_k=1, split="temporal", valid_frac=0.1, test_frac=0.1)


def test_temporal_empty_part_fails_at_prepare():
    rows = [(f"u{u}", f"i{u}", 5) for u in range(10)]  # one timestamp: nothing before any cut-off
    with pytest.raises(DataError, match=r"train=0.*data\.valid_frac"):
        prepare(raw_from(rows), user_k=1, item_k=1, split="temporal", valid_frac=0.1, test_frac=0.1)


def test_temporal_zero_test_frac_is_a_data_error():
    rows = [("a", f"i{t}", t) for t in range(10)]
    with pytest.raises(DataError, match=r"data\.test_frac"):
        prepare(raw_from(rows), user_k=1, item_k=1, split="temporal", valid_frac=0.2, test_frac=0.0)


# ------------------------------------------------------------------ cache repair
@pytest.mark.parametrize("damage", ["checksum", "missing", "junk_meta", "list_meta", "no_meta"])
def test_corrupt_cache_is_rebuilt(toy_dir, tmp_path, damage):
    cfg = DataConfig(name="atomic:toy", path=str(toy_dir), cache_dir=str(tmp_path / "c"))
    a = load_split(cfg)
    (entry,) = list((tmp_path / "c" / "prepared").iterdir())
    if damage == "checksum":
        (entry / "train.parquet").write_bytes(b"garbage")
    elif damage == "missing":
        (entry / "test.parquet").unlink()
    elif damage == "junk_meta":
        (entry / "meta.json").write_text("{nope")
    elif damage == "list_meta":
        (entry / "meta.json").write_text(json.dumps([1, 2]))
    else:
        (entry / "meta.json").unlink()
    logs = []
    with pytest.warns(UserWarning, match=re.escape(str(entry)) + ".*rebuilt"):
        b = load_split(cfg, log=logs.append)
    assert b.fingerprint() == a.fingerprint()
    assert any("rebuilt" in m for m in logs)
    # the rebuilt entry is whole again and used without warnings
    c = load_split(cfg)
    assert c.fingerprint() == a.fingerprint()
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        [f"{t}.parquet" for t in cache_mod._TABLES] + ["meta.json"])


@pytest.mark.parametrize("where", ["to_parquet", "rename", "mkdtemp"])
def test_unwritable_cache_warns_and_returns_split(toy_dir, tmp_path, monkeypatch, where):
    def boom(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "to_parquet":
        monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    elif where == "rename":
        monkeypatch.setattr(cache_mod.Path, "rename", boom)
    else:
        monkeypatch.setattr(cache_mod.tempfile, "mkdtemp", boom)
    cfg = DataConfig(name="atomic:toy", path=str(toy_dir), cache_dir=str(tmp_path / "c"))
    with pytest.warns(UserWarning, match=r"could not write the prepared-data cache .*prepared.*No space"):
        sp = load_split(cfg)
    assert sp.n_users == 30
    prepared = tmp_path / "c" / "prepared"
    assert not prepared.exists() or list(prepared.iterdir()) == []
    monkeypatch.undo()
    assert load_split(cfg).fingerprint() == sp.fingerprint()


# ------------------------------------------------------------------ fingerprint
def test_fingerprint_same_after_cache_round_trip(toy_dir, tmp_path):
    cfg = DataConfig(name="atomic:toy", path=str(toy_dir), cache_dir=str(tmp_path / "c"))
    fresh = load_split(DataConfig(name="atomic:toy", path=str(toy_dir), cache=False))
    first = load_split(cfg)
    cached = load_split(cfg)
    fp = fresh.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", fp)
    assert first.fingerprint() == cached.fingerprint() == fp


def test_fingerprint_same_after_cache_round_trip_table(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("user,item,timestamp\n007,a,1.5\n007,b,2.25\n007,c,3\n7,a,1\n7,b,2\n7,c,3\n")
    m = tmp_path / "items.parquet"
    pd.DataFrame({"item": ["a", "b", "c"], "title": ["A", "B", None], "price": [1.5, 2, None]}).to_parquet(m)
    cfg = DataConfig(name="table", path=str(p), meta_path=str(m), user_k=1, item_k=1, cache_dir=str(tmp_path / "c"))
    a, b = load_split(cfg), load_split(cfg)
    assert a.fingerprint() == b.fingerprint()


def test_fingerprint_changes_with_any_interaction(toy_dir):
    base = load_split(DataConfig(name="atomic:toy", path=str(toy_dir), cache=False))
    fp = base.fingerprint()
    for frame in ("train", "valid", "test"):
        for col in ("item", "timestamp"):
            sp = load_split(DataConfig(name="atomic:toy", path=str(toy_dir), cache=False))
            df = getattr(sp, frame).copy()
            df.loc[0, col] = df.loc[0, col] + 1
            setattr(sp, frame, df)
            assert sp.fingerprint() != fp, (frame, col)
    sp = load_split(DataConfig(name="atomic:toy", path=str(toy_dir), cache=False))
    sp.items.loc[1, "title"] = "changed"
    assert sp.fingerprint() != fp
    # a changed source file (one timestamp) changes the fingerprint of the freshly prepared split
    inter = toy_dir / "toy.inter"
    lines = inter.read_text().splitlines()
    parts = lines[1].split("\t")
    parts[3] = str(int(parts[3]) - 1)
    inter.write_text("\n".join([lines[0], "\t".join(parts)] + lines[2:]) + "\n")
    assert load_split(DataConfig(name="atomic:toy", path=str(toy_dir), cache=False)).fingerprint() != fp
