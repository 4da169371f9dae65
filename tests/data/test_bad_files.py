"""Every file-reading loader turns unreadable input into a DataError that names the file."""

import gzip
import json
import zipfile

import pandas as pd
import pytest

from semcollab.config import DataConfig
from semcollab.data import (
    DataError,
    load_amazon,
    load_collm_ctr,
    load_ml1m_raw,
    load_ml100k_raw,
    load_recbole_atomic,
    load_s3rec,
    load_split,
    load_table,
)
from semcollab.data.sources.atomic import read_atomic
from semcollab.data.sources.files import read_table

JUNK = bytes(range(256)) * 4
LATIN1 = "user,item,timestamp\nJosé,a,1\n".encode("latin-1")


# ------------------------------------------------------------------ read_table / load_table
@pytest.mark.parametrize("name", ["e.csv", "e.tsv", "e.parquet"])
def test_table_empty_file(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"")
    with pytest.raises(DataError, match=rf"{name}.*empty"):
        read_table(p)


@pytest.mark.parametrize("name", ["e.csv", "e.parquet"])
def test_table_binary_garbage(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(JUNK)
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        read_table(p)


def test_table_non_utf8(tmp_path):
    p = tmp_path / "e.csv"
    p.write_bytes(LATIN1)
    with pytest.raises(DataError, match=r"e\.csv.*UTF-8.*line 2"):
        read_table(p)


def test_table_gzip_without_gz_suffix_is_read(tmp_path):
    p = tmp_path / "e.csv"
    p.write_bytes(gzip.compress(b"user,item,timestamp\n007,a,1\n"))
    raw = load_table(p)
    assert raw.interactions["user"].tolist() == ["007"]


def test_table_truncated_gzip(tmp_path):
    p = tmp_path / "e.csv.gz"
    p.write_bytes(gzip.compress(b"user,item,timestamp\n" + b"1,a,1\n" * 1000)[:40])
    with pytest.raises(DataError, match=r"e\.csv\.gz.*gzip"):
        read_table(p)


def test_table_parquet_content_in_csv_name_is_read(tmp_path):
    p = tmp_path / "e.csv"
    pd.DataFrame({"user": ["007"], "item": ["a"], "timestamp": [1]}).to_parquet(p)
    assert load_table(p).interactions["user"].tolist() == ["007"]


def test_table_folder_instead_of_file(tmp_path):
    (tmp_path / "e.csv").mkdir()
    with pytest.raises(DataError, match=r"e\.csv.*folder"):
        read_table(tmp_path / "e.csv")


def test_table_header_only(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("user,item,timestamp\n")
    with pytest.raises(DataError, match=r"e\.csv.*no interactions"):
        load_split(DataConfig(name="table", path=str(p), cache=False))


def test_table_wrong_delimiter_hint(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("user;item;timestamp\nu;a;1\n")
    with pytest.raises(DataError, match=r"e\.csv.*missing column.*';'"):
        load_table(p)


def test_table_rows_with_extra_fields_not_shifted(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("user,item,timestamp\nu,a,1,x\nu,b,2,y\n")
    with pytest.raises(DataError, match=r"e\.csv"):
        load_table(p)


def test_table_ragged_row(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("user,item,timestamp\nu,a,1\nu,b,2,9\n")
    with pytest.raises(DataError, match=r"e\.csv.*line 3"):
        load_table(p)


def test_table_truncated_last_row(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("user,item,timestamp\nu,a,1\nu,b")
    with pytest.raises(DataError, match=r"e\.csv.*'timestamp'.*row 1"):
        load_table(p)


def test_table_nul_bytes(tmp_path):
    p = tmp_path / "e.csv"
    p.write_bytes(b"user,item,timestamp\nu,a,1\nu,b\x00\x01,2\n")
    with pytest.raises(DataError, match=r"e\.csv.*binary.*line 3"):
        read_table(p)


# ------------------------------------------------------------------ RecBole atomic
def test_atomic_empty_and_folder_and_non_utf8(tmp_path):
    p = tmp_path / "x.inter"
    p.write_bytes(b"")
    with pytest.raises(DataError, match=r"x\.inter.*empty"):
        read_atomic(p)
    p.write_bytes("user_id:token\titem_id:token\ttimestamp:float\nJosé\t1\t1\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"x\.inter.*UTF-8"):
        read_atomic(p)
    p.unlink()
    p.mkdir()
    with pytest.raises(DataError, match=r"x\.inter.*folder"):
        read_atomic(p)


def test_atomic_gzip_without_suffix(tmp_path):
    d = tmp_path / "toy"
    d.mkdir()
    (d / "toy.inter").write_bytes(gzip.compress(b"user_id:token\titem_id:token\ttimestamp:float\n07\t1\t1\n"))
    raw = load_recbole_atomic(d, "toy")
    assert raw.interactions["user"].tolist() == ["07"]


def test_atomic_file_instead_of_folder(tmp_path):
    f = tmp_path / "toy"
    f.write_text("x")
    with pytest.raises(DataError, match=r"toy.*not a folder"):
        load_recbole_atomic(f, "toy")


# ------------------------------------------------------------------ S3-Rec
def test_s3rec_bad_files(tmp_path):
    p = tmp_path / "T.txt"
    p.write_bytes(b"")
    with pytest.raises(DataError, match=r"T\.txt.*empty"):
        load_s3rec(p)
    p.write_bytes(JUNK)
    with pytest.raises(DataError, match=r"T\.txt"):
        load_s3rec(p)
    p.write_bytes("1 2 3\n2 3 4 é\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"T\.txt.*UTF-8.*line 2"):
        load_s3rec(p)
    p.write_bytes(gzip.compress(b"1 5 6\n2 6 7\n"))
    assert len(load_s3rec(p).interactions) == 4
    p.unlink()
    p.mkdir()
    with pytest.raises(DataError, match=r"T\.txt.*folder"):
        load_s3rec(p)


def test_s3rec_bad_attribute_json(tmp_path):
    (tmp_path / "T.txt").write_text("1 5 6\n")
    (tmp_path / "T_item2attributes.json").write_text("{not json")
    with pytest.raises(DataError, match=r"T_item2attributes\.json"):
        load_s3rec(tmp_path / "T.txt")
    (tmp_path / "T_item2attributes.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"T_item2attributes\.json"):
        load_s3rec(tmp_path / "T.txt")


# ------------------------------------------------------------------ Amazon JSON lines
def test_amazon_bad_files(tmp_path):
    p = tmp_path / "r.json"
    p.write_bytes(b"")
    with pytest.raises(DataError, match=r"r\.json.*empty"):
        load_amazon(p)
    p.write_bytes(JUNK)
    with pytest.raises(DataError, match=r"r\.json"):
        load_amazon(p)
    p.write_bytes(json.dumps({"reviewerID": "Zoë", "asin": "X", "unixReviewTime": 1}).encode("utf-8")
                  + b"\n" + '{"reviewerID": "é"}'.encode("latin-1"))
    with pytest.raises(DataError, match=r"r\.json.*UTF-8.*line 2"):
        load_amazon(p)
    p.write_bytes(gzip.compress(json.dumps({"reviewerID": "A", "asin": "X", "unixReviewTime": 1}).encode() + b"\n"))
    assert load_amazon(p).interactions["item"].tolist() == ["X"]
    p.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=r"r\.json.*line 0.*not an object"):
        load_amazon(p)
    p.unlink()
    p.mkdir()
    with pytest.raises(DataError, match=r"r\.json.*folder"):
        load_amazon(p)


def test_amazon_bad_meta(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"reviewerID": "A", "asin": "X", "unixReviewTime": 1}) + "\n")
    m = tmp_path / "m.json"
    m.write_bytes(b"\x00\x01\x02garbage")
    with pytest.raises(DataError, match=r"m\.json"):
        load_amazon(p, m)


# ------------------------------------------------------------------ MovieLens
def test_ml100k_bad_files(tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    (d / "u.data").write_bytes(b"")
    with pytest.raises(DataError, match=r"u\.data.*empty"):
        load_ml100k_raw(d)
    (d / "u.data").write_bytes(JUNK)
    with pytest.raises(DataError, match=r"u\.data"):
        load_ml100k_raw(d)
    (d / "u.data").write_bytes(gzip.compress(b"1\t10\t4\t100\n"))
    assert load_ml100k_raw(d).interactions["item"].tolist() == ["10"]
    (d / "u.data").write_text("1\t10\t4\t100\t7\n2\t10\t3\t200\t8\n")  # a fifth column must not shift ids
    with pytest.raises(DataError, match=r"u\.data"):
        load_ml100k_raw(d)
    (d / "u.data").write_text("1\t10\t4\t100\n")
    (d / "u.item").write_text("10|Film|x\n")
    with pytest.raises(DataError, match=r"u\.item"):
        load_ml100k_raw(d)
    flags = "|".join(["0"] * 18 + ["x"])
    (d / "u.item").write_text(f"10|Film|01-Jan-1995||http://x|{flags}\n")
    with pytest.raises(DataError, match=r"u\.item.*row 0"):
        load_ml100k_raw(d)
    (d / "u.item").unlink()
    (d / "u.data").unlink()
    (d / "u.data").mkdir()
    with pytest.raises(DataError, match=r"u\.data.*folder"):
        load_ml100k_raw(d)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        load_ml100k_raw(f)


def test_ml1m_bad_files(tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    (d / "ratings.dat").write_bytes(b"")
    with pytest.raises(DataError, match=r"ratings\.dat.*empty"):
        load_ml1m_raw(d)
    (d / "ratings.dat").write_bytes(JUNK)
    with pytest.raises(DataError, match=r"ratings\.dat"):
        load_ml1m_raw(d)
    (d / "ratings.dat").write_bytes(gzip.compress(b"1::2::5::978300760\n"))
    assert load_ml1m_raw(d).interactions["item"].tolist() == ["2"]
    (d / "ratings.dat").write_text("1::2::5::978300760\n")
    (d / "movies.dat").write_text("2::Film\n")
    with pytest.raises(DataError, match=r"movies\.dat.*row 0"):
        load_ml1m_raw(d)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        load_ml1m_raw(f)


# ------------------------------------------------------------------ CoLLM pickles
def test_collm_bad_files(tmp_path):
    z = tmp_path / "ml-1m.zip"
    z.write_bytes(b"")
    with pytest.raises(DataError, match=r"ml-1m\.zip.*empty"):
        load_collm_ctr(z)
    z.write_bytes(JUNK)
    with pytest.raises(DataError, match=r"ml-1m\.zip"):
        load_collm_ctr(z)
    with zipfile.ZipFile(z, "w") as zf:
        for s in ("train", "valid", "test"):
            zf.writestr(f"{s}_ood2.pkl", b"not a pickle")
    with pytest.raises(DataError, match=r"ml-1m\.zip.*train_ood2\.pkl"):
        load_collm_ctr(z, allow_pickle=True)
    d = tmp_path / "folder"
    d.mkdir()
    df = pd.DataFrame({"uid": [1], "iid": [3], "label": [1], "timestamp": [1], "title": ["A"]})
    for s in ("train", "valid", "test"):
        (d / f"{s}_ood2.pkl").write_bytes(gzip.compress(_pickle_bytes(df)))
    assert len(load_collm_ctr(d, allow_pickle=True).train) == 1
    (d / "train_ood2.pkl").write_bytes(_pickle_bytes([1, 2]))
    with pytest.raises(DataError, match=r"train_ood2\.pkl.*DataFrame"):
        load_collm_ctr(d, allow_pickle=True)


def _pickle_bytes(obj):
    import pickle

    return pickle.dumps(obj)
