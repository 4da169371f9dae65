"""No file semcollab reads may run code (issue 28, section 2), and CoLLM-format labels / cold rows (section 3).

Each location gets a planted pickle whose payload would create a marker file when unpickled (``Path.touch``, so
nothing harmful runs even on code that still unpickles): the ordinary command must refuse the file by name and
the marker must never appear. That real checkpoints still resume exactly is the business of the resume tests
(tests/train/test_trainer.py, tests/ctr/test_ctr.py, tests/test_api.py, tests/lm/test_train.py)."""

import pathlib
import pickle
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import semcollab
from semcollab.cli import app
from semcollab.data import DataError, load_collm_ctr
from semcollab.runs.checkpoints import CheckpointMismatchError
from tests.conftest import Killed, kill_after


class Payload:
    """Unpickling this touches ``marker``: the proof that a file ran code."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def plant(path, marker, as_torch=True):
    """Replace ``path`` with a pickle that runs the payload; shaped like a checkpoint (``key`` and all) so that
    code which unpickles it gets as far as it would with a real one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"key": Payload(marker), "epoch": 1}
    if as_torch:
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj))


def refused(exc_info, marker, pattern):
    """The call failed (any exception, so that code which runs the payload fails here, on the marker), without
    running the payload, with a CheckpointMismatchError naming the file."""
    assert not marker.exists(), "the planted pickle ran its payload"
    assert isinstance(exc_info.value, CheckpointMismatchError), repr(exc_info.value)
    assert re.search(pattern, str(exc_info.value)), str(exc_info.value)


FAST = ["train.progress=false", "model_params.hidden=16", "model_params.layers=1", "train.epochs=3",
        "train.checkpoint_minutes=0", "train.seed=5"]


@pytest.mark.parametrize("as_torch", [True, False], ids=["torch-zip", "raw-pickle"])
def test_train_resume_checkpoint_never_runs_code(toy_dir, tmp_path, as_torch):
    """`semcollab train`: a pickle planted as output_dir/.resume/<run>.pt is refused with its name, exit 2."""
    out, marker = tmp_path / "out", tmp_path / "MARKER"
    over = [f"data.path={toy_dir}", f"output_dir={out}", *FAST]
    with pytest.raises(Killed):
        semcollab.run(model="sasrec", dataset="atomic:toy", overrides=over, log=kill_after(1))
    (ckpt,) = (out / ".resume").glob("*.pt")
    plant(ckpt, marker, as_torch)
    from semcollab.runs.checkpoints import release_resume_lock

    release_resume_lock(ckpt)  # the killed call above ran in this process: let the CLI call below own the file
    r = CliRunner().invoke(app, ["train", "--model", "sasrec", "--dataset", "atomic:toy", *[f"--{o}" for o in over]])
    assert not marker.exists()
    assert r.exit_code == 2 and "error:" in r.output, r.output
    text = re.sub(r"\s+", "", r.output)  # the console may wrap anywhere
    assert ckpt.name in text and "deleteit" in text


def test_ctr_embedding_loop_checkpoint_never_runs_code(tmp_path):
    from semcollab.config.ctr import CTRTrainConfig
    from semcollab.tasks.ctr import build_ctr_model, fit_ctr, prepare_ctr

    from .tasks.test_ctr import toy_ctr

    split = prepare_ctr(toy_ctr(), history_len=5)
    cfg = CTRTrainConfig(epochs=3, lr=1e-2, batch_size=64, progress=False, checkpoint_minutes=0)
    ckpt, marker = tmp_path / "resume.pt", tmp_path / "MARKER"
    plant(ckpt, marker)
    with pytest.raises(Exception) as e:
        fit_ctr(build_ctr_model("mf", {"dim": 8}, split), split, cfg, torch.device("cpu"), log=None, checkpoint=ckpt)
    refused(e, marker, r"resume\.pt.*delete it")


