"""Resume files under concurrency and at the end of training (issue 28, section 5): a second `semcollab train`
of the same run refuses while the first owns the checkpoint, a killed owner does not block, and a kill during the
final evaluation resumes straight into it."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import semcollab
import semcollab.tasks.ranking
from tests.conftest import Killed

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args):
    return [sys.executable, "-c", "from semcollab.cli import app; app()", *args]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def _wait_for(pred, what, proc, seconds=240):
    t0 = time.monotonic()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"the first run ended ({proc.returncode}) before {what}: {proc.stdout.read()}")
        if time.monotonic() - t0 > seconds:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_second_identical_train_refuses_while_the_first_runs_and_a_killed_owner_does_not_block(toy_dir, tmp_path):
    out = tmp_path / "out"
    args = ["train", "--model", "sasrec", "--dataset", "atomic:toy", f"--data.path={toy_dir}", f"--output_dir={out}",
            "--train.progress=false", "--model_params.hidden=16", "--model_params.layers=1",
            "--train.epochs=100000", "--train.patience=100000", "--train.checkpoint_minutes=0"]
    first = subprocess.Popen(_cli(*args), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        resume = out / ".resume"
        _wait_for(lambda: any(p.stat().st_size for p in resume.glob("*.pt.lock")) and any(resume.glob("*.pt")),
                  "its lock and first checkpoint", first)
        (lock,) = resume.glob("*.pt.lock")
        assert lock.read_text() == str(first.pid)
        t0 = time.monotonic()
        second = subprocess.run(_cli(*args), env=_env(), capture_output=True, text=True, timeout=180)
        text = re.sub(r"\s+", "", second.stdout + second.stderr)  # the console may wrap anywhere
        assert second.returncode == 2 and "error:" in text, text
        assert f"PID{first.pid}" in text and lock.name in text and "epoch=1" not in text
        assert first.poll() is None  # the owner goes on undisturbed
        assert time.monotonic() - t0 < 180  # refused at once, not after training
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert lock.exists()  # left behind by the killed owner; the kernel released its flock
    # the same command again (with a time cap already spent, so it stops at once) resumes the killed run's checkpoint
    third = subprocess.run(_cli(*args, "--train.max_minutes=0.000001"), env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "resuming from epoch" in third.stdout and not (out / ".resume").exists()


def test_a_stale_lock_of_a_killed_process_is_free(tmp_path):
    from semcollab.runs.checkpoints import CheckpointInUseError, lock_resume_file, remove_resume_file

    path = tmp_path / ".resume" / "m-d-0.pt"
    code = (f"from semcollab.runs.checkpoints import lock_resume_file; lock_resume_file({str(path)!r}); "
            "print('locked', flush=True); import time; time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointInUseError, match=rf"PID {holder.pid}.*m-d-0\.pt\.lock"):
            lock_resume_file(path)
    finally:
        holder.kill()
        holder.wait()
    lock_resume_file(path)  # the dead holder's lock is gone with it
    lock_resume_file(path)  # the owner may call again
    remove_resume_file(path)
    assert not path.parent.exists()


def test_releasing_the_locks_under_a_folder_frees_those_and_keeps_the_rest(tmp_path):
    from semcollab.runs.checkpoints import lock_path, lock_resume_file, release_resume_locks_under

    inside = [tmp_path / "a" / ".resume" / "m-d-0.pt", tmp_path / "a" / "b" / ".resume" / "m-d-1.pt"]
    outside = tmp_path / "ab" / ".resume" / "m-d-2.pt"  # a sibling whose name starts like "a": not under it
    for path in [*inside, outside]:
        lock_resume_file(path)
    assert release_resume_locks_under(tmp_path / "a") == 2
    assert release_resume_locks_under(tmp_path / "a") == 0
    code = ("import sys; from semcollab.runs.checkpoints import lock_resume_file, CheckpointInUseError\n"
            "for p in sys.argv[1:]:\n"
            "    try: lock_resume_file(p); print('free')\n"
            "    except CheckpointInUseError: print('held')")
    other = subprocess.run([sys.executable, "-c", code, *map(str, [*inside, outside])], env=_env(),
                           capture_output=True, text=True, check=True)
    assert other.stdout.split() == ["free", "free", "held"]
    assert release_resume_locks_under(tmp_path) == 1
    assert all(lock_path(p).exists() for p in [*inside, outside])  # released, not deleted


FAST = ["train.progress=false", "model_params.hidden=16", "model_params.layers=1", "train.epochs=3",
        "train.seed=5", "train.checkpoint_minutes=1000"]  # no periodic checkpoint falls due in this short run


def _untimed(history):
    return [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in history]


def test_a_kill_during_the_final_evaluation_resumes_straight_into_it(toy_dir, tmp_path, monkeypatch):
    whole = semcollab.run(model="sasrec", dataset="atomic:toy", overrides=[f"data.path={toy_dir}",
                          f"output_dir={tmp_path / 'whole'}", *FAST], log=None)
    out = tmp_path / "out"
    over = [f"data.path={toy_dir}", f"output_dir={out}", *FAST]

    def killed(*a, **kw):
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(semcollab.tasks.ranking, "evaluate_ranking", killed)  # the final valid / test evaluation, not fit's
        with pytest.raises(Killed):
            semcollab.run(model="sasrec", dataset="atomic:toy", overrides=over, log=None)
    assert len(list((out / ".resume").glob("*.pt"))) == 1
    lines = []
    res = semcollab.run(model="sasrec", dataset="atomic:toy", overrides=over, log=lines.append)
    assert res.fit.resumed_from_epoch == 3 and any(line.startswith("resuming from epoch 3 of 3") for line in lines)
    assert not any(line.startswith("epoch=") for line in lines)  # no epoch trained again
    assert res.test == whole.test and res.valid == whole.valid
    assert _untimed(res.fit.history) == _untimed(whole.fit.history)
    assert not (out / ".resume").exists()


def test_ctr_kill_during_the_final_evaluation_resumes_straight_into_it(tmp_path, monkeypatch):
    import semcollab.tasks.ctr as ctr
    from semcollab.tasks.ctr import run_ctr

    from ..tasks.test_ctr_cli import write_collm_folder

    data = write_collm_folder(tmp_path / "collm")
    over = [f"data.path={data}", "data.allow_pickle=true", "train.epochs=3", "train.progress=false",
            "train.checkpoint_minutes=1000", "model_params.dim=8"]
    whole = run_ctr(model="mf", overrides=[*over, f"output_dir={tmp_path / 'whole'}"], log=None)
    out = tmp_path / "out"

    def killed(*a, **kw):
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(ctr, "predict", killed)
        with pytest.raises(Killed):
            run_ctr(model="mf", overrides=[*over, f"output_dir={out}"], log=None)
    lines = []
    res = run_ctr(model="mf", overrides=[*over, f"output_dir={out}"], log=lines.append)
    assert res.fit.resumed_from_epoch == 3 and not any(line.startswith("epoch=") for line in lines)
    assert res.test == whole.test and res.fit.history == whole.fit.history


def test_the_lm_step_loop_refuses_a_checkpoint_dir_another_live_process_owns(tmp_path):
    """Two LM-CTR runs of equal step-1 settings share one step cache: the second must not read or overwrite it."""
    import torch

    from semcollab.runs.checkpoints import CheckpointInUseError
    from semcollab.train.lm_steps import LMTrainConfig, train_lm

    ckpt_dir = tmp_path / "step1-lora-abc"
    code = (f"from semcollab.runs.checkpoints import lock_resume_file; lock_resume_file({str(ckpt_dir / 'checkpoint.pt')!r}); "
            "print('locked', flush=True); import time; time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE, text=True)
    lin = torch.nn.Linear(2, 1)
    rows, lengths = [torch.ones(2)] * 4, [1] * 4
    cfg = LMTrainConfig(epochs=1, batch_size=2, lr=1e-2, progress=False)

    def run():
        return train_lm(lambda b: lin(b).pow(2).mean(), [lin], rows, lengths, torch.stack, cfg, ckpt_dir, log=None)

    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointInUseError, match=rf"PID {holder.pid}.*checkpoint\.pt\.lock"):
            run()
        assert not (ckpt_dir / "checkpoint.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    assert run().steps == 2 and (ckpt_dir / "checkpoint.pt").exists()  # the dead holder does not block
    assert not (ckpt_dir / "checkpoint.pt.lock").exists()  # released and removed when the call returns


def test_a_run_that_fails_in_process_gives_up_its_resume_lock(toy_dir, tmp_path):
    """A Python session (or a server) whose run raised must not keep other processes off the checkpoint."""
    from semcollab.runs.checkpoints import _LOCKS

    with pytest.raises(Exception, match="NaN"):
        semcollab.run(model="sasrec", dataset="atomic:toy",
                      overrides=[f"data.path={toy_dir}", f"output_dir={tmp_path}", "train.lr=2147483648",
                                 "train.epochs=2", "train.progress=false", "model_params.hidden=8",
                                 "model_params.layers=1", "train.checkpoint_minutes=0"])
    (lock,) = (tmp_path / ".resume").glob("*.pt.lock")
    ckpt = lock.with_suffix("")
    assert str(ckpt.resolve()) not in _LOCKS
    code = (f"from semcollab.runs.checkpoints import lock_resume_file; lock_resume_file({str(ckpt)!r}); print('ok')")
    other = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert other.returncode == 0 and other.stdout.strip() == "ok", other.stderr
