"""One loop for the embedding CTR models (MF, SASRec-CTR): Adam, BCE, early stopping on validation AUC,
best-state restore, a wall-clock cap. LM models bring their own step-wise ``fit_ctr``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.errors import DataError
from ..evaluate.metrics import auc
from ..train.trainer import EarlyStopping
from .config import CTRTrainConfig
from .data import CTRSplit
from .evaluate import predict


@dataclass
class CTRFitResult:
    best_epoch: int = 0
    best_valid_auc: float = -math.inf
    epochs_run: int = 0
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    stopped_by: str = "epochs"


def fit_ctr(model, split: CTRSplit, cfg: CTRTrainConfig, device: torch.device, log=print) -> CTRFitResult:
    rng = np.random.default_rng(cfg.seed)
    model.to(device)
    train, valid = split.parts["train"], split.parts["valid"]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    result, stopper = CTRFitResult(), EarlyStopping(cfg.patience, cfg.max_minutes)
    for epoch in range(1, cfg.epochs + 1):
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
        if log:
            log(f"epoch={epoch} loss={record['loss']:.4f} valid_auc={val_auc:.4f}")
        reason = stopper.stop_reason()
        if reason:
            result.stopped_by = reason
            break
    stopper.restore_best(model)
    result.best_valid_auc, result.best_epoch = stopper.best, stopper.best_epoch
    return result
