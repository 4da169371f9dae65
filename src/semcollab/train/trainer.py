"""Training of the ranking models: the ranking side of the epoch loop (:mod:`.loop`): batches from the model's
:meth:`~semcollab.models.base.Recommender.training_batches`, loss weighted per target, validation on the ranking
metric every ``train.eval_every`` epochs. Exactly resumable, like every task of the loop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .. import distributed as ddp
from ..config import ConfigError, EvalConfig, RunConfig, TrainConfig, resolve_device, validate
from ..data.batches import BatchBuilder
from ..data.dataset import Split
from ..evaluation.ranking import evaluate_ranking
from ..runs.checkpoints import trajectory_settings
from .loop import EpochTask, FitResult, make_checkpoint_key, train_epochs


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return np.random.default_rng(seed)


def _metric_in_ks(cfg: TrainConfig, eval_cfg: EvalConfig) -> None:
    for key, message in RunConfig(train=cfg, eval=eval_cfg)._check():
        raise ConfigError(f"config key '{key}' {message}")


class RankingTask(EpochTask):
    """Next-item / cloze / pair batches of ``split``'s training histories (the model's own builder), under bf16
    autocast when ``cfg.bf16``; validation ``cfg.metric`` on the validation users every ``cfg.eval_every`` epochs
    and after the last.

    Under torchrun (:mod:`semcollab.distributed`) each rank trains on its slice of every global batch, its loss scaled to
    its share of the batch's targets and its gradients averaged by DDP; validation is split over the ranks and
    gathered (every rank gets the score one process computes)."""

    record_seconds = True

    def __init__(self, model, split: Split, cfg: TrainConfig, eval_cfg: EvalConfig, device: torch.device):
        self.model, self.split, self.cfg, self.eval_cfg, self.device = model, split, cfg, eval_cfg, device
        self.loss_of = ddp.wrap(model, device)  # model.loss, or its DDP wrapper across ranks
        self.builder: BatchBuilder = model.training_batches(split.train_sequences(), split.n_items,
                                                            length_buckets=cfg.length_buckets)
        self.valid, self.pop = split.eval_set("valid"), split.item_popularity()
        self.metric = cfg.metric.lower()
        self.valid_key = f"valid_{self.metric}"

    def n_batches(self) -> int:
        return self.builder.n_batches(self.cfg.batch_size)

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[dict]:
        batches = self.builder.epoch(self.cfg.batch_size, rng, self.device)
        if not ddp.active():
            return batches
        torch.manual_seed(ddp.epoch_seed(self.cfg.seed, epoch))  # this rank's dropout / negatives, resumable
        return (self._shard(b) for b in batches)

    def _targets(self, batch: dict) -> int:
        """What a batch's mean loss averages over: its non-padding targets, or its rows for pair batches."""
        return int((batch["targets"] > 0).sum()) if "targets" in batch else len(next(iter(batch.values())))

    def _shard(self, batch: dict) -> tuple[dict | None, float]:
        """This rank's rows of a global batch and the factor of their mean loss (:func:`semcollab.distributed.shard_scale`
        times the global batch's length-bucket weight)."""
        rows = ddp.shard_rows(len(next(iter(batch.values()))))
        part = {k: v[rows] for k, v in batch.items()}
        n_part, n_all = self._targets(part), self._targets(batch)
        weight = self.builder.loss_weight(batch, self.cfg.batch_size) * ddp.shard_scale(n_part, n_all)
        return (part if n_part else None), weight

    def batch_loss(self, batch) -> tuple[torch.Tensor, int]:
        if isinstance(batch, tuple):  # a rank's shard and its weight
            batch, weight = batch
        else:
            weight = self.builder.loss_weight(batch, self.cfg.batch_size)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            loss = self.loss_of(batch) * weight
        return loss, 1  # the epoch's loss: the mean over batches (summed over ranks by the loop)

    def validate(self, epoch: int) -> float | None:
        if epoch % self.cfg.eval_every and epoch != self.cfg.epochs:
            return None
        res = evaluate_ranking(self.model, self.valid, self.split.n_items, self.pop, self.eval_cfg, self.device,
                               breakdowns=False, over_ranks=ddp.active())  # under torchrun: split over ranks
        return res["overall"][self.metric]


def fit(model, split: Split, cfg: TrainConfig, eval_cfg: EvalConfig, log=print, checkpoint: str | Path | None = None,
        checkpoint_key: dict | None = None) -> FitResult:
    """Train ``model`` on ``split.train``; early-stop on ``cfg.metric`` over ``split``'s validation set.

    With ``checkpoint`` (a file path), progress is saved there every ``cfg.checkpoint_minutes`` (after an epoch;
    None: never, though an existing file is still resumed from) and a call finding that file resumes from it,
    provided it was made with the same settings, parameter shapes, code (:func:`code_fingerprint`) and
    ``checkpoint_key`` (the caller's extra identity, e.g. a data fingerprint); otherwise
    :class:`CheckpointMismatchError`. The caller deletes the file once the run is safely saved. The time cap
    counts earlier calls up to their last checkpoint (not the minutes between it and the kill)."""
    validate(cfg, "train.")  # configs built in Python skip from_dict's checks
    validate(eval_cfg, "eval.")
    _metric_in_ks(cfg, eval_cfg)
    ddp.setup()  # joins torchrun's process group, if there is one
    device = resolve_device(cfg.device)
    rng = seed_everything(cfg.seed)
    model.to(device)
    if model.batch_kind is None:
        return FitResult()
    model.set_loss(cfg.loss, cfg.neg_samples)
    task = RankingTask(model, split, cfg, eval_cfg, device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    key = make_checkpoint_key(model, {"train": trajectory_settings(cfg), "eval": trajectory_settings(eval_cfg)},
                              checkpoint_key) if checkpoint is not None else None
    return train_epochs(task, model, opt, rng, cfg, log, checkpoint, key)
