"""CTR task: data preparation, metrics on all/warm/cold rows, the embedding models learning, runs saved."""

import numpy as np
import pandas as pd
import pytest

from semcollab.config.ctr import CTRTrainConfig
from semcollab.data import CTRData
from semcollab.data.ctr import CTRPart
from semcollab.evaluation.ctr import group_metrics
from semcollab.tasks.ctr import build_ctr_model, ctr_report, fit_ctr, predict, prepare_ctr
from tests.conftest import Killed, kill_after


def toy_ctr(n_users=30, n_items=20, rows=400, seed=0) -> CTRData:
    """Users like items of their own parity: a pattern MF can learn; items 19-20 appear only in test (cold)."""
    rng = np.random.default_rng(seed)

    def frame(n, items):
        u = rng.integers(1, n_users + 1, n)
        i = rng.choice(items, n)
        label = ((u % 2) == (i % 2)).astype(int)
        hist = [[str(x) for x in rng.choice(np.arange(1, 19), rng.integers(0, 6))] for _ in range(n)]
        return pd.DataFrame({"user": u.astype(str), "item": i.astype(str), "label": label,
                             "timestamp": np.arange(n), "history": hist})

    train = frame(rows, np.arange(1, 19))
    valid = frame(rows // 4, np.arange(1, 19))
    test = frame(rows // 4, np.arange(1, 21))
    for f in (valid, test):
        f["warm"] = f["item"].isin(set(train["item"]))
    items = pd.DataFrame({"item": [str(i) for i in range(1, 21)], "title": [f"Movie {i}" for i in range(1, 21)]})
    return CTRData("toy-ctr", train, valid, test, items)


def test_history_is_cut_left_padded_and_indexed():
    data = toy_ctr()
    data.train.at[0, "history"] = ["3", "5", "7"]
    split = prepare_ctr(data, history_len=2)
    h = split.parts["train"].history[0]
    assert h.tolist() == [split.item_vocab.encode("5"), split.item_vocab.encode("7")]
    data.train.at[1, "history"] = ["4"]
    split = prepare_ctr(data, history_len=3)
    assert split.parts["train"].history[1].tolist() == [0, 0, split.item_vocab.encode("4")]
    assert split.titles[split.item_vocab.encode("4")] == "Movie 4" and split.titles[0] == ""


def test_subsample_is_recorded_fixed_and_nested():
    data = toy_ctr()
    a = prepare_ctr(data, 5, {"train": 50}, seed=1)
    b = prepare_ctr(data, 5, {"train": 50}, seed=1)
    c = prepare_ctr(data, 5, {"train": 100}, seed=1)
    assert a.subsample == {"train": {"rows": 50, "of": 400, "seed": 1}}
    assert np.array_equal(a.parts["train"].items, b.parts["train"].items)
    rows_a = set(zip(a.parts["train"].users.tolist(), a.parts["train"].items.tolist()))
    rows_c = set(zip(c.parts["train"].users.tolist(), c.parts["train"].items.tolist()))
    assert rows_a <= rows_c


def test_group_metrics_hand_computed():
    users = np.array([0, 0, 0, 1, 1, 2])
    labels = np.array([1, 0, 1, 0, 1, 1])
    probs = np.array([0.9, 0.2, 0.4, 0.6, 0.5, 0.7])
    m = group_metrics(users, labels, probs)
    # pairs (pos, neg): (0.9,.2)+ (0.9,.6)+ (.4,.2)+ (.4,.6)- (.5,.2)+ (.5,.6)- (.7,.2)+ (.7,.6)+ -> 6/8
    assert m["auc"] == pytest.approx(6 / 8)
    # user 0: pos {.9,.4} vs neg {.2} -> 1.0; user 1: pos .5 < neg .6 -> 0.0; user 2 has one class (skipped)
    assert m["uauc"] == pytest.approx(0.5) and m["uauc_users"] == 2 and m["uauc_users_skipped"] == 1
    y, p = labels.astype(float), probs
    assert m["logloss"] == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    one_class = group_metrics(np.array([0, 1]), np.array([1, 1]), np.array([0.3, 0.8]))
    assert one_class["auc"] is None and one_class["uauc"] is None and one_class["uauc_users_skipped"] == 2


def test_report_splits_warm_and_cold():
    part = CTRPart(np.array([0, 0, 1, 1]), np.array([1, 2, 3, 4]), np.array([1, 0, 1, 0]),
                   np.array([True, True, False, False]), np.zeros((4, 2), dtype=np.int64))
    r = ctr_report(part, np.array([0.8, 0.3, 0.2, 0.9]))
    assert r["warm"]["auc"] == 1.0 and r["cold"]["auc"] == 0.0 and r["all"]["n"] == 4


@pytest.mark.parametrize("name, params", [("mf", {"dim": 16}), ("sasrec-ctr", {"hidden": 16, "layers": 1})])
def test_embedding_models_learn_the_toy_pattern(name, params):
    import torch

    split = prepare_ctr(toy_ctr(), history_len=5)
    torch.manual_seed(0)
    model = build_ctr_model(name, params, split)
    res = fit_ctr(model, split, CTRTrainConfig(epochs=25, lr=1e-2, batch_size=64, patience=25, progress=False),
                  torch.device("cpu"), log=None)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    if name == "mf":  # MF sees user and item ids: the parity pattern is learnable from them
        assert res.best_valid_auc > 0.8


def test_mf_learns_on_a_real_collm_slice(shared_dir):
    import torch

    from semcollab.config import DataConfig
    from semcollab.data import load_ctr

    data = load_ctr(DataConfig(name="collm-ml-1m", path=str(shared_dir / "data/collm/ml-1m.zip")))
    split = prepare_ctr(data, 10, {"train": 8000, "valid": 3000, "test": 10})
    torch.manual_seed(0)
    model = build_ctr_model("mf", {"dim": 32, "bias": True}, split)
    res = fit_ctr(model, split, CTRTrainConfig(epochs=8, lr=1e-2, weight_decay=1e-5, batch_size=512, patience=8,
                                               progress=False), torch.device("cpu"), log=None)
    assert res.best_valid_auc > 0.55
    probs = predict(model, split.parts["valid"])
    assert probs.shape == (3000,) and ((probs > 0) & (probs < 1)).all()


def test_row_indices_do_not_depend_on_the_budget_of_other_parts():
    data = toy_ctr()
    a = prepare_ctr(data, 5, {"train": 50, "test": 10})
    b = prepare_ctr(data, 5, {"train": 50, "test": 90, "valid": 20})
    for key in ("users", "items", "history"):
        assert np.array_equal(getattr(a.parts["train"], key), getattr(b.parts["train"], key))


def test_unsubsampled_view_gives_every_row_with_the_same_indices():
    data = toy_ctr()
    split = prepare_ctr(data, 5, {"train": 50})
    whole = split.unsubsampled()
    assert len(split.parts["train"]) == 50 and len(whole.parts["train"]) == 400
    full = prepare_ctr(data, 5)
    assert np.array_equal(whole.parts["train"].users, full.parts["train"].users)
    assert full.unsubsampled() is full


@pytest.mark.parametrize("name, params", [("mf", {"dim": 16}), ("sasrec-ctr", {"hidden": 16, "layers": 1})])
@pytest.mark.usefixtures("release_resume_locks")  # fit_ctr's checkpoint locks, given up after the test
def test_fit_ctr_killed_and_called_again_ends_like_an_unbroken_run(tmp_path, name, params):
    import torch

    split = prepare_ctr(toy_ctr(), history_len=5)
    cfg = CTRTrainConfig(epochs=6, lr=1e-2, batch_size=64, patience=6, progress=False, checkpoint_minutes=0)

    def fresh():
        torch.manual_seed(0)
        return build_ctr_model(name, params, split)

    whole_model = fresh()
    whole = fit_ctr(whole_model, split, cfg, torch.device("cpu"), log=None)
    ckpt = tmp_path / "resume.pt"
    with pytest.raises(Killed):
        fit_ctr(fresh(), split, cfg, torch.device("cpu"), log=kill_after(3), checkpoint=ckpt)
    lines, model = [], fresh()
    res = fit_ctr(model, split, cfg, torch.device("cpu"), log=lines.append, checkpoint=ckpt)
    assert lines[0].startswith("resuming from epoch 3 of 6") and res.resumed_from_epoch == 3
    assert res.history == whole.history and res.best_epoch == whole.best_epoch
    for k, v in whole_model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_min_epochs_above_epochs_is_refused_naming_the_key():
    from semcollab.config import ConfigError
    from semcollab.config.fields import validate

    validate(CTRTrainConfig(epochs=6, min_epochs=6), "train.")
    with pytest.raises(ConfigError, match=r"'train.min_epochs' must be at most train.epochs \(6\), got 7"):
        validate(CTRTrainConfig(epochs=6, min_epochs=7), "train.")