def test_reaemb_stage_checkpoint_never_runs_code(tiny_causal_lm, tmp_path):
    """`semcollab reaemb train`: a pickle planted as <output_dir>/stage1/checkpoint.pt of a started run."""
    from semcollab.methods.reaemb import ReaEmbIncomplete, train_reaemb

    from .methods.reaemb.test_pipeline import base_overrides, write_toy_s3rec

    out, marker = tmp_path / "run", tmp_path / "MARKER"
    over = base_overrides(write_toy_s3rec(tmp_path / "data"), tiny_causal_lm, out, **{"stage1.max_minutes": 1e-9})
    with pytest.raises(ReaEmbIncomplete):  # one step, then the time cap: a real checkpoint and identity.json
        train_reaemb(None, log=None, overrides=over)
    ckpt = out / "stage1" / "checkpoint.pt"
    assert ckpt.exists()
    plant(ckpt, marker)
    with pytest.raises(Exception) as e:
        train_reaemb(None, log=None, overrides=over)
    refused(e, marker, r"stage1/checkpoint\.pt.*delete it")


def test_lm_ctr_step_cache_never_runs_code(tiny_yes_no_lm, tmp_path):
    """The shared step-1 LoRA cache (~/.cache/semcollab/lm-ctr/step1-lora-<hash>/checkpoint.pt) of
    tallrec / collm / sellarec / sailrec."""
    from semcollab.config.ctr import CTRTrainConfig
    from semcollab.hub.wheels import default_cache_dir
    from semcollab.methods.lm_ctr.base import _hash
    from semcollab.tasks.ctr import build_ctr_model, prepare_ctr

    from .tasks.test_ctr import toy_ctr

    split = prepare_ctr(toy_ctr(rows=40), history_len=3)
    model = build_ctr_model("tallrec", {"lm": str(tiny_yes_no_lm), "batch_size": 16, "max_length": 64,
                                        "lora_rank": 2, "checkpoint_every": 0}, split)
    ckpt = pathlib.Path(default_cache_dir()) / "lm-ctr" / f"step1-lora-{_hash(model.step1_key(split))}" / \
        "checkpoint.pt"
    marker = tmp_path / "MARKER"
    plant(ckpt, marker)
    with pytest.raises(Exception) as e:
        model.fit_ctr(split, CTRTrainConfig(progress=False, device="cpu"), torch.device("cpu"), log=None)
    refused(e, marker, r"step1-lora-[0-9a-f]+/checkpoint\.pt.*delete it")


def test_lora_adapters_are_safetensors_and_a_planted_bin_never_runs(tiny_causal_lm, tmp_path):
    """Not a fix but a guard on what PEFT does for us (checked in peft 0.21): save_adapter writes safetensors only,
    and an adapter_model.bin planted in its place is read with weights_only=True, so it cannot run code."""
    from semcollab.lm import LoRAConfig, add_lora, load_adapter, load_causal_lm, save_adapter

    model, _ = load_causal_lm(str(tiny_causal_lm))
    d = save_adapter(add_lora(model, LoRAConfig(rank=2)), tmp_path / "adapter")
    assert (d / "adapter_model.safetensors").exists() and not list(d.glob("*.bin")) and not list(d.glob("*.pt"))
    (d / "adapter_model.safetensors").unlink()
    marker = tmp_path / "MARKER"
    torch.save({"base_model.model.x": Payload(marker)}, d / "adapter_model.bin")
    base, _ = load_causal_lm(str(tiny_causal_lm))
    with pytest.raises(Exception) as e:
        load_adapter(base, d)
    assert not marker.exists() and "weights_only" in str(e.value), repr(e.value)


# ------------------------------------------------------------------ CoLLM-format pickles
def _frames(**cols):
    base = {"uid": [1, 2, 1], "iid": [3, 4, 3], "label": [1, 0, 1], "timestamp": [1, 2, 3], "title": ["A", "B", "A"],
            "not_cold": [1, 1, 1]}
    base.update(cols)
    return pd.DataFrame({k: v for k, v in base.items() if v is not None})


def _zip(path, frames: dict):
    with zipfile.ZipFile(path, "w") as zf:
        for split in ("train", "valid", "test"):
            obj = frames.get(split, frames.get("*"))
            zf.writestr(f"ml-1m/{split}_ood2.pkl", obj if isinstance(obj, bytes) else pickle.dumps(obj))
    return path


