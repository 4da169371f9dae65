import numpy as np
import pandas as pd
import pytest

from semcollab.data import DataError, RawDataset, prepare
from semcollab.data.filters import k_core
from semcollab.data.schema import validate_interactions


def raw_from(rows, items=None):
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    items = items if items is not None else pd.DataFrame({"item": inter["item"].astype(str).unique()})
    return RawDataset("t", inter, items, [])


def test_k_core_is_iterative():
    # a: x y z, b: x y, c: z.  Pass 1 drops user c (1 event); only then does item z fall to 1 user,
    # so pass 2 drops a's z. A single simultaneous pass would keep (a, z).
    df = pd.DataFrame({"user": list("aaabbc"), "item": list("xyzxyz")})
    out = k_core(df, user_k=2, item_k=2)
    assert sorted(zip(out["user"], out["item"])) == [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]


def test_k_core_removing_everything_is_an_error():
    with pytest.raises(DataError, match="removed every interaction"):
        k_core(pd.DataFrame({"user": ["a"], "item": ["x"]}), 5, 5)


def test_loo_split_is_chronological_and_leak_free():
    rows = [("u1", "a", 3), ("u1", "b", 1), ("u1", "c", 2), ("u1", "d", 4), ("u2", "a", 1), ("u2", "b", 2), ("u2", "c", 3)]
    sp = prepare(raw_from(rows), user_k=1, item_k=1)
    dec = sp.item_vocab.decode
    u1 = sp.user_vocab.encode("u1")
    assert [dec(i) for i in sp.train_sequences()[u1]] == ["b", "c"]
    ev = sp.eval_set("valid")
    assert [dec(i) for i in ev.targets[list(ev.users).index(u1)]] == ["a"]
    ev = sp.eval_set("test")
    i = list(ev.users).index(u1)
    assert [dec(x) for x in ev.histories[i]] == ["b", "c", "a"] and [dec(x) for x in ev.targets[i]] == ["d"]
    # per user, every training event precedes the validation event, which precedes the test event
    last_train = sp.train.groupby("user")["timestamp"].max()
    assert (last_train < sp.valid.set_index("user")["timestamp"].reindex(last_train.index)).all()
    assert (sp.valid.set_index("user")["timestamp"] < sp.test.set_index("user")["timestamp"]).all()
    assert sp.item_popularity()[0] == 0


def test_temporal_split_keeps_cutoff_ties_together():
    rows = [(f"u{u}", f"i{t % 5}", t) for u in range(4) for t in range(10)]
    sp = prepare(raw_from(rows), user_k=1, item_k=1, split="temporal", valid_frac=0.2, test_frac=0.2)
    assert sp.train["timestamp"].max() < sp.valid["timestamp"].min()
    assert sp.valid["timestamp"].max() < sp.test["timestamp"].min()
    ev = sp.eval_set("test")
    assert all(len(t) >= 1 for t in ev.targets)


def test_loo_needs_three_events():
    with pytest.raises(DataError, match="user 'u2' has 2"):
        prepare(raw_from([("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u2", "a", 1), ("u2", "b", 2)]), user_k=1, item_k=1)


def test_bad_input_messages_name_column_and_row():
    df = pd.DataFrame({"user": ["a", "b", None], "item": ["x", "y", "z"], "timestamp": [1, 2, 3]})
    with pytest.raises(DataError, match="column 'user'.*row 2"):
        validate_interactions(df, "f.csv")
    df = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "timestamp": [1, "yesterday"]})
    with pytest.raises(DataError, match="timestamp.*row 1.*yesterday"):
        validate_interactions(df, "f.csv")
    with pytest.raises(DataError, match="missing column"):
        validate_interactions(pd.DataFrame({"user": [1]}), "f.csv")
    with pytest.raises(DataError, match="empty"):
        validate_interactions(pd.DataFrame({"user": [], "item": [], "timestamp": []}), "f.csv")


def test_duplicate_policy():
    df = pd.DataFrame({"user": ["a", "a", "a"], "item": ["x", "x", "y"], "timestamp": [1, 1, 2]})
    with pytest.raises(DataError, match="1 duplicate.*row 1"):
        validate_interactions(df, "f.csv")
    out, n = validate_interactions(df, "f.csv", duplicates="drop")
    assert n == 1 and len(out) == 2
    out, n = validate_interactions(df, "f.csv", duplicates="keep")
    assert n == 0 and len(out) == 3


def test_unknown_id_at_inference(toy_split):
    from semcollab.data import UnknownIdError

    with pytest.raises(UnknownIdError, match="unknown item id 'nope'"):
        toy_split.item_vocab.encode("nope")
    assert toy_split.item_vocab.decode(toy_split.item_vocab.encode("7")) == "7"


def test_item_text_rows_align_with_indices(toy_split):
    texts = toy_split.item_texts()
    assert len(texts) == toy_split.n_items
    idx = toy_split.item_vocab.encode("5")
    assert texts[idx - 1].startswith("title: Movie 5")
    assert np.all(toy_split.items["item"].iloc[1:].to_numpy() == toy_split.item_vocab.ids)
