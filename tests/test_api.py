"""Runs that reproduce and refuse to lie: seeds, data fingerprints, absolute paths, safe output folders."""

import errno
import json
import os

import pytest

import semcollab
from semcollab.errors import DataChangedError
from semcollab.runs.files import OutputError
from semcollab.tasks.ranking import load_ranking_run
from tests.conftest import Killed, kill_after


def _losses(res):
    return [(h["loss"], h.get("valid_ndcg@10")) for h in res.fit.history]


FAST = ["train.epochs=2", "train.progress=false", "model_params.hidden=16", "model_params.layers=1"]


def _run(toy_dir, out, *extra, model="sasrec"):
    return semcollab.run(model=model, dataset="atomic:toy",
                         overrides=[f"data.path={toy_dir}", f"output_dir={out}", *FAST, *extra], log=None)


def test_same_seed_same_numbers_other_seed_other_numbers(toy_dir, tmp_path):
    a = _run(toy_dir, tmp_path / "a", "train.seed=7")
    b = _run(toy_dir, tmp_path / "b", "train.seed=7")
    c = _run(toy_dir, tmp_path / "c", "train.seed=8")
    assert a.test == b.test and a.valid == b.valid
    assert _losses(a) == _losses(b)
    assert _losses(a) != _losses(c)


def test_saerec_same_seed_with_fresh_and_cached_sae(toy_dir, tiny_bert, tmp_path):
    """The first run trains the SAE, the second reads it from the cache: both must start from the same weights."""
    extra = [f"model_params.encoder={tiny_bert}", "model_params.sae.steps=20", "model_params.sae.expansion=2",
             "model_params.sae.k=3", "train.seed=3"]
    a = _run(toy_dir, tmp_path / "a", *extra, model="saerec")
    b = _run(toy_dir, tmp_path / "b", *extra, model="saerec")
    assert _losses(a) == _losses(b) and a.test == b.test


def test_changed_source_is_refused_unless_allowed(toy_dir, tmp_path):
    res = _run(toy_dir, tmp_path / "runs")
    meta = json.loads((res.run_dir / "run.json").read_text())
    assert len(meta["data_fingerprint"]) == 64
    cfg, _, split = load_ranking_run(res.run_dir)  # unchanged data: fine
    assert split.fingerprint() == meta["data_fingerprint"]
    inter = toy_dir / "toy.inter"
    lines = inter.read_text().splitlines()
    inter.write_text("\n".join(lines[:-1]) + "\n")  # drop one event
    with pytest.raises(DataChangedError, match="has changed since it was trained"):
        load_ranking_run(res.run_dir)
    with pytest.warns(UserWarning, match="has changed"):
        load_ranking_run(res.run_dir, allow_data_change=True)


def test_relative_data_path_is_stored_absolute(toy_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(toy_dir.parent)
    res = _run(os.path.relpath(toy_dir), tmp_path / "runs")
    saved = (res.run_dir / "config.yaml").read_text()
    assert f"path: {toy_dir}" in saved
    monkeypatch.chdir(tmp_path)  # evaluate from somewhere else
    load_ranking_run(res.run_dir)


def test_unwritable_output_is_found_before_training(toy_dir, tmp_path, monkeypatch):
    import semcollab.tasks.ranking as api

    def no_training(*a, **k):
        raise AssertionError("training started although the output folder cannot take the run")

    monkeypatch.setattr(api, "fit", no_training)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="not writable|not a folder"):
        _run(toy_dir, blocker / "runs")
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 1000))
    with pytest.raises(OutputError, match="MiB free"):
        _run(toy_dir, tmp_path / "full")


def test_full_disk_while_saving_leaves_no_half_written_run(toy_dir, tmp_path, monkeypatch):
    import semcollab.tasks.ranking as api

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(api, "save_file", disk_full)
    out = tmp_path / "runs"
    with pytest.raises(OSError, match="nothing was left behind"):
        _run(toy_dir, out)
    # neither a run folder nor a temporary one; the resume checkpoint written after the last epoch stays, so the
    # rerun (once there is space) goes straight to evaluating and saving
    assert [p.name for p in out.iterdir()] == [".resume"] and len(list((out / ".resume").glob("*.pt"))) == 1