def test_collm_zip_at_a_user_path_is_not_unpickled_without_the_opt_in(tmp_path):
    marker = tmp_path / "MARKER"
    z = _zip(tmp_path / "mine.zip", {"*": pickle.dumps(Payload(marker))})
    r = CliRunner().invoke(app, ["ctr", "train", "--model", "mf", f"--data.path={z}", "--train.epochs=1",
                                 "--train.progress=false", f"--output_dir={tmp_path / 'runs'}"])
    assert not marker.exists()
    text = re.sub(r"\s+", "", r.output)  # the console may wrap anywhere
    assert r.exit_code == 2 and "mine.zip:train_ood2.pkl" in text and "--data.allow_pickle=true" in text, r.output
    # a folder of pickles likewise; the opt-in (and only it) reads an ordinary DataFrame pickle
    d = tmp_path / "folder"
    d.mkdir()
    for split in ("train", "valid", "test"):
        (d / f"{split}_ood2.pkl").write_bytes(pickle.dumps(_frames()))
    with pytest.raises(DataError, match=r"train_ood2\.pkl is a pickle .*data\.allow_pickle"):
        load_collm_ctr(d)
    assert len(load_collm_ctr(d, allow_pickle=True).train) == 3


def test_the_known_collm_split_needs_no_opt_in(shared_dir):
    """The shared CoLLM ML-1M files are recognised by the SHA-256 of each member (what gets unpickled)."""
    import hashlib

    from semcollab.data.sources.collm import KNOWN_COLLM_FILES, _check_trusted

    with zipfile.ZipFile(shared_dir / "data/collm/ml-1m.zip") as zf:
        names = {n.rsplit("/", 1)[-1]: zf.read(n) for n in zf.namelist() if n.endswith(".pkl")}
    assert {hashlib.sha256(b).hexdigest(): n for n, b in names.items()} == KNOWN_COLLM_FILES
    _check_trusted(names["train_ood2.pkl"], "train", allow_pickle=False)  # passes
    with pytest.raises(DataError, match="allow_pickle"):
        _check_trusted(names["train_ood2.pkl"] + b".", "train", allow_pickle=False)


@pytest.mark.parametrize("bad, row", [([1, 2, 0], 1), ([-1, 0, 1], 0), ([1, 0, 0.9], 2), ([1, None, 0], 1),
                                      ([1, "yes", 0], 1)])
def test_collm_labels_other_than_0_1_are_refused(tmp_path, bad, row):
    z = _zip(tmp_path / "c.zip", {"train": _frames(), "valid": _frames(), "test": _frames(label=bad)})
    with pytest.raises(DataError, match=r"c\.zip:test_ood2\.pkl") as e:
        load_collm_ctr(z, allow_pickle=True)
    assert "(test split): column 'label' must hold 0 or 1" in str(e.value) and f"row {row} has" in str(e.value)


def test_collm_split_without_not_cold_derives_cold_from_the_training_items(tmp_path):
    train = _frames(not_cold=None)
    test = _frames(iid=[3, 9, 4], not_cold=None)  # 9 has no training row: cold
    z = _zip(tmp_path / "c.zip", {"train": train, "valid": train, "test": test})
    with pytest.warns(UserWarning, match=r"test_ood2\.pkl: no 'not_cold' column.*derived from the training items"):
        ctr = load_collm_ctr(z, allow_pickle=True)
    assert ctr.test["warm"].tolist() == [True, False, True]
    assert ctr.train["warm"].all() and ctr.valid["warm"].all()
    from semcollab.tasks.ctr import prepare_ctr

    assert prepare_ctr(ctr, 3).stats["test"]["cold"] == 1
    assert np.array_equal(load_collm_ctr(_zip(tmp_path / "w.zip", {"*": _frames(not_cold=[1, 0, 1])}),
                                         allow_pickle=True).test["warm"], [True, False, True])  # given: used as is
