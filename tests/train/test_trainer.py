import pytest

from semcollab.config import DataConfig, EvalConfig, TrainConfig
from semcollab.data import load_split
from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.models import build_model
from semcollab.train.trainer import fit
from tests.conftest import Killed, kill_after

# fit is called directly and no run is saved: the checkpoint locks are given up after each test (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("release_resume_locks")


def test_early_stopping_restores_best(toy_split):
    m = build_model("sasrec", {"hidden": 16, "layers": 1}, toy_split)
    r = fit(m, toy_split, TrainConfig(epochs=30, patience=2, progress=False, lr=0.02), EvalConfig(ks=[10]), log=None)
    assert r.best_epoch >= 1 and r.epochs_run <= 30
    res = evaluate_ranking(m, toy_split.eval_set("valid"), toy_split.n_items, toy_split.item_popularity(),
                           EvalConfig(ks=[10]), breakdowns=False)
    assert res["overall"]["ndcg@10"] == pytest.approx(r.best_valid)


def test_sasrec_beats_popularity_on_real_ml100k(ml100k_dir):
    """A small real slice: ML-100K, a few epochs. SASRec must beat popularity on validation."""
    split = load_split(DataConfig(name="ml-100k", path=str(ml100k_dir), cache=False))
    ev = EvalConfig(ks=[10])
    pop = build_model("pop", {}, split)
    pop_res = evaluate_ranking(pop, split.eval_set("valid"), split.n_items, split.item_popularity(), ev, breakdowns=False)
    sas = build_model("sasrec", {"hidden": 32, "layers": 1, "max_len": 30}, split)
    r = fit(sas, split, TrainConfig(epochs=6, progress=False, patience=6, lr=3e-3), ev, log=None)
    assert r.history[-1]["loss"] < r.history[0]["loss"]
    assert r.best_valid > 1.1 * pop_res["overall"]["ndcg@10"]


def _fresh(name, split):
    from semcollab.train.trainer import seed_everything

    seed_everything(0)
    return build_model(name, {"hidden": 16, "layers": 1, "dropout": 0.3}, split)


def _history(r):
    return [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in r.history]


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])  # dropout (torch RNG) and cloze masks (batch RNG)
def test_fit_killed_and_called_again_ends_like_an_unbroken_run(toy_split, tmp_path, name):
    import torch

    cfg, ev = TrainConfig(epochs=6, patience=6, progress=False, lr=0.01, checkpoint_minutes=0), EvalConfig(ks=[10])
    whole = _fresh(name, toy_split)
    r_whole = fit(whole, toy_split, cfg, ev, log=None)
    ckpt = tmp_path / "resume.pt"
    with pytest.raises(Killed):
        fit(_fresh(name, toy_split), toy_split, cfg, ev, log=kill_after(3), checkpoint=ckpt)
    assert ckpt.exists()
    lines = []
    resumed = _fresh(name, toy_split)
    r = fit(resumed, toy_split, cfg, ev, log=lines.append, checkpoint=ckpt)
    assert lines[0].startswith("resuming from epoch 3 of 6") and r.resumed_from_epoch == 3
    assert [h["epoch"] for h in r.history] == [1, 2, 3, 4, 5, 6]
    assert _history(r) == _history(r_whole)
    assert (r.best_epoch, r.best_valid) == (r_whole.best_epoch, r_whole.best_valid)
    for k, v in whole.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_fit_refuses_a_checkpoint_made_with_other_settings_or_damaged(toy_split, tmp_path):
    from semcollab.runs.checkpoints import CheckpointMismatchError

    cfg, ev = TrainConfig(epochs=4, patience=4, progress=False, checkpoint_minutes=0), EvalConfig(ks=[10])
    ckpt = tmp_path / "resume.pt"
    with pytest.raises(Killed):
        fit(_fresh("sasrec", toy_split), toy_split, cfg, ev, log=kill_after(2), checkpoint=ckpt,
            checkpoint_key={"data_fingerprint": "a"})
    other = TrainConfig(epochs=4, patience=4, progress=False, checkpoint_minutes=0, lr=0.05)
    with pytest.raises(CheckpointMismatchError, match=r"different \['train'\]"):
        fit(_fresh("sasrec", toy_split), toy_split, other, ev, log=None, checkpoint=ckpt,
            checkpoint_key={"data_fingerprint": "a"})
    with pytest.raises(CheckpointMismatchError, match=r"different \['data_fingerprint'\]"):
        fit(_fresh("sasrec", toy_split), toy_split, cfg, ev, log=None, checkpoint=ckpt,
            checkpoint_key={"data_fingerprint": "b"})
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # a truncated file
    with pytest.raises(CheckpointMismatchError, match="cannot be read.*delete it"):
        fit(_fresh("sasrec", toy_split), toy_split, cfg, ev, log=None, checkpoint=ckpt)


