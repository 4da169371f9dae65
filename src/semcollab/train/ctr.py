"""Training of the embedding CTR models (MF, SASRec-CTR): the CTR side of the epoch loop (:mod:`.loop`): shuffled
row batches, BCE, validation AUC; the loop's early stopping, time cap and exact resume. LM models bring their own
step-wise, resumable ``fit_ctr``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config.ctr import CTRTrainConfig
from ..data.ctr import CTRSplit
from ..errors import DataError
from ..evaluation.ctr import predict
from ..evaluation.metrics import auc
from ..runs.checkpoints import trajectory_settings
from .loop import EpochTask, make_checkpoint_key, train_epochs


@dataclass
class CTRFitResult:
    """The loop's :class:`~.loop.FitResult` under the names a CTR run records in its run.json (``fit``)."""

    best_epoch: int = 0
    best_valid_auc: float = -math.inf
    epochs_run: int = 0
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    stopped_by: str = "epochs"
    resumed_from_epoch: int | None = None


class CTRTask(EpochTask):
    """Batches of the train rows in a fresh random order each epoch; the epoch's loss is the mean over rows;
    validation AUC after every epoch."""

    metric = valid_key = "valid_auc"

    def __init__(self, model, split: CTRSplit, cfg: CTRTrainConfig, device: torch.device):
        self.model, self.cfg, self.device = model, cfg, device
        self.train, self.valid = split.parts["train"], split.parts["valid"]

    def n_batches(self) -> int:
        return -(-len(self.train) // self.cfg.batch_size)

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[tuple]:
        order = rng.permutation(len(self.train))
        for s in range(0, len(order), self.cfg.batch_size):
            rows = order[s:s + self.cfg.batch_size]
            yield self.train.batch(rows, self.device), len(rows)

    def batch_loss(self, batch: tuple) -> tuple[torch.Tensor, int]:
        rows, n = batch
        return self.model.loss(rows), n

    def validate(self, epoch: int) -> float:
        if len(np.unique(self.valid.labels)) < 2:
            raise DataError("the validation rows hold a single label, so validation AUC (the model selection "
                            "criterion) is undefined; use more rows (data.max_valid_rows)")
        return auc(self.valid.labels, predict(self.model, self.valid, device=self.device))


def fit_ctr(model, split: CTRSplit, cfg: CTRTrainConfig, device: torch.device, log=print,
            checkpoint=None, checkpoint_key: dict | None = None) -> CTRFitResult:
    """Train on ``split``'s train rows, keep the best validation-AUC state. With ``checkpoint`` (a file path) the
    loop saves and resumes like the ranking trainer's ``fit`` (same settings, shapes, code and
    ``checkpoint_key``, or CheckpointMismatchError)."""
    rng = np.random.default_rng(cfg.seed)
    model.to(device)
    task = CTRTask(model, split, cfg, device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    key = make_checkpoint_key(model, {"train": trajectory_settings(cfg)}, checkpoint_key) \
        if checkpoint is not None else None
    done = train_epochs(task, model, opt, rng, cfg, log, checkpoint, key)
    return CTRFitResult(best_epoch=done.best_epoch, best_valid_auc=done.best_valid, epochs_run=done.epochs_run,
                        history=done.history, train_seconds=done.train_seconds, stopped_by=done.stopped_by,
                        resumed_from_epoch=done.resumed_from_epoch)
