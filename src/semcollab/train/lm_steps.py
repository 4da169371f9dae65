"""A generic, exactly resumable training loop for LM recommenders.

The model-specific part is ``loss_fn(batch) -> scalar``; the loop owns batching (length buckets),
gradient accumulation, AdamW, warmup + decay, clipping, bf16 autocast / gradient checkpointing on CUDA,
a wall-clock cap and checkpoints. A checkpoint holds everything the remaining steps depend on — the
trainable parameters, optimizer and scheduler state, RNG states and the data position (epoch, batch
within the epoch, that epoch's batch order) — so stopping and rerunning the same call gives the same
parameters and loss history as an uninterrupted run. Checkpoints are written only after an optimizer
step (no half-accumulated gradients) and atomically (temp file, then ``os.replace``), and read back with
``torch.load(weights_only=True)`` (tensors and plain containers only: a planted file never runs code).

Under torchrun (:mod:`semcollab.distributed`) every rank builds the same batch order; rank r runs its contiguous slice of
each (micro)batch, its mean loss weighted by its share of the rows (:func:`semcollab.distributed.shard_scale`), and the
trainable gradients are averaged over the ranks once per optimizer step (one all-reduce, before clipping): every
rank takes the step one process takes on the whole batch, for a loss that is a mean over rows (the LM CTR losses).
A loss that couples the rows of a batch (in-batch negatives, advantages normalised over the batch) is computed per
shard instead. The logged loss is reduced over the ranks; rank 0 alone logs and writes the checkpoint, and on
resume reads it and hands it to the others. Torch's RNG is seeded per step and rank (:func:`semcollab.distributed.step_seed`),
so a resumed distributed run redraws what an unbroken one drew.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import distributed as ddp
from ..config import allowed, device_option, one_of, resolve_device, validate
from ..lm.batching import length_bucketed_batches
from ..lm.dtype import autocast_wanted
from ..runs.checkpoints import CheckpointMismatchError, key_diff, load_checkpoint, resume_lock
from ..runs.checkpoints import rng_state as _rng_state
from ..runs.checkpoints import save_atomic as _save_atomic
from ..runs.checkpoints import set_rng_state as _set_rng_state

CHECKPOINT = "checkpoint.pt"


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class LMTrainConfig:
    """Optimisation settings; ``max_steps`` caps the optimizer steps (the schedule spans the capped run)."""

    epochs: int = allowed(1, lambda v: _integer(v) and v > 0, "a positive integer")
    batch_size: int = allowed(4, lambda v: _integer(v) and v > 0, "a positive integer")
    grad_accum: int = allowed(1, lambda v: _integer(v) and v > 0, "a positive integer")
    lr: float = allowed(1e-4, lambda v: _number(v) and v > 0, "> 0")
    weight_decay: float = allowed(0.0, lambda v: _number(v) and v >= 0, ">= 0")
    warmup_ratio: float = allowed(0.03, lambda v: _number(v) and 0 <= v < 1, "in [0, 1)")
    schedule: str = one_of("cosine", "cosine", "linear")
    max_grad_norm: float | None = allowed(1.0, lambda v: v > 0, "> 0 or None")
    seed: int = allowed(0, _integer, "an integer")
    max_minutes: float | None = allowed(None, lambda v: v > 0, "> 0 or None")
    max_steps: int | None = allowed(None, lambda v: _integer(v) and v > 0, "a positive integer or None")
    # optimizer steps; 0: only when stopping or finishing
    checkpoint_every: int = allowed(0, lambda v: _integer(v) and v >= 0, "an integer >= 0")
    device: str = device_option()
    bf16: bool = True  # autocast, CUDA only
    gradient_checkpointing: bool = True  # CUDA only
    progress: bool = True

    def validate(self) -> LMTrainConfig:
        """:func:`semcollab.config.validate` with the keys named ``LMTrainConfig.<key>`` (a ConfigError)."""
        validate(self, prefix="LMTrainConfig.")
        return self

    def trajectory_key(self) -> dict:
        """Settings the parameter trajectory depends on; a checkpoint made under others is refused."""
        skip = {"max_minutes", "checkpoint_every", "device", "progress"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


@dataclass
class LMTrainResult:
    steps: int = 0
    total_steps: int = 0
    epochs_completed: int = 0
    losses: list[float] = field(default_factory=list)  # mean loss per optimizer step, whole run
    stopped_by: str = "finished"  # finished | max_minutes | stop_requested | already_finished
    resumed_from_step: int | None = None
    seconds: float = 0.0  # this call
    tokens: int = 0  # this call
    tokens_per_second: float = 0.0

    @property
    def finished(self) -> bool:
        return self.stopped_by in ("finished", "already_finished")


def _named_trainable(trainable) -> dict[str, nn.Parameter]:
    items = trainable.items() if isinstance(trainable, Mapping) else ((str(i), t) for i, t in enumerate(trainable))
    named, seen = {}, set()
    for key, obj in items:
        pairs = obj.named_parameters() if isinstance(obj, nn.Module) else [("", obj)]
        for n, p in pairs:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                named[f"{key}.{n}" if n else key] = p
    return named


def _scaled_entries(trainable: Mapping, lr_scale: dict[str, float]) -> dict[int, str]:
    """``{id(parameter): key}`` for the trainable parameters of each entry that ``lr_scale`` names, found by
    walking the entries themselves (not by name prefix). A parameter reachable from two entries with
    different rates, or a scaled entry with nothing to train, is an error rather than a silent no-op."""
    unknown = sorted(set(lr_scale) - set(trainable))
    if unknown:
        raise ValueError(f"lr_scale names {unknown}, which are not keys of `trainable` ({sorted(trainable)})")
    for k, v in lr_scale.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (math.isfinite(v) and v > 0):
            raise ValueError(f"lr_scale[{k!r}] must be a finite number > 0, got {v!r}")
    rate = {k: lr_scale.get(k, 1.0) for k in trainable}
    owner: dict[int, str] = {}
    for key, obj in trainable.items():
        params = [p for p in (obj.parameters() if isinstance(obj, nn.Module) else [obj]) if p.requires_grad]
        if key in lr_scale and not params:
            raise ValueError(f"lr_scale[{key!r}] names an entry with no trainable parameter")
        for p in params:
            other = owner.get(id(p), key)
            if rate[other] != rate[key]:
                raise ValueError(f"a parameter is shared by trainable entries {other!r} and {key!r}, which "
                                 f"lr_scale gives different rates ({rate[other]} and {rate[key]})")
            owner.setdefault(id(p), key)
    return {i: k for i, k in owner.items() if k in lr_scale}


def _param_groups(params: list[nn.Parameter], cfg: LMTrainConfig, scaled: dict[int, str],
                  lr_scale: dict[str, float]) -> list[dict]:
    """Matrices decay, vectors (biases, norms) do not. The first two groups are always the unscaled
    matrices and vectors (so a run without ``lr_scale`` builds exactly the optimizer it always did and old
    checkpoints load); each scaled entry adds its own non-empty pair after them."""
    groups = []
    for key in [None, *lr_scale]:
        ps = [p for p in params if scaled.get(id(p)) == key]
        lr = cfg.lr * (lr_scale[key] if key is not None else 1.0)
        for decay in (True, False):
            chosen = [p for p in ps if (p.ndim >= 2) == decay]
            if chosen or key is None:
                groups.append({"params": chosen, "weight_decay": cfg.weight_decay if decay else 0.0, "lr": lr})
    return groups


def _to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return type(batch)({k: _to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _my_rows(idx: list[int], distributed: bool) -> tuple[list[int], float]:
    """This rank's rows of a (micro)batch and the weight of their mean loss (1 in one process)."""
    if not distributed:
        return idx, 1.0
    mine = idx[ddp.shard_rows(len(idx))]
    return mine, ddp.shard_scale(len(mine), len(idx))