def test_time_cap_counts_the_minutes_of_earlier_calls():
    from semcollab.train.loop import EarlyStopping

    s = EarlyStopping(patience=5, max_minutes=10)
    assert s.stop_reason() is None
    s.load_state_dict({**s.state_dict(), "minutes": 10.5})  # a resumed run that had already trained 10.5 minutes
    assert s.stop_reason() == "max_minutes"


def test_resume_keeps_the_early_stopping_state(toy_split, tmp_path):
    """Killed one epoch after its best: patience must run out at the same epoch as in an unbroken run."""
    cfg, ev = TrainConfig(epochs=40, patience=2, progress=False, lr=0.02, checkpoint_minutes=0), EvalConfig(ks=[10])
    r_whole = fit(_fresh("sasrec", toy_split), toy_split, cfg, ev, log=None)
    assert r_whole.stopped_by == "early_stopping" and r_whole.epochs_run == r_whole.best_epoch + 2
    ckpt = tmp_path / "resume.pt"
    with pytest.raises(Killed):
        fit(_fresh("sasrec", toy_split), toy_split, cfg, ev, log=kill_after(r_whole.best_epoch + 1), checkpoint=ckpt)
    r = fit(_fresh("sasrec", toy_split), toy_split, cfg, ev, log=None, checkpoint=ckpt)
    assert (r.stopped_by, r.epochs_run, r.best_epoch, r.best_valid) == \
        (r_whole.stopped_by, r_whole.epochs_run, r_whole.best_epoch, r_whole.best_valid)


def test_resumed_run_already_past_its_time_cap_stops_at_once(toy_split, tmp_path):
    import torch

    cfg, ev = TrainConfig(epochs=6, patience=6, progress=False, checkpoint_minutes=0), EvalConfig(ks=[10])
    ckpt = tmp_path / "resume.pt"
    with pytest.raises(Killed):
        fit(_fresh("sasrec", toy_split), toy_split, cfg, ev, log=kill_after(2), checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=False)
    state["stopper"]["minutes"] = 30.0  # as if the first call had trained for 30 minutes
    torch.save(state, ckpt)
    capped = TrainConfig(epochs=6, patience=6, progress=False, checkpoint_minutes=0, max_minutes=20)
    r = fit(_fresh("sasrec", toy_split), toy_split, capped, ev, log=None, checkpoint=ckpt)
    assert (r.stopped_by, r.epochs_run, r.resumed_from_epoch) == ("max_minutes", 2, 2)


def test_checkpoint_from_other_code_is_refused(toy_split, tmp_path, monkeypatch):
    from semcollab.runs.checkpoints import CheckpointMismatchError
    from semcollab.train import loop

    cfg, ev = TrainConfig(epochs=4, patience=4, progress=False, checkpoint_minutes=0), EvalConfig(ks=[10])
    ckpt = tmp_path / "resume.pt"
    with pytest.raises(Killed):
        fit(_fresh("sasrec", toy_split), toy_split, cfg, ev, log=kill_after(2), checkpoint=ckpt)
    monkeypatch.setattr(loop, "code_fingerprint", lambda: "another version")
    with pytest.raises(CheckpointMismatchError, match=r"different \['code'\] \(semcollab's source"):
        fit(_fresh("sasrec", toy_split), toy_split, cfg, ev, log=None, checkpoint=ckpt)
    # the failed calls gave up the lock (the file stays): another process can take the checkpoint over
    import subprocess
    import sys

    take = "import sys; from semcollab.runs.checkpoints import lock_resume_file; lock_resume_file(sys.argv[1])"
    done = subprocess.run([sys.executable, "-c", take, str(ckpt)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    assert ckpt.exists()


def test_a_failed_checkpoint_write_warns_and_training_goes_on(toy_split, tmp_path, monkeypatch):
    import errno

    from semcollab.train import loop

    def full_disk(obj, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    cfg, ev = TrainConfig(epochs=3, patience=3, progress=False, checkpoint_minutes=0), EvalConfig(ks=[10])
    whole = fit(_fresh("sasrec", toy_split), toy_split, cfg, ev, log=None)
    monkeypatch.setattr(loop, "save_atomic", full_disk)
    lines = []
    with pytest.warns(UserWarning, match="could not write the resume checkpoint .*resume.pt"):
        r = fit(_fresh("sasrec", toy_split), toy_split, cfg, ev, log=lines.append, checkpoint=tmp_path / "resume.pt")
    assert _history(r) == _history(whole)
    assert sum(line.startswith("warning: could not write") for line in lines) == 1  # said once, then off


def test_a_stale_temporary_from_a_killed_write_is_removed(tmp_path):
    from semcollab.runs.checkpoints import save_atomic

    stale = tmp_path / ".resume.pt.99999.tmp"
    stale.write_bytes(b"half a checkpoint")
    save_atomic({"a": 1}, tmp_path / "resume.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resume.pt"]
