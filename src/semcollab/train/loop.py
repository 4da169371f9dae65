"""One epoch loop for the ID models, ranking and CTR alike: Adam steps over a task's batches, early stopping on
its validation score, best-state restore, a wall-clock cap and exact resume.

What differs between tasks is an :class:`EpochTask`: the batches of an epoch, the loss of a batch and the
validation score. The loop owns the rest, so both tasks checkpoint, resume and stop the same way. Given a
checkpoint path the loop is exactly resumable: after an epoch it may write (atomically) everything the remaining
epochs depend on: weights, Adam state, the batch-order and global RNG states, the early-stopping bookkeeping (best
value, epoch and weights) and the history, so a killed run called again with the same arguments ends with the same
weights and history as one that was never stopped (on CPU)."""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import distributed as ddp
from ..runs.checkpoints import (
    CheckpointMismatchError,
    code_fingerprint,
    key_diff,
    load_checkpoint,
    lock_resume_file,
    mismatch_hint,
    release_resume_lock,
    rng_state,
    save_atomic,
    set_rng_state,
)


class EarlyStopping:
    """Best-so-far bookkeeping of the epoch loop: the best validation value, its epoch and a copy of the weights
    then; evaluations without improvement; the wall-clock cap since construction (plus ``minutes_before``, the
    time of earlier calls of a resumed run). The patience stops nothing before a validation at or after epoch
    ``min_epochs``: a model whose first epoch is a lucky peak (a text-initialised one, before its ID part is trained)
    would otherwise stop there, and a stop always follows a validated epoch (also with ``eval_every`` > 1)."""

    def __init__(self, patience: int, max_minutes: float | None, min_epochs: int = 0):
        self.patience, self.max_minutes, self.min_epochs = patience, max_minutes, min_epochs
        self.best, self.best_epoch, self.bad, self.state = -math.inf, 0, 0, None
        self.last_eval = 0  # the epoch of the latest validation
        self.t_start = time.perf_counter()
        self.minutes_before = 0.0

    def minutes(self) -> float:
        return self.minutes_before + (time.perf_counter() - self.t_start) / 60

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad, "state": self.state,
                "minutes": self.minutes(), "last_eval": self.last_eval}

    def load_state_dict(self, d: dict) -> None:
        self.best, self.best_epoch, self.bad, self.state = d["best"], d["best_epoch"], d["bad"], d["state"]
        self.minutes_before, self.t_start = d["minutes"], time.perf_counter()
        self.last_eval = d.get("last_eval", 0)  # checkpoints older than min_epochs have none (and ran without it)

    def update(self, model, value: float, epoch: int) -> None:
        self.last_eval = epoch
        if value > self.best:
            self.best, self.best_epoch, self.bad = value, epoch, 0
            self.state = copy.deepcopy(model.state_dict())
        else:
            self.bad += 1

    def stop_reason(self) -> str | None:
        """``"early_stopping"``, ``"max_minutes"`` or None (go on)."""
        if self.bad >= self.patience and self.last_eval >= self.min_epochs:
            return "early_stopping"
        if self.max_minutes is not None and self.minutes() > self.max_minutes:
            return "max_minutes"
        return None

    def restore_best(self, model) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def make_checkpoint_key(model, train: dict, extra: dict | None = None) -> dict:
    """What the weight trajectory depends on (``train``: the settings that matter, already filtered), plus the
    parameter shapes and the code; a checkpoint made under another key is refused, never reused."""
    params = {n: tuple(t.shape) for n, t in model.state_dict().items()}
    return {**train, "params": params, "model": type(model).__name__, "code": code_fingerprint(), **(extra or {})}