def train_lm(loss_fn: Callable[[object], torch.Tensor], trainable, rows: Sequence, lengths: Sequence[int],
             collate: Callable[[list], object], cfg: LMTrainConfig, checkpoint_dir: str | os.PathLike | None = None,
             model: nn.Module | None = None, should_stop: Callable[[int], bool] | None = None,
             log: Callable[[str], None] | None = print,
             lr_scale: Mapping[str, float] | None = None) -> LMTrainResult:
    """Train the parameters in ``trainable`` (modules — only their ``requires_grad`` parameters — or
    parameters; a dict gives them stable names in checkpoints) on ``rows``.

    ``lengths[i]`` is row i's token length (for bucketing and tokens/s); ``collate(list_of_rows)`` builds a
    batch, moved to the device (tensors inside dicts/lists too). ``model`` (optional) is the LM, for
    gradient checkpointing on CUDA. ``should_stop(step)``, asked after each optimizer step, stops the run
    like the time cap does (checkpoint, return). ``lr_scale`` ({key of ``trainable``: factor}) trains that
    entry at ``cfg.lr * factor`` on the same schedule, e.g. LoRA slower than freshly initialised mappers.
    Rerunning with the same ``checkpoint_dir`` resumes; a finished run loads its final parameters and returns
    at once. Under torchrun every rank calls this with the same arguments (see the module docstring)."""
    cfg.validate()
    if len(rows) != len(lengths):
        raise ValueError(f"rows ({len(rows)}) and lengths ({len(lengths)}) differ in length")
    if not len(rows):
        raise ValueError("no training rows")
    distributed, main = ddp.active(), ddp.is_main()
    say = (log if main else None) or (lambda _msg: None)
    device = resolve_device(cfg.device, key="LMTrainConfig.device")
    named = _named_trainable(trainable)
    if not named:
        raise ValueError("nothing to train: no parameter in `trainable` has requires_grad=True")
    modules = [m for m in (trainable.values() if isinstance(trainable, Mapping) else trainable) if isinstance(m, nn.Module)]
    params = list(named.values())
    lr_scale = dict(lr_scale or {})
    if lr_scale and not isinstance(trainable, Mapping):
        raise ValueError("lr_scale needs `trainable` as a dict: its keys name the entries to scale")
    scaled = _scaled_entries(trainable, lr_scale) if lr_scale else {}
    on_cuda = device.type == "cuda"
    # bf16 autocast on CUDA (as always) and on a CPU over bf16 frozen weights (semcollab.lm.dtype); never over fp32 ones
    use_bf16 = autocast_wanted(device, model if model is not None else next(iter(modules), None), cfg.bf16)

    n_batches = math.ceil(len(rows) / cfg.batch_size)
    steps_per_epoch = math.ceil(n_batches / cfg.grad_accum)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    torch.manual_seed(cfg.seed)
    from transformers import get_scheduler

    opt = torch.optim.AdamW(_param_groups(params, cfg, scaled, lr_scale), lr=cfg.lr)
    sched = get_scheduler(cfg.schedule, opt, num_warmup_steps=round(cfg.warmup_ratio * total), num_training_steps=total)
    key = {"config": cfg.trajectory_key(), "n_rows": len(rows),
           "params": {n: tuple(p.shape) for n, p in named.items()}}
    if lr_scale:  # only when given, so checkpoints written before the setting existed still resume
        key["lr_scale"] = {k: float(v) for k, v in sorted(lr_scale.items())}
    step, epoch, pos, order, losses, resumed = 0, 0, 0, None, [], None

    ckpt = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    # this process owns the checkpoint while it trains: a second run of the same settings (two LM-CTR runs sharing
    # a step cache) is refused instead of reading or overwriting it; a killed owner's lock is freed by the kernel
    # under torchrun rank 0 alone locks, reads and writes it
    with resume_lock(ckpt if main else None, remove=True):
        # weights_only=True: a foreign file is refused, its code never runs; rank 0's read is handed to every rank
        state = ddp.on_main(lambda: load_checkpoint(ckpt, "checkpoint") if ckpt is not None and ckpt.exists() else None)
        if state is not None:
            if state["key"] != key:
                raise CheckpointMismatchError(f"checkpoint {ckpt} was made with different {key_diff(state['key'], key)}; "
                                              "use a new checkpoint dir or delete it to start over")
            with torch.no_grad():
                for n, p in named.items():
                    p.copy_(state["trainable"][n])
            losses = list(state["losses"])
            if state["finished"]:
                say(f"training already finished ({state['step']} steps, checkpoint {ckpt}); loaded its parameters")
                return LMTrainResult(steps=state["step"], total_steps=total, epochs_completed=state["epoch"],
                                     losses=losses, stopped_by="already_finished", resumed_from_step=state["step"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            if not distributed:  # ranks reseed per step (ddp.step_seed)
                _set_rng_state(state["rng"])
            step, epoch, pos, order = state["step"], state["epoch"], state["batch"], state["order"]
            resumed = step
            say(f"resuming from step {step}/{total} (epoch {epoch + 1}, batch {pos}) from {ckpt}")
        elif ckpt is not None and main:
            ckpt.parent.mkdir(parents=True, exist_ok=True)

        def save(finished: bool) -> None:
            if ckpt is None or not main:
                return
            _save_atomic({"key": key, "finished": finished, "step": step, "epoch": epoch, "batch": pos, "order": order,
                          "losses": losses, "trainable": {n: p.detach().cpu().clone() for n, p in named.items()},
                          "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": _rng_state(),
                          "config": asdict(cfg)}, ckpt)

        checkpointing = (on_cuda and cfg.gradient_checkpointing and model is not None
                         and hasattr(model, "gradient_checkpointing_enable"))
        if checkpointing:  # non-reentrant: works with a frozen base and inputs_embeds that need no grad
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        modes = [m.training for m in modules]
        for m in modules:
            m.to(device).train()
        result = LMTrainResult(total_steps=total, resumed_from_step=resumed)
        t0 = time.perf_counter()
        bar = tqdm(total=total, initial=step, desc="train", disable=not (cfg.progress and main))
        try:
            while step < total:
                if order is None:
                    order = length_bucketed_batches(lengths, cfg.batch_size, cfg.seed, epoch)
                group = order[pos:pos + cfg.grad_accum]
                opt.zero_grad(set_to_none=True)
                if distributed:
                    torch.manual_seed(ddp.step_seed(cfg.seed, step))
                step_loss = 0.0
                for idx in group:
                    result.tokens += int(sum(lengths[i] for i in idx))  # the global batch's, on every rank
                    idx, weight = _my_rows(idx, distributed)
                    if not idx:  # this rank's slice of a short batch is empty: it adds zero gradients
                        continue
                    batch = _to_device(collate([rows[i] for i in idx]), device)
                    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                        loss = loss_fn(batch)
                    if not distributed and not torch.isfinite(loss):
                        raise FloatingPointError(f"loss became {loss.item()} at step {step + 1}; lower LMTrainConfig.lr")
                    ((loss if weight == 1.0 else loss * weight) / len(group)).backward()
                    step_loss += loss.item() * weight / len(group)
                if distributed:  # mean gradients over the ranks; rank 0's clock decides the time cap for all
                    loss_sum, clock = ddp.average_gradients(params, [step_loss, (time.perf_counter() - t0) * main])
                    step_loss = loss_sum / ddp.world_size()
                    if not math.isfinite(step_loss):
                        raise FloatingPointError(f"loss became {step_loss} at step {step + 1}; lower LMTrainConfig.lr")
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                sched.step()
                step += 1
                losses.append(step_loss)
                pos += len(group)
                if pos >= len(order):
                    epoch, pos, order = epoch + 1, 0, None
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
                done = step >= total
                elapsed = clock if distributed else time.perf_counter() - t0
                timed_out = cfg.max_minutes is not None and elapsed > 60 * cfg.max_minutes
                stop = should_stop is not None and ddp.from_main(should_stop(step))  # one decision for all ranks
                if done or timed_out or stop or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                    save(finished=done)
                if not done and (timed_out or stop):
                    result.stopped_by = "max_minutes" if timed_out else "stop_requested"
                    say(f"stopped at step {step}/{total} ({result.stopped_by})" +
                        (f"; rerun with checkpoint dir {ckpt.parent} to continue" if ckpt else ""))
                    break
        finally:
            bar.close()
            if checkpointing:
                model.gradient_checkpointing_disable()
            for m, was in zip(modules, modes):
                m.train(was)
        result.steps, result.epochs_completed, result.losses = step, epoch, losses
        result.seconds = time.perf_counter() - t0
        result.tokens_per_second = result.tokens / max(result.seconds, 1e-9)
        return result
