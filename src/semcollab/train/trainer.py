"""One trainer for every model: Adam, early stopping on a validation metric, best-state restore."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import ConfigError, EvalConfig, RunConfig, TrainConfig, resolve_device, validate
from ..data.batches import BatchBuilder
from ..data.dataset import Split
from ..evaluate.evaluator import evaluate_ranking


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return np.random.default_rng(seed)


def _metric_in_ks(cfg: TrainConfig, eval_cfg: EvalConfig) -> None:
    for key, message in RunConfig(train=cfg, eval=eval_cfg)._check():
        raise ConfigError(f"config key '{key}' {message}")


class EarlyStopping:
    """Best-so-far bookkeeping shared by the ranking and CTR trainers: the best validation value, its epoch and
    a copy of the weights then; evaluations without improvement; the wall-clock cap since construction."""

    def __init__(self, patience: int, max_minutes: float | None):
        self.patience, self.max_minutes = patience, max_minutes
        self.best, self.best_epoch, self.bad, self.state = -math.inf, 0, 0, None
        self.t_start = time.perf_counter()

    def update(self, model, value: float, epoch: int) -> None:
        if value > self.best:
            self.best, self.best_epoch, self.bad = value, epoch, 0
            self.state = copy.deepcopy(model.state_dict())
        else:
            self.bad += 1

    def stop_reason(self) -> str | None:
        """``"early_stopping"``, ``"max_minutes"`` or None (go on)."""
        if self.bad >= self.patience:
            return "early_stopping"
        if self.max_minutes is not None and (time.perf_counter() - self.t_start) / 60 > self.max_minutes:
            return "max_minutes"
        return None

    def restore_best(self, model) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


@dataclass
class FitResult:
    best_epoch: int = 0
    best_valid: float = -math.inf
    epochs_run: int = 0
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    seconds_per_epoch: float = 0.0
    stopped_by: str = "epochs"


def fit(model, split: Split, cfg: TrainConfig, eval_cfg: EvalConfig, log=print) -> FitResult:
    """Train ``model`` on ``split.train``; early-stop on ``cfg.metric`` over ``split``'s validation set."""
    validate(cfg, "train.")  # configs built in Python skip from_dict's checks
    validate(eval_cfg, "eval.")
    _metric_in_ks(cfg, eval_cfg)
    device = resolve_device(cfg.device)
    rng = seed_everything(cfg.seed)
    model.to(device)
    result = FitResult()
    if model.batch_kind is None:
        return result
    model.set_loss(cfg.loss, cfg.neg_samples)
    builder = BatchBuilder(model.batch_kind, split.train_sequences(), split.n_items, model.max_len,
                           getattr(getattr(model, "cfg", None), "mask_prob", 0.2), getattr(model, "mask_token", None),
                           length_buckets=cfg.length_buckets)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    valid = split.eval_set("valid")
    pop = split.item_popularity()
    metric = cfg.metric.lower()
    stopper = EarlyStopping(cfg.patience, cfg.max_minutes)
    use_autocast = cfg.bf16
    train_time = 0.0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        total, n = 0.0, 0
        bar = tqdm(builder.epoch(cfg.batch_size, rng, device), total=builder.n_batches(cfg.batch_size),
                   desc=f"epoch {epoch}", disable=not cfg.progress, leave=False)
        for batch in bar:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_autocast):
                loss = model.loss(batch) * builder.loss_weight(batch, cfg.batch_size)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}; lower train.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            n += 1
        train_time += time.perf_counter() - t0
        record = {"epoch": epoch, "loss": total / max(n, 1), "epoch_seconds": time.perf_counter() - t0}
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            res = evaluate_ranking(model, valid, split.n_items, pop, eval_cfg, device, breakdowns=False)
            val = res["overall"][metric]
            record[f"valid_{metric}"] = val
            stopper.update(model, val, epoch)
        result.history.append(record)
        result.epochs_run = epoch
        if log:
            log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        reason = stopper.stop_reason()
        if reason:
            result.stopped_by = reason
            break
    stopper.restore_best(model)
    result.best_valid, result.best_epoch = stopper.best, stopper.best_epoch
    result.train_seconds = train_time
    result.seconds_per_epoch = train_time / max(result.epochs_run, 1)
    return result