class EpochCheckpoint:
    """The resume file of the epoch loop: after an epoch, at most every ``every_minutes`` (None: never), and after
    the last epoch, it holds the weights, optimizer, early-stopping state, the loop's NumPy generator and the global
    RNG states, the history and the training time, written atomically and read back with ``weights_only=True``.
    The process that loads it owns it (a lock next to it) until :func:`~semcollab.runs.checkpoints.remove_resume_file`.
    A failed write (full disk) warns once and turns checkpointing off, never the run."""

    def __init__(self, path, key: dict | None, every_minutes: float | None, log=print):
        self.path = Path(path) if path is not None else None
        self.key, self.every, self.log = key, every_minutes, log
        self.on = self.path is not None and every_minutes is not None and ddp.is_main()  # one writer of the file
        self.last = time.perf_counter()

    def load(self, model, opt, stopper: EarlyStopping, rng: np.random.Generator, metric: str,
             epochs: int) -> dict | None:
        """Restore from the file when there is one and say so (``metric``, ``epochs``: for that line):
        ``{"epoch", "history", "train_time"}``, else None."""
        ckpt = self.path
        if ckpt is None:
            return None
        state = ddp.on_main(self._read)  # under torchrun rank 0 reads the file and hands it to every rank
        if state is None:
            return None
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            stopper.load_state_dict(state["stopper"])
            rng.bit_generator.state = state["batch_rng"]
            set_rng_state(state["rng"])
            out = {"epoch": int(state["epoch"]), "history": list(state["history"]),
                   "train_time": float(state["train_time"])}
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointMismatchError(f"resume checkpoint {ckpt} does not hold what this run needs "
                                          f"({type(exc).__name__}: {exc}); delete it to start the run over") from None
        self.last = time.perf_counter()
        if self.log:
            self.log(f"resuming from epoch {out['epoch']} of {epochs} (best {metric} {stopper.best:.4f} at epoch "
                     f"{stopper.best_epoch}) from {ckpt}")
        return out

    def _read(self) -> dict | None:
        ckpt = self.path
        lock_resume_file(ckpt)  # a second process running the same command stops here, before reading the file
        if not ckpt.exists():
            return None
        state = load_checkpoint(ckpt)  # weights_only=True: a foreign file is refused, its code never runs
        old_key = state["key"]
        if old_key != self.key:
            diff = key_diff(old_key, self.key)
            raise CheckpointMismatchError(f"resume checkpoint {ckpt} was made with different {diff}"
                                          f"{mismatch_hint(diff)}; delete it to start the run over")
        return state

    def save_final(self, epoch: int, first_epoch: int, model, opt, stopper: EarlyStopping, rng, history: list,
                   train_time: float) -> None:
        """After the last epoch this call trained (whatever stopped the loop), before the final evaluation: a run
        killed during that evaluation resumes straight into it instead of retraining since the last checkpoint."""
        if self.on and epoch >= first_epoch:
            self.save(epoch, model, opt, stopper, rng, history, train_time)

    def due(self) -> bool:
        return self.on and time.perf_counter() - self.last >= 60 * self.every

    def save(self, epoch: int, model, opt, stopper: EarlyStopping, rng: np.random.Generator, history: list,
             train_time: float) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            save_atomic({"key": self.key, "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                         "stopper": stopper.state_dict(), "batch_rng": rng.bit_generator.state, "rng": rng_state(),
                         "history": history, "train_time": train_time}, self.path)
        except OSError as exc:
            msg = (f"could not write the resume checkpoint {self.path} ({exc.strerror or exc}); training goes on "
                   "without checkpoints, so a kill now means starting over")
            warnings.warn(msg, stacklevel=3)
            if self.log:
                self.log(f"warning: {msg}")
            self.on = False
        self.last = time.perf_counter()


class EpochTask:
    """What one kind of training tells :func:`train_epochs`; subclass it and fill in the hooks.

    The loop calls, per epoch: :meth:`batches` (once, iterated lazily), :meth:`batch_loss` per batch (then the
    Adam step), and :meth:`validate` after the epoch. A task keeps no state across epochs of its own: what the
    remaining epochs depend on is the model, the optimizer and the ``rng`` the loop hands over, all of which the
    loop checkpoints. ``metric`` names the validation score in the resume line, ``valid_key`` in each epoch's
    history record; ``record_seconds`` adds the epoch's training seconds to that record."""

    metric: str = "valid"
    valid_key: str = "valid"
    record_seconds: bool = False

    def n_batches(self) -> int:  # pragma: no cover - abstract
        """How many batches :meth:`batches` yields (for the progress bar)."""
        raise NotImplementedError

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator:  # pragma: no cover - abstract
        """One epoch's training batches, in order; all batch randomness drawn from ``rng``."""
        raise NotImplementedError

    def batch_loss(self, batch) -> tuple[torch.Tensor, float]:  # pragma: no cover - abstract
        """The loss to minimise on ``batch`` and its weight in the epoch's mean loss."""
        raise NotImplementedError

    def validate(self, epoch: int) -> float | None:  # pragma: no cover - abstract
        """The validation score after ``epoch`` (higher is better), or None to skip it this epoch."""
        raise NotImplementedError


@dataclass
class FitResult:
    """What :func:`train_epochs` did: the best validation score and its epoch, the epochs run (all calls of a
    resumed run), each epoch's history record, the training seconds and why it stopped."""

    best_epoch: int = 0
    best_valid: float = -math.inf
    epochs_run: int = 0
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    seconds_per_epoch: float = 0.0
    stopped_by: str = "epochs"
    resumed_from_epoch: int | None = None