def test_eval_cutoff_larger_than_catalogue_is_refused_before_training(toy_dir, tmp_path):
    from semcollab.config import ConfigError

    with pytest.raises(ConfigError, match=r"asks for @100, but toy has only \d+ items"):
        _run(toy_dir, tmp_path / "runs", "eval.ks=[10,100]")


def test_run_folder_gets_ordinary_permissions(toy_dir, tmp_path):
    import stat

    old = os.umask(0o022)
    try:
        res = _run(toy_dir, tmp_path / "runs")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(res.run_dir).st_mode) == 0o755  # not mkdtemp's owner-only 0700


def test_killed_run_called_again_resumes_and_ends_like_an_unbroken_one(toy_dir, tmp_path):
    """`semcollab train` resumes: the same call after a kill continues from output_dir/.resume/ and the
    saved run equals an unbroken one; another setting gets its own checkpoint; the file goes once saved."""
    args = ["train.epochs=4", "train.checkpoint_minutes=0", "train.seed=5"]
    whole = _run(toy_dir, tmp_path / "whole", *args)
    out = tmp_path / "out"
    over = [f"data.path={toy_dir}", f"output_dir={out}", *FAST, *args]
    with pytest.raises(Killed):
        semcollab.run(model="sasrec", dataset="atomic:toy", overrides=over, log=kill_after(2))
    assert len(list((out / ".resume").glob("sasrec-atomic-toy-*.pt"))) == 1
    noted = []
    other = semcollab.run(model="sasrec", dataset="atomic:toy", overrides=[*over, "train.lr=0.01"], log=noted.append)
    assert other.fit.resumed_from_epoch is None  # another setting never picks up that checkpoint, but names it
    assert sum(line.startswith("note: 1 resume checkpoint(s) of other settings") for line in noted) == 1
    lines = []
    res = semcollab.run(model="sasrec", dataset="atomic:toy", overrides=over, log=lines.append)
    assert res.fit.resumed_from_epoch == 2 and any(line.startswith("resuming from epoch 2 of 4") for line in lines)
    assert res.test == whole.test and res.valid == whole.valid and _losses(res) == _losses(whole)
    assert not (out / ".resume").exists()


def test_resume_is_keyed_on_the_content_of_a_named_table_folder(toy_dir, tmp_path):
    """An item_table folder rewritten between the kill and the rerun gives a fresh run, never the old weights;
    the same table resumes, and the checkpoint's stale temporary goes with it once the run is saved."""
    import numpy as np

    n_items = _run(toy_dir, tmp_path / "probe").split.n_items
    folder = tmp_path / "table"
    folder.mkdir()
    table = np.random.default_rng(0).normal(size=(n_items + 1, 8)).astype(np.float32)
    np.save(folder / "item_table.npy", table)
    out = tmp_path / "out"
    over = [f"data.path={toy_dir}", f"output_dir={out}", *FAST, "train.epochs=4", "train.checkpoint_minutes=0",
            f"model_params.item_table={folder}", "model_params.table_mode=replace"]
    with pytest.raises(Killed):
        semcollab.run(model="sasrec", dataset="atomic:toy", overrides=over, log=kill_after(2))
    (ckpt,) = (out / ".resume").glob("*.pt")
    np.save(folder / "item_table.npy", table + 1)
    assert semcollab.run(model="sasrec", dataset="atomic:toy", overrides=over, log=None).fit.resumed_from_epoch is None
    np.save(folder / "item_table.npy", table)
    (ckpt.parent / f".{ckpt.name}.12345.tmp").write_bytes(b"left by a write killed half-way")
    assert semcollab.run(model="sasrec", dataset="atomic:toy", overrides=over, log=None).fit.resumed_from_epoch == 2
    assert not (out / ".resume").exists()
