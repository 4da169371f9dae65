"""The shared epoch loop (train/loop.py): hook order, a toy task trained through it, exact resume, and the
Recommender.training_batches hook the ranking trainer builds its batches from."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from semcollab.config import EvalConfig, TrainConfig
from semcollab.data.batches import BatchBuilder
from semcollab.models import build_model
from semcollab.runs.checkpoints import CheckpointMismatchError
from semcollab.train.loop import EpochTask, make_checkpoint_key, train_epochs
from semcollab.train.trainer import fit
from tests.conftest import Killed, kill_after


def settings(**kw):
    base = {"epochs": 6, "patience": 6, "min_epochs": 0, "max_minutes": None, "checkpoint_minutes": 0,
            "progress": False}
    return SimpleNamespace(**{**base, **kw})


class Regression(EpochTask):
    """y = x @ w_true + noise, fitted by a linear layer behind dropout (torch RNG); batches shuffled (NumPy
    generator of the loop); validation: minus the mean squared error on held-out rows."""

    metric, valid_key = "neg_mse", "valid_neg_mse"

    def __init__(self, model, calls=None, eval_every=1, epochs=6):
        g = torch.Generator().manual_seed(1)
        self.x, self.xv = torch.randn(96, 5, generator=g), torch.randn(32, 5, generator=g)
        w = torch.arange(1.0, 6.0)
        self.y, self.yv = self.x @ w + 0.1 * torch.randn(96, generator=g), self.xv @ w
        self.model, self.calls, self.eval_every, self.epochs = model, calls, eval_every, epochs

    def note(self, *call):
        if self.calls is not None:
            self.calls.append(call)

    def n_batches(self):
        return 6

    def batches(self, epoch, rng):
        self.note("batches", epoch)
        order = rng.permutation(len(self.x))
        for s in range(0, len(order), 16):
            yield order[s:s + 16]

    def batch_loss(self, rows):
        self.note("batch_loss", len(rows))
        pred = self.model(self.x[rows]).squeeze(-1)
        return ((pred - self.y[rows]) ** 2).mean(), len(rows)

    def validate(self, epoch):
        self.note("validate", epoch)
        if epoch % self.eval_every and epoch != self.epochs:
            return None
        self.model.eval()
        with torch.no_grad():
            return -float(((self.model(self.xv).squeeze(-1) - self.yv) ** 2).mean())


def toy(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Dropout(0.2), nn.Linear(5, 1))


def run(model, cfg, log=None, checkpoint=None, calls=None, eval_every=1):
    task = Regression(model, calls, eval_every, cfg.epochs)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    key = make_checkpoint_key(model, {"train": {"lr": 0.05}}) if checkpoint is not None else None
    return train_epochs(task, model, opt, np.random.default_rng(0), cfg, log, checkpoint, key)


def test_hooks_are_called_in_order_each_epoch():
    calls = []
    res = run(toy(), settings(epochs=2), calls=calls)
    per_epoch = [("batch_loss", 16)] * 6
    assert calls == [("batches", 1), *per_epoch, ("validate", 1), ("batches", 2), *per_epoch, ("validate", 2)]
    assert [h["epoch"] for h in res.history] == [1, 2] and res.epochs_run == 2


def test_a_toy_task_trains_and_ends_at_its_best_validated_state():
    model = toy()
    lines = []
    res = run(model, settings(epochs=25, patience=25), log=lines.append)
    assert res.history[-1]["loss"] < res.history[0]["loss"] / 4
    assert lines[0].startswith("epoch=1 loss=") and "valid_neg_mse=" in lines[0]
    best = max(res.history, key=lambda h: h["valid_neg_mse"])
    assert (res.best_epoch, res.best_valid) == (best["epoch"], best["valid_neg_mse"])
    model.eval()
    task = Regression(model)
    with torch.no_grad():  # the weights in the model are the best epoch's, not the last's
        assert -float(((model(task.xv).squeeze(-1) - task.yv) ** 2).mean()) == res.best_valid


def test_a_run_ended_by_the_epoch_cap_says_it_may_still_improve():
    lines = []
    res = run(toy(), settings(epochs=4, patience=6), log=lines.append)
    assert res.stopped_by == "epochs" and lines[-1].startswith("reached the last epoch (4) before early stopping")
    assert f"at epoch {res.best_epoch}," in lines[-1] and "(patience 6)" in lines[-1]

    class Flat(Regression):  # validation never improves after epoch 1: the patience ends the run, nothing to say
        def validate(self, epoch):
            return -1.0

    lines, model = [], toy()
    res = train_epochs(Flat(model), model, torch.optim.Adam(model.parameters()), np.random.default_rng(0),
                       settings(epochs=4, patience=1), lines.append)
    assert res.stopped_by == "early_stopping" and not any(line.startswith("reached") for line in lines)


def test_epochs_without_validation_record_no_score_and_spend_no_patience():
    res = run(toy(), settings(epochs=5, patience=5), eval_every=2)
    assert ["valid_neg_mse" in h for h in res.history] == [False, True, False, True, True]
    assert res.best_epoch in (2, 4, 5)


def test_the_loss_of_an_epoch_is_the_weighted_mean_of_its_batches():
    class Constant(Regression):
        def batches(self, epoch, rng):
            yield from ([0] * 3, [0])

        def batch_loss(self, rows):
            return self.model[1].bias.sum() * 0 + len(rows), len(rows)  # loss 3 weighs 3, loss 1 weighs 1

    model = toy()
    res = train_epochs(Constant(model), model, torch.optim.SGD(model.parameters(), lr=0.0), np.random.default_rng(0),
                       settings(epochs=1))
    assert res.history[0]["loss"] == (3 * 3 + 1 * 1) / 4


def test_a_non_finite_loss_stops_the_run():
    class Exploding(Regression):
        def batch_loss(self, rows):
            return torch.tensor(float("nan"), requires_grad=True), 1

    model = toy()
    with pytest.raises(FloatingPointError, match="at epoch 1"):
        train_epochs(Exploding(model), model, torch.optim.Adam(model.parameters()), np.random.default_rng(0),
                     settings())


class FirstEpochPeak(Regression):
    """A first-epoch validation peak, a dip, then a recovery at epoch 7 (as a text-initialised model's curve)."""
    CURVE = {1: -1.0, 2: -3.0, 3: -2.9, 4: -2.8, 5: -2.7, 6: -2.5, 7: -0.5, 8: -0.6, 9: -0.7, 10: -0.8}

    def validate(self, epoch):
        return self.CURVE[epoch]


def peak_run(cfg, log=None, checkpoint=None):
    model = toy()
    key = make_checkpoint_key(model, {"train": {"min_epochs": cfg.min_epochs}}) if checkpoint is not None else None
    return train_epochs(FirstEpochPeak(model), model, torch.optim.Adam(model.parameters(), lr=0.05),
                        np.random.default_rng(0), cfg, log, checkpoint, key)


@pytest.mark.usefixtures("release_resume_locks")  # the resumed run ends holding its checkpoint's lock
def test_min_epochs_keeps_the_patience_from_stopping_on_a_first_epoch_peak(tmp_path):
    plain = peak_run(settings(epochs=10, patience=2))
    assert (plain.stopped_by, plain.epochs_run, plain.best_epoch) == ("early_stopping", 3, 1)
    guarded = peak_run(settings(epochs=10, patience=2, min_epochs=7))
    assert (guarded.stopped_by, guarded.epochs_run, guarded.best_epoch) == ("early_stopping", 9, 7)
    late = peak_run(settings(epochs=10, patience=2, min_epochs=3))  # past min_epochs the patience rules as before
    assert (late.epochs_run, late.best_epoch) == (3, 1)
    ckpt = tmp_path / "resume.pt"
    with pytest.raises(Killed):  # killed at epoch 4, past the patience, before min_epochs: the resume goes on
        peak_run(settings(epochs=10, patience=2, min_epochs=7), log=kill_after(4), checkpoint=ckpt)
    resumed = peak_run(settings(epochs=10, patience=2, min_epochs=7), checkpoint=ckpt)
    assert resumed.resumed_from_epoch == 4 and resumed.history == guarded.history


def test_with_sparse_validation_min_epochs_stops_only_after_a_validated_epoch():
    class SparsePeak(FirstEpochPeak):
        def validate(self, epoch):
            return {2: -1.0, 4: -2.0, 6: -1.5, 8: -0.5, 10: -0.6}.get(epoch)  # validated on even epochs only

    model = toy()
    res = train_epochs(SparsePeak(model), model, torch.optim.Adam(model.parameters(), lr=0.05),
                       np.random.default_rng(0), settings(epochs=10, patience=1, min_epochs=5))
    # the patience ran out at epoch 4 (best 2); epoch 5 passes min_epochs unvalidated; epoch 6 is the first
    # validation past it, and its value (no better than epoch 2's) ends the run there
    assert (res.stopped_by, res.epochs_run, res.best_epoch) == ("early_stopping", 6, 2)
    assert [h["epoch"] for h in res.history if "valid_neg_mse" in h] == [2, 4, 6]


def test_resume_mid_way_equals_an_unbroken_run(tmp_path):
    whole_model = toy()
    whole = run(whole_model, settings())
    ckpt = tmp_path / "resume.pt"
    with pytest.raises(Killed):
        run(toy(), settings(), log=kill_after(3), checkpoint=ckpt)
    lines, model = [], toy()
    res = run(model, settings(), log=lines.append, checkpoint=ckpt)
    assert lines[0].startswith("resuming from epoch 3 of 6 (best neg_mse") and res.resumed_from_epoch == 3
    assert res.history == whole.history and (res.best_epoch, res.best_valid) == (whole.best_epoch, whole.best_valid)
    for k, v in whole_model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    with pytest.raises(CheckpointMismatchError, match="different"):  # another key: refused, not reused
        task = Regression(toy())
        opt = torch.optim.Adam(task.model.parameters(), lr=0.05)
        train_epochs(task, task.model, opt, np.random.default_rng(0), settings(), None, ckpt,
                     make_checkpoint_key(task.model, {"train": {"lr": 0.5}}))


def test_bert4rec_builds_its_cloze_batches_with_its_own_mask(toy_split):
    model = build_model("bert4rec", {"hidden": 16, "layers": 1, "mask_prob": 0.5}, toy_split)
    builder = model.training_batches(toy_split.train_sequences(), toy_split.n_items)
    assert (builder.kind, builder.mask_prob, builder.mask_token) == ("cloze", 0.5, toy_split.n_items + 1)
    sasrec = build_model("sasrec", {"hidden": 16, "layers": 1}, toy_split)
    plain = sasrec.training_batches(toy_split.train_sequences(), toy_split.n_items, length_buckets=True)
    assert (plain.kind, plain.mask_token, plain.length_buckets) == ("next_item", None, True)


def test_the_ranking_trainer_takes_its_batches_from_the_model(toy_split):
    seen = []
    model = build_model("sasrec", {"hidden": 16, "layers": 1}, toy_split)

    def training_batches(seqs, n_items, length_buckets=False):
        seen.append((n_items, length_buckets))
        return BatchBuilder("next_item", seqs[:5], n_items, model.max_len)  # a model's own choice of batches

    model.training_batches = training_batches
    res = fit(model, toy_split, TrainConfig(epochs=1, progress=False, batch_size=4), EvalConfig(ks=[10]), log=None)
    assert seen == [(toy_split.n_items, False)] and res.epochs_run == 1
