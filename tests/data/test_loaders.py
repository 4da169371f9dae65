import gzip
import json
import zipfile

import pandas as pd
import pytest

from semcollab.data import (
    DataError,
    load_amazon,
    load_collm_ctr,
    load_ml1m_raw,
    load_ml100k_raw,
    load_recbole_atomic,
    load_s3rec,
    load_table,
)


def test_recbole_atomic_reads_text_fields(toy_dir):
    raw = load_recbole_atomic(toy_dir, "toy")
    assert set(raw.interactions.columns) == {"user", "item", "rating", "timestamp"}
    assert raw.text_fields == ["title", "genres"]
    assert raw.items.loc[raw.items["item"] == "3", "title"].item() == "Movie 3"


def test_ml100k_from_recbole_wheel(ml100k_dir):
    raw = load_recbole_atomic(ml100k_dir, "ml-100k")
    assert len(raw.interactions) == 100_000
    assert raw.interactions["user"].nunique() == 943
    assert "Toy Story" in set(raw.items["title"])


def test_ml100k_raw_format(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t4\t100\n2\t10\t3\t200\n")
    flags = "|".join(["0"] * 18 + ["1"])
    (tmp_path / "u.item").write_text(f"10|Some Film (1995)|01-Jan-1995||http://x|{flags}\n", encoding="latin-1")
    raw = load_ml100k_raw(tmp_path)
    assert raw.items["genres"].tolist() == ["Western"]
    assert len(raw.interactions) == 2


def test_ml100k_raw_rejects_non_numeric_id(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t4\t100\nx7\t10\t3\t200\n")
    with pytest.raises(DataError, match="column 'user' must hold integer ids; row 1 has 'x7'"):
        load_ml100k_raw(tmp_path)


def test_ml1m_raw_rejects_bad_row(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::2::5::978300760\n1::3::5\n", encoding="latin-1")
    with pytest.raises(DataError, match="row 1"):
        load_ml1m_raw(tmp_path)


def test_s3rec_positions_are_time_and_attributes_are_text(tmp_path):
    (tmp_path / "Tiny.txt").write_text("1 5 6 7\n2 6 7 8 9\n")
    (tmp_path / "Tiny_item2attributes.json").write_text(json.dumps({"5": [1, 2], "6": [3]}))
    raw = load_s3rec(tmp_path / "Tiny.txt")
    u2 = raw.interactions[raw.interactions["user"] == "2"]
    assert u2["item"].tolist() == ["6", "7", "8", "9"] and u2["timestamp"].tolist() == [0, 1, 2, 3]
    # without an item CSV the attribute ids are the text, rendered as before the CSVs existed
    assert raw.items.set_index("item").loc["5", "attribute_ids"] == "a1 a2"
    assert raw.text_fields == ["attribute_ids"] and raw.default_template == "attributes: attributes {attribute_ids}"
    from semcollab.data import prepare

    sp = prepare(raw, user_k=1, item_k=1)
    texts = dict(zip(sp.item_vocab.ids, sp.render_texts()))
    assert texts == {"5": "attributes: attributes a1 a2", "6": "attributes: attributes a3", "7": "attributes: attributes",
                     "8": "attributes: attributes", "9": "attributes: attributes"}


def test_s3rec_rejects_user_without_items(tmp_path):
    (tmp_path / "Bad.txt").write_text("1 5 6\n2\n")
    with pytest.raises(DataError, match="line 1"):
        load_s3rec(tmp_path / "Bad.txt")


def test_s3rec_shared_beauty(shared_dir):
    raw = load_s3rec(shared_dir / "data/s3rec/Beauty.txt")
    assert raw.interactions["user"].nunique() == 22363
    assert raw.interactions["item"].nunique() == 12101


def test_amazon_2014_and_2018_records(tmp_path):
    reviews = tmp_path / "reviews.json.gz"
    with gzip.open(reviews, "wt") as fh:
        fh.write(json.dumps({"reviewerID": "A", "asin": "X1", "unixReviewTime": 10, "overall": 5.0}) + "\n")
        fh.write(json.dumps({"reviewerID": "A", "asin": "X2", "unixReviewTime": 20, "overall": 4.0}) + "\n")
    meta = tmp_path / "meta.json"
    # 2014 metadata is a Python literal (single quotes); 2018 is JSON with 'category'
    meta.write_text("{'asin': 'X1', 'title': 'Red Lipstick', 'categories': [['Beauty', 'Makeup']], 'brand': 'B'}\n"
                    + json.dumps({"asin": "X2", "title": "Shampoo", "category": ["Beauty", "Hair"], "description": ["Mild"]}) + "\n")
    raw = load_amazon(reviews, meta)
    items = raw.items.set_index("item")
    assert items.loc["X1", "categories"] == "Beauty, Makeup"
    assert items.loc["X2", "description"] == "Mild"
    assert raw.interactions["rating"].tolist() == [5.0, 4.0]


def test_amazon_missing_column(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"reviewerID": "A", "asin": "X"}) + "\n")
    with pytest.raises(DataError, match="unixReviewTime"):
        load_amazon(p)


def test_table_loader_named_columns_and_missing(tmp_path):
    p = tmp_path / "events.parquet"
    pd.DataFrame({"uid": [1, 1], "sku": ["a", "b"], "when": [1, 2]}).to_parquet(p)
    raw = load_table(p, "uid", "sku", "when")
    assert raw.interactions["item"].tolist() == ["a", "b"]
    with pytest.raises(DataError, match=r"missing column\(s\) \['ts'\]"):
        load_table(p, "uid", "sku", "ts")


def test_collm_ctr_pickles(tmp_path):
    df = pd.DataFrame({"uid": [1, 1, 2], "iid": [3, 4, 3], "label": [1, 0, 1], "timestamp": [1, 2, 3],
                       "his": [[0]] * 3, "his_title": [[]] * 3, "title": ["A", "B", "A"], "flag": 0.0,
                       "not_cold": [1, 0, 1]})
    z = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for s in ("train", "valid", "test"):
            buf = tmp_path / f"{s}.pkl"
            df.to_pickle(buf)
            zf.write(buf, f"ml-1m/{s}_ood2.pkl")
    ctr = load_collm_ctr(z, allow_pickle=True)
    assert ctr.test["warm"].tolist() == [True, False, True]
    assert set(ctr.items["title"]) == {"A", "B"}


def test_collm_shared(shared_dir):
    ctr = load_collm_ctr(shared_dir / "data/collm/ml-1m.zip")
    assert len(ctr.train) == 33891 and len(ctr.test) == 7331
    assert set(ctr.train["label"].unique()) == {0, 1}
