"""CoLLM CTR pickles: per-row history (0-padding removed, time order) and titles of every item seen."""

import zipfile

import numpy as np
import pandas as pd
import pytest

from semcollab.data import DataError, load_collm_ctr


def _zip(tmp_path, frames):
    z = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for split, df in frames.items():
            buf = tmp_path / f"{split}.pkl"
            df.to_pickle(buf)
            zf.write(buf, f"ml-1m/{split}_ood2.pkl")
    return z


def _frames():
    # user 1 likes 10 then 11, dislikes 12; item 99 appears only in a history (with its title)
    train = pd.DataFrame({
        "uid": [1, 1, 1, 2], "iid": [10, 11, 12, 10], "label": [1, 1, 0, 1], "timestamp": [1, 2, 3, 1],
        "his": [[0], [0, np.int64(10)], [0, np.int64(10), np.int64(11)], [0, 99]],
        "his_title": [[""], ["", "Ten"], ["", "Ten", "Eleven"], ["", "Ninety-nine"]],
        "title": ["Ten", "Eleven", "Twelve", "Ten"], "flag": -1.0, "not_cold": [1, 1, 1, 1]})
    valid = pd.DataFrame({
        "uid": [1], "iid": [13], "label": [1], "timestamp": [4], "his": [[0, 10, 11]],
        "his_title": [["", "Ten", "Eleven"]], "title": ["Thirteen"], "flag": -1.0, "not_cold": [0]})
    test = pd.DataFrame({
        "uid": [1, 2], "iid": [14, 11], "label": [0, 1], "timestamp": [5, 2], "his": [[0, 10, 11, 13], [0, 99, 10]],
        "his_title": [["", "Ten", "Eleven", "Thirteen"], ["", "Ninety-nine", "Ten"]], "title": ["Fourteen", "Eleven"],
        "flag": -1.0, "not_cold": [0, 1]})
    return {"train": train, "valid": valid, "test": test}


def test_history_lists_without_padding_and_titles_of_all_items(tmp_path):
    ctr = load_collm_ctr(_zip(tmp_path, _frames()), allow_pickle=True)
    assert ctr.train["history"].tolist() == [[], ["10"], ["10", "11"], ["99"]]
    assert ctr.valid["history"].tolist() == [["10", "11"]]
    assert ctr.test["history"].tolist() == [["10", "11", "13"], ["99", "10"]]
    assert ctr.test["warm"].tolist() == [False, True] and ctr.valid["warm"].tolist() == [False]
    titles = dict(zip(ctr.items["item"], ctr.items["title"]))
    assert titles == {"10": "Ten", "11": "Eleven", "12": "Twelve", "13": "Thirteen", "14": "Fourteen",
                      "99": "Ninety-nine"}
    assert ctr.stats == {"train_history_max": 2, "train_history_mean": 1.0, "valid_history_max": 2,
                         "valid_history_mean": 2.0, "test_history_max": 3, "test_history_mean": 2.5}


def test_his_title_may_leave_out_the_padding(tmp_path):
    frames = _frames()
    frames["train"]["his_title"] = [[], ["Ten"], ["Ten", "Eleven"], ["Ninety-nine"]]
    ctr = load_collm_ctr(_zip(tmp_path, frames), allow_pickle=True)
    assert ctr.train["history"].tolist()[2] == ["10", "11"]
    assert ctr.items.set_index("item").loc["99", "title"] == "Ninety-nine"


def test_without_his_columns_there_is_no_history(tmp_path):
    frames = {k: v.drop(columns=["his", "his_title"]) for k, v in _frames().items()}
    ctr = load_collm_ctr(_zip(tmp_path, frames), allow_pickle=True)
    assert "history" not in ctr.train.columns and ctr.stats == {}
    assert set(ctr.items["item"]) == {"10", "11", "12", "13", "14"}


@pytest.mark.parametrize("column, row, value, message", [
    ("his", 1, [10, 0, 11], r"train_ood2\.pkl: column 'his' row 1 has the padding id 0 after a real item"),
    ("his", 2, "10 11", r"train_ood2\.pkl: column 'his' row 2 is a str, not a list"),
    ("his", 0, [0, 1.5], r"train_ood2\.pkl: column 'his' row 0 holds a non-id value 1\.5"),
    ("his_title", 2, ["Ten"], r"train_ood2\.pkl: row 2: 'his_title' \(1\) does not align with 'his' \(3 ids, 1 of "
                              r"them padding\)"),
])
def test_bad_histories_are_data_errors(tmp_path, column, row, value, message):
    frames = _frames()
    frames["train"].at[row, column] = value
    with pytest.raises(DataError, match=message):
        load_collm_ctr(_zip(tmp_path, frames), allow_pickle=True)


def test_shared_collm_histories(shared_dir):
    ctr = load_collm_ctr(shared_dir / "data/collm/ml-1m.zip")
    assert ctr.stats == {"train_history_max": 338, "train_history_mean": 37.68, "valid_history_max": 345,
                         "valid_history_mean": 57.76, "test_history_max": 445, "test_history_mean": 74.82}
    # `his` is the user's earlier positive items, oldest first: rebuild it from the rows themselves
    rows = pd.concat([ctr.train, ctr.valid, ctr.test], ignore_index=True)
    rows = rows.assign(ts=rows["timestamp"]).sort_values(["user", "ts"], kind="stable")
    for _, g in list(rows.groupby("user"))[:200]:
        liked = []
        for item, label, hist in zip(g["item"], g["label"], g["history"]):
            assert hist == liked
            if label == 1:
                liked = liked + [item]
    seen = {i for f in (ctr.train, ctr.valid, ctr.test) for h in f["history"] for i in h} | set(rows["item"])
    assert set(ctr.items["item"]) == seen and (ctr.items["title"] != "").all()
    assert ctr.items.set_index("item").loc["1", "title"] == "Shawshank Redemption, The (1994)"
