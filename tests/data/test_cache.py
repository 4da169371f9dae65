import pytest

from semcollab.config import DataConfig
from semcollab.data import CacheError, load_split


def test_cache_hit_and_key_changes(toy_dir, tmp_path):
    cfg = DataConfig(name="atomic:toy", path=str(toy_dir), cache_dir=str(tmp_path / "c"))
    a = load_split(cfg)
    entries = list((tmp_path / "c" / "prepared").iterdir())
    assert len(entries) == 1
    b = load_split(cfg)
    assert a.stats == b.stats and (a.train.values == b.train.values).all()
    load_split(DataConfig(name="atomic:toy", path=str(toy_dir), cache_dir=str(tmp_path / "c"), user_k=6))
    assert len(list((tmp_path / "c" / "prepared").iterdir())) == 2
    # a changed source file gives a new key too
    (toy_dir / "toy.item").write_text((toy_dir / "toy.item").read_text().replace("Movie 3", "Film 3"))
    c = load_split(cfg)
    assert len(list((tmp_path / "c" / "prepared").iterdir())) == 3
    assert "Film 3" in c.items["title"].tolist()


def test_corrupt_cache_is_reported_not_reused(toy_dir, tmp_path):
    from semcollab.data.cache import load_split_cache

    cfg = DataConfig(name="atomic:toy", path=str(toy_dir), cache_dir=str(tmp_path / "c"))
    load_split(cfg)
    (entry,) = list((tmp_path / "c" / "prepared").iterdir())
    (entry / "train.parquet").write_bytes(b"garbage")
    with pytest.raises(CacheError, match="damaged"):
        load_split_cache(entry)
    with pytest.warns(UserWarning, match="damaged.*rebuilt"):  # load_split repairs it
        load_split(cfg)
