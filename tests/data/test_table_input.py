"""Regression tests for misread generic tables (ids, timestamps, dates, item text)."""

import pandas as pd
import pytest

from semcollab.config import DataConfig
from semcollab.data import DataError, load_split, load_table, prepare


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_ids_with_leading_zeros_stay_distinct_csv(tmp_path):
    p = _write(tmp_path / "e.csv", "user,item,timestamp\n007,01,1\n7,1,2\n007,1,3\n7,01,4\n007,2,5\n7,2,6\n")
    raw = load_table(p)
    assert raw.interactions["user"].tolist() == ["007", "7", "007", "7", "007", "7"]
    assert raw.interactions["item"].tolist() == ["01", "1", "1", "01", "2", "2"]
    sp = prepare(raw, user_k=1, item_k=1)
    assert sp.n_users == 2 and sp.n_items == 3


def test_ids_with_leading_zeros_stay_distinct_tsv(tmp_path):
    p = _write(tmp_path / "e.tsv", "user\titem\ttimestamp\n007\t01\t1\n7\t1\t2\n")
    raw = load_table(p)
    assert raw.interactions["user"].tolist() == ["007", "7"]


def test_parquet_int_ids_become_plain_strings(tmp_path):
    p = tmp_path / "e.parquet"
    pd.DataFrame({"user": [7, 12], "item": ["007", "7"], "timestamp": [1, 2]}).to_parquet(p)
    raw = load_table(p)
    assert raw.interactions["user"].tolist() == ["7", "12"]
    assert raw.interactions["item"].tolist() == ["007", "7"]


def test_fractional_timestamps_keep_their_order(tmp_path):
    # the last two events are 0.3 s apart and written in reverse order
    p = _write(tmp_path / "e.csv", "user,item,timestamp\nu,a,100.0\nu,b,101.5\nu,d,102.7\nu,c,102.4\n")
    sp = load_split(DataConfig(name="table", path=str(p), user_k=1, item_k=1, cache=False))
    dec = sp.item_vocab.decode
    assert [dec(i) for i in sp.test["item"]] == ["d"]
    assert [dec(i) for i in sp.valid["item"]] == ["c"]
    assert sp.test["timestamp"].iloc[0] == pytest.approx(102.7)


def test_fractional_timestamps_survive_the_cache(tmp_path):
    p = _write(tmp_path / "e.csv", "user,item,timestamp\nu,a,100.0\nu,b,101.5\nu,d,102.7\nu,c,102.4\n")
    cfg = DataConfig(name="table", path=str(p), user_k=1, item_k=1, cache_dir=str(tmp_path / "c"))
    a = load_split(cfg)
    b = load_split(cfg)
    assert b.test["timestamp"].tolist() == a.test["timestamp"].tolist() == [102.7]
    sp = load_split(DataConfig(name="table", path=str(p), user_k=1, item_k=1, cache_dir=str(tmp_path / "c"),
                               split="temporal", valid_frac=0.25, test_frac=0.25))
    assert sp.item_vocab.decode(int(sp.test["item"].iloc[0])) == "d"


def test_integer_timestamps_stay_int64(tmp_path):
    p = _write(tmp_path / "e.csv", "user,item,timestamp\nu,a,1\nu,b,2\nu,c,3\n")
    sp = load_split(DataConfig(name="table", path=str(p), user_k=1, item_k=1, cache=False))
    assert sp.train["timestamp"].dtype == "int64"


def test_iso_dates_are_parsed_with_subsecond_precision(tmp_path):
    p = _write(tmp_path / "e.csv", "user,item,timestamp\n"
               "u,a,2020-01-02\nu,b,2020-01-02T10:00:00\nu,d,2020-01-02T10:00:00.700\nu,c,2020-01-02T10:00:00.400\n")
    raw = load_table(p)
    ts = raw.interactions["timestamp"].tolist()
    assert ts[0] == 1577923200 and ts[1] == 1577923200 + 36000
    assert ts[2] == pytest.approx(1577923200 + 36000.7)
    sp = prepare(raw, user_k=1, item_k=1)
    assert sp.item_vocab.decode(int(sp.test["item"].iloc[0])) == "d"


def test_whole_second_dates_give_int_seconds(tmp_path):
    p = _write(tmp_path / "e.csv", "user,item,timestamp\nu,a,2020-01-02\nu,b,2020-01-03 00:00:01\n")
    raw = load_table(p)
    assert raw.interactions["timestamp"].tolist() == [1577923200, 1578009601]


def test_partly_unparseable_dates_name_the_first_bad_row(tmp_path):
    p = _write(tmp_path / "e.csv", "user,item,timestamp\nu,a,2020-01-02\nu,b,2020-01-03\nu,c,not a date\nu,d,soon\n")
    with pytest.raises(DataError, match=r"e\.csv.*'timestamp'.*row 2.*not a date"):
        load_table(p)