def log_line(record: dict) -> str:
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())


def train_epochs(task: EpochTask, model, opt: torch.optim.Optimizer, rng: np.random.Generator, cfg, log=print,
                 checkpoint: str | Path | None = None, key: dict | None = None) -> FitResult:
    """Train ``model`` for ``cfg.epochs`` epochs of ``task``; stop early after ``cfg.patience`` validations without
    improvement or past ``cfg.max_minutes`` (counting earlier calls of a resumed run); leave the model at its best
    validated state; the patience ends no run before a validation at or after epoch ``cfg.min_epochs``. ``cfg``: any
    config with ``epochs``, ``patience``, ``min_epochs``, ``max_minutes``, ``checkpoint_minutes`` and ``progress``. With
    ``checkpoint`` (a file path) progress is saved there every ``cfg.checkpoint_minutes`` (after an epoch; None:
    never, though an existing file is still resumed from) and a call finding that file resumes from it, provided
    it was made under the same ``key`` (:func:`make_checkpoint_key`); else CheckpointMismatchError.
    A call that fails (a refused checkpoint, a diverged loss, an interrupt) gives up the checkpoint's lock and keeps
    the file, so another process, or this one later, can resume it; a finished call keeps the lock until the run is
    saved (:func:`~semcollab.runs.checkpoints.remove_resume_file`)."""
    try:
        return _train_epochs(task, model, opt, rng, cfg, log, checkpoint, key)
    except BaseException:
        release_resume_lock(checkpoint)
        raise


def _train_epochs(task: EpochTask, model, opt, rng, cfg, log, checkpoint, key) -> FitResult:
    result, stopper = FitResult(), EarlyStopping(cfg.patience, cfg.max_minutes, cfg.min_epochs)
    saver = EpochCheckpoint(checkpoint, key, cfg.checkpoint_minutes, log)
    first_epoch, reason = 1, None
    resumed = saver.load(model, opt, stopper, rng, task.metric, cfg.epochs)
    if resumed is not None:
        result.history, result.train_seconds = resumed["history"], resumed["train_time"]
        result.epochs_run = result.resumed_from_epoch = resumed["epoch"]
        first_epoch = resumed["epoch"] + 1
        reason = ddp.from_main(stopper.stop_reason())  # a resumed run already past its time cap
    last_epoch = cfg.epochs if reason is None else first_epoch - 1
    for epoch in range(first_epoch, last_epoch + 1):
        model.train()
        t0 = time.perf_counter()
        total, weight_sum = 0.0, 0
        bar = tqdm(task.batches(epoch, rng), total=task.n_batches(), desc=f"epoch {epoch}",
                   disable=not cfg.progress, leave=False)
        for batch in bar:
            loss, weight = task.batch_loss(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}; lower train.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * weight
            weight_sum += weight
        total = ddp.sum_over_ranks(total) / ddp.world_size()  # ranks' shares of each batch's loss (itself in one)
        result.train_seconds += time.perf_counter() - t0
        record = {"epoch": epoch, "loss": total / max(weight_sum, 1)}
        if task.record_seconds:
            record["epoch_seconds"] = time.perf_counter() - t0
        value = ddp.from_main(task.validate(epoch))  # every rank validates (a task may split it); rank 0's value
        if value is not None:
            record[task.valid_key] = value
            stopper.update(model, value, epoch)
        result.history.append(record)
        result.epochs_run = epoch
        reason = ddp.from_main(stopper.stop_reason())  # the time cap is read on rank 0 alone: one decision
        if epoch < cfg.epochs and not reason and saver.due():
            saver.save(epoch, model, opt, stopper, rng, result.history, result.train_seconds)
        if log:
            log(log_line(record))
        if reason:
            break
    saver.save_final(result.epochs_run, first_epoch, model, opt, stopper, rng, result.history, result.train_seconds)
    if reason:
        result.stopped_by = reason
    elif log and stopper.best_epoch and result.epochs_run == cfg.epochs:  # the epoch cap ended it, not the patience
        log(f"reached the last epoch ({cfg.epochs}) before early stopping: the best validation {task.metric} was at "
            f"epoch {stopper.best_epoch}, {stopper.bad} evaluation(s) before the end (patience {cfg.patience}); "
            "the model may still improve with more epochs (raise train.epochs)")
    stopper.restore_best(model)
    result.best_valid, result.best_epoch = stopper.best, stopper.best_epoch
    result.seconds_per_epoch = result.train_seconds / max(result.epochs_run, 1)
    return result
