"""One loop for the embedding CTR models (MF, SASRec-CTR): Adam, BCE, early stopping on validation AUC,
best-state restore, a wall-clock cap, and the ranking trainer's exact resume (:class:`EpochCheckpoint`).
LM models bring their own step-wise, resumable ``fit_ctr``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.ctr import CTRSplit
from ..errors import DataError
from ..evaluate.ctr import predict
from ..evaluate.metrics import auc
from ..runs.checkpoints import trajectory_settings
from ..tasks.ctr_config import CTRTrainConfig
from .trainer import EarlyStopping, EpochCheckpoint, make_checkpoint_key


@dataclass
class CTRFitResult:
    best_epoch: int = 0
    best_valid_auc: float = -math.inf
    epochs_run: int = 0
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    stopped_by: str = "epochs"
    resumed_from_epoch: int | None = None


def fit_ctr(model, split: CTRSplit, cfg: CTRTrainConfig, device: torch.device, log=print,
            checkpoint=None, checkpoint_key: dict | None = None) -> CTRFitResult:
    """Train on ``split``'s train rows, keep the best validation-AUC state. With ``checkpoint`` (a file path) the
    loop saves and resumes like the ranking trainer's ``fit`` (same settings, shapes, code and
    ``checkpoint_key``, or CheckpointMismatchError)."""
    rng = np.random.default_rng(cfg.seed)
    model.to(device)
    train, valid = split.parts["train"], split.parts["valid"]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    result, stopper = CTRFitResult(), EarlyStopping(cfg.patience, cfg.max_minutes)
    key = make_checkpoint_key(model, {"train": trajectory_settings(cfg)}, checkpoint_key) \
        if checkpoint is not None else None
    saver = EpochCheckpoint(checkpoint, key, cfg.checkpoint_minutes, log)
    first_epoch, reason = 1, None
    resumed = saver.load(model, opt, stopper, rng, "valid_auc", cfg.epochs)
    if resumed is not None:
        result.history, result.train_seconds = resumed["history"], resumed["train_time"]
        result.epochs_run = result.resumed_from_epoch = resumed["epoch"]
        first_epoch = resumed["epoch"] + 1
        reason = stopper.stop_reason()  # a resumed run already past its time cap
    last_epoch = cfg.epochs if reason is None else first_epoch - 1
    for epoch in range(first_epoch, last_epoch + 1):
        model.train()
        t0 = time.perf_counter()
        order = rng.permutation(len(train))
        total = 0.0
        steps = range(0, len(order), cfg.batch_size)
        for s in tqdm(steps, desc=f"epoch {epoch}", disable=not cfg.progress, leave=False):
            loss = model.loss(train.batch(order[s:s + cfg.batch_size], device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}; lower train.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * min(cfg.batch_size, len(order) - s)
        result.train_seconds += time.perf_counter() - t0
        if len(np.unique(valid.labels)) < 2:
            raise DataError("the validation rows hold a single label, so validation AUC (the model selection "
                            "criterion) is undefined; use more rows (data.max_valid_rows)")
        val_auc = auc(valid.labels, predict(model, valid, device=device))
        record = {"epoch": epoch, "loss": total / len(order), "valid_auc": val_auc}
        result.history.append(record)
        result.epochs_run = epoch
        stopper.update(model, val_auc, epoch)
        reason = stopper.stop_reason()
        if epoch < cfg.epochs and not reason and saver.due():
            saver.save(epoch, model, opt, stopper, rng, result.history, result.train_seconds)
        if log:
            log(f"epoch={epoch} loss={record['loss']:.4f} valid_auc={val_auc:.4f}")
        if reason:
            break
    saver.save_final(result.epochs_run, first_epoch, model, opt, stopper, rng, result.history, result.train_seconds)
    if reason:
        result.stopped_by = reason
    stopper.restore_best(model)
    result.best_valid_auc, result.best_epoch = stopper.best, stopper.best_epoch
    return result