def test_numbers_mixed_with_dates_are_rejected(tmp_path):
    p = _write(tmp_path / "e.csv", "user,item,timestamp\nu,a,2020-01-02\nu,b,1577923200\n")
    with pytest.raises(DataError, match=r"e\.csv.*'timestamp'.*row 1"):
        load_table(p)


def test_non_numeric_time_names_file_and_row(tmp_path):
    p = _write(tmp_path / "e.csv", "user,item,timestamp\nu,a,1\nu,b,yesterday\n")
    with pytest.raises(DataError, match=r"e\.csv.*'timestamp'.*row 1.*yesterday"):
        load_table(p)


def test_infinite_timestamp_rejected(tmp_path):
    p = _write(tmp_path / "e.csv", "user,item,timestamp\nu,a,1\nu,b,inf\n")
    with pytest.raises(DataError, match=r"'timestamp'.*row 1"):
        load_split(DataConfig(name="table", path=str(p), user_k=1, item_k=1, cache=False))


def test_empty_id_cell_names_file_and_row(tmp_path):
    p = _write(tmp_path / "e.csv", "user,item,timestamp\nu,a,1\n,b,2\n")
    with pytest.raises(DataError, match=r"e\.csv.*'user'.*row 1"):
        load_table(p)


def test_item_table_text_columns_used_by_default(tmp_path):
    p = _write(tmp_path / "e.csv", "user,item,timestamp\nu,007,1\nu,7,2\nu,8,3\n")
    m = _write(tmp_path / "items.csv", "item,title,year\n007,Bond,1962\n7,Seven,1995\n8,Eight,\n")
    raw = load_table(p, items_path=m)
    assert raw.text_fields == ["title", "year"]
    sp = prepare(raw, user_k=1, item_k=1)
    texts = dict(zip(sp.item_vocab.ids, sp.item_texts()))
    assert "Bond" in texts["007"] and "Seven" in texts["7"] and "1995" in texts["7"]
    assert "Eight" in texts["8"]


def test_item_table_parquet_numeric_ids_join(tmp_path):
    p = tmp_path / "e.parquet"
    pd.DataFrame({"user": ["u", "u", "u"], "item": [1, 2, 3], "timestamp": [1, 2, 3]}).to_parquet(p)
    m = tmp_path / "items.parquet"
    pd.DataFrame({"item": [1, 2, 3], "title": ["A", "B", "C"], "price": [1.5, 2.0, None]}).to_parquet(m)
    raw = load_table(p, items_path=m)
    assert raw.text_fields == ["title", "price"]
    sp = prepare(raw, user_k=1, item_k=1)
    assert sp.items.set_index("item").loc["2", "title"] == "B"
    assert sp.items.set_index("item").loc["3", "price"] == ""


def test_item_table_duplicate_id_names_file_and_row(tmp_path):
    p = _write(tmp_path / "e.csv", "user,item,timestamp\nu,1,1\n")
    m = _write(tmp_path / "items.csv", "item,title\n1,A\n2,B\n1,C\n")
    with pytest.raises(DataError, match=r"items\.csv.*'item'.*row 2"):
        load_table(p, items_path=m)


def test_same_column_for_two_roles_rejected(tmp_path):
    p = _write(tmp_path / "e.csv", "user,item,timestamp\nu,1,1\n")
    with pytest.raises(DataError, match="same column"):
        load_table(p, "user", "user", "timestamp")


def test_parquet_datetime_column_keeps_subseconds(tmp_path):
    p = tmp_path / "e.parquet"
    when = pd.to_datetime(["2020-01-02 10:00:00.700", "2020-01-02 10:00:00.400", "2020-01-02"], format="ISO8601").as_unit("ms")
    pd.DataFrame({"user": ["u"] * 3, "item": ["d", "c", "a"], "timestamp": when}).to_parquet(p)
    raw = load_table(p)
    assert raw.interactions["timestamp"].tolist() == pytest.approx([1577959200.7, 1577959200.4, 1577923200.0])
    sp = prepare(raw, user_k=1, item_k=1)
    assert sp.item_vocab.decode(int(sp.test["item"].iloc[0])) == "d"


def test_parquet_nullable_int_timestamp_with_gap(tmp_path):
    p = tmp_path / "e.parquet"
    pd.DataFrame({"user": ["u", "u"], "item": ["a", "b"],
                  "timestamp": pd.array([1, None], dtype="Int64")}).to_parquet(p)
    with pytest.raises(DataError, match=r"e\.parquet.*'timestamp'.*row 1"):
        load_table(p)


def test_time_column_in_other_single_date_format(tmp_path):
    p = _write(tmp_path / "e.csv", "user,item,timestamp\nu,a,01/02/2020\nu,b,01/03/2020\n")
    assert load_table(p).interactions["timestamp"].tolist() == [1577923200, 1578009600]
