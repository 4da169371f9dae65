"""Click-through-rate prediction: does user u like item i? (the task of CoLLM, TALLRec, SeLLa-Rec, SAILRec)

``semcollab ctr train --model mf --dataset collm-ml-1m`` or :func:`run_ctr`; metrics AUC, UAUC and
log-loss on all / warm / cold rows of valid and test; model selection on validation AUC.

A CTR model is a :class:`~semcollab.models.base.CTRModel` registered with ``@register(name, task="ctr")``; the
base class documents the contract (``logits``, ``loss``, ``from_split``, ``own_schedule`` / ``fit_ctr``,
``trainable_state_dict``). :class:`CTRRun` is a saved CTR run as ``semcollab.load_run`` returns it."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from .. import distributed as ddp
from .. import registry
from ..config import ConfigError, DataConfig, dataset_name, from_dict, resolve_config, to_dict
from ..config.ctr import CTRRunConfig, CTRTrainConfig
from ..data import DataError, load_ctr
from ..data.ctr import CTRSplit, prepare_ctr, subsample_index
from ..errors import DataChangedError, DistributedError, IncompatibleRunError, RunFileError, TrainingIncomplete
from ..evaluation.ctr import ctr_report, predict
from ..hub.wheels import default_cache_dir
from ..methods.lm_ctr.attention_report import attention_report, check_attention_args
from ..models.base import CTRModel
from ..runs.checkpoints import (
    note_other_resume_files,
    release_resume_lock,
    remove_resume_file,
    run_resume_target,
    trajectory_settings,
)
from ..runs.files import check_writable
from ..runs.record import save_run_record, write_run_dir
from ..runs.shards import content_key, inference_shards
from ..train.ctr import fit_ctr
from ..train.trainer import resolve_device, seed_everything
from .base import Run, RunResult, read_json_file, read_run_config_file, read_run_record, read_weights


def ctr_model_entry(name: str) -> registry.ModelEntry:
    """The registered CTR model ``name`` (``@register(name, task="ctr")``; plugins included)."""
    try:
        return registry.model_entry(name, task="ctr")
    except ConfigError:
        raise ConfigError(f"unknown CTR model {name!r}; available: {registry.list_models('ctr')}") from None


def build_ctr_model(name: str, params: dict, split: CTRSplit) -> CTRModel:
    entry = ctr_model_entry(name)
    return entry.cls.from_split(split, from_dict(entry.config, params, prefix="model_params."))


def load_ctr_split(cfg: CTRRunConfig) -> CTRSplit:
    d = cfg.data
    data = load_ctr(DataConfig(name=d.name, path=d.path), allow_pickle=d.allow_pickle)
    return prepare_ctr(data, d.history_len, {"train": d.max_train_rows, "valid": d.max_valid_rows,
                                             "test": d.max_test_rows}, d.subsample_seed)


def ctr_fingerprint(split: CTRSplit) -> str:
    """SHA-256 of every row the run used (ids, labels, warm flags, histories) and the item titles."""
    h = hashlib.sha256(split.name.encode())
    for s in ("train", "valid", "test"):
        p = split.parts[s]
        for a in (p.users, p.items, p.labels, p.warm.astype(np.int8), p.history):
            h.update(np.ascontiguousarray(a).tobytes())
    h.update("\x00".join(map(str, split.user_vocab.ids)).encode())
    h.update("\x00".join(map(str, split.item_vocab.ids)).encode())
    h.update("\x00".join(split.titles).encode())
    return h.hexdigest()


def _state(model: CTRModel) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}


# LM models run their own schedule from model_params; these train.* keys have equivalents there
LM_TRAIN_KEYS = {"epochs": "lm_epochs", "lr": "lm_lr / soft_lr", "batch_size": "batch_size", "seed": "seed",
                 "max_minutes": "max_minutes", "weight_decay": None, "patience": None, "min_epochs": None,
                 "checkpoint_minutes": "checkpoint_every (optimizer steps)"}


def _refuse_ignored_train_keys(cls: type[CTRModel], cfg: CTRRunConfig) -> None:
    """A model with its own schedule (the LM ones) would silently ignore ``train.epochs`` etc.: refuse them,
    naming the key to use."""
    if not cls.own_schedule:
        return
    default = CTRTrainConfig()
    for key, instead in LM_TRAIN_KEYS.items():
        if getattr(cfg.train, key) != getattr(default, key):
            hint = f"use model_params.{instead}" if instead else "it has no equivalent"
            raise ConfigError(f"config key 'train.{key}' does not apply to the LM model {cfg.model!r} "
                              f"(its schedule is set in model_params); {hint}")


def run_ctr(model: str | None = None, dataset: str | None = None, config=None, overrides: list[str] | None = None,
            log=print, save: bool = True) -> RunResult:
    """Train a CTR model, select it on validation AUC, report valid and test (all / warm / cold).

    Under torchrun (LM models only: their step loop is data-parallel, :func:`semcollab.train.lm_steps.train_lm`)
    every rank calls this with the same arguments; rank 0 alone logs and writes the run folder, and every rank
    returns the result with rank 0's ``run_dir``."""
    # one source of truth: dataset= and a data.name of the config / overrides must agree (as on the command line)
    dataset = dataset_name(dataset, config, overrides, flag="the dataset= argument")
    cfg = resolve_config(config, overrides, CTRRunConfig)
    if model is not None:
        cfg.model = model
    if dataset is not None:
        cfg.data.name = dataset
    entry = ctr_model_entry(cfg.model)
    cfg.model = entry.name
    _refuse_ignored_train_keys(entry.cls, cfg)
    if ddp.env_world_size() > 1 and not entry.cls.own_schedule:
        raise DistributedError(f"the CTR model {cfg.model!r} trains in one process only (the shared CTR epoch loop "
                               "is not data-parallel); the LM CTR models train under torchrun")
    main = not ddp.setup() or ddp.is_main()
    log = log if main else None  # rank 0 alone logs and writes
    cfg.model_params = {k: v for k, v in to_dict(from_dict(entry.config, cfg.model_params, "model_params.")).items()
                        if k in cfg.model_params}
    if cfg.data.path:
        cfg.data.path = str(Path(cfg.data.path).expanduser().resolve())
    if save and main:
        check_writable(cfg.output_dir)
    split = load_ctr_split(cfg)
    if log:
        log(f"CTR data {split.name}: {json.dumps(split.stats)}")
    seed_everything(cfg.train.seed)
    net = build_ctr_model(cfg.model, cfg.model_params, split)
    device = resolve_device(cfg.train.device)
    net.to(device)
    ckpt = None
    fingerprint = ctr_fingerprint(split) if save else None  # once: the resume key and run.json both record it
    try:  # a failed run gives up its resume lock (the checkpoint stays for the rerun)
        if net.own_schedule:  # LM models: their own step-wise loop resumes from its checkpoint folder
            result = net.fit_ctr(split, cfg.train, device, log)
        else:
            ident = None
            if save:  # the same command resumes a killed run (output_dir/.resume/), as `semcollab train` does
                ckpt, ident = run_resume_target(cfg.output_dir, cfg.model, cfg.data.name, cfg.model_params,
                                                to_dict(cfg.data), fingerprint, {"train": trajectory_settings(cfg.train)})
                note_other_resume_files(ckpt, log)
            result = fit_ctr(net, split, cfg.train, device, log, checkpoint=ckpt, checkpoint_key=ident)
        valid = ctr_report(split.parts["valid"], predict(net, split.parts["valid"], device=device))
        test = ctr_report(split.parts["test"], predict(net, split.parts["test"], device=device))
        run_dir = None
        if save and main:
            def write(tmp: Path) -> None:
                (tmp / "metrics.json").write_text(json.dumps({"valid": valid, "test": test}, indent=2))
                if cfg.save_model:
                    save_file(_state(net), str(tmp / "model.safetensors"))
                save_run_record(tmp, cfg, {"task": "ctr", "data_stats": split.stats,
                                           "data_fingerprint": fingerprint, "fit": result.__dict__})

            run_dir = write_run_dir(cfg.output_dir, cfg.model, cfg.data.name, write)
            remove_resume_file(ckpt)
        run_dir = ddp.from_main(run_dir)
    finally:
        release_resume_lock(ckpt)
    return RunResult("ctr", cfg, {"valid": valid, "test": test}, run_dir, result, net, split)


def load_ctr_run(run_dir, allow_data_change: bool = False, allow_pickle: bool = False):
    """Rebuild a saved CTR run: its config, model (trained weights loaded) and data.

    A run folder may come from anyone, so the ``data.allow_pickle`` its config.yaml records is not honoured:
    unknown pickles are read only with ``allow_pickle=True`` given now (``ctr evaluate --data.allow_pickle=true``)."""
    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    if not path.exists() and not path.is_symlink():
        raise RunFileError(f"{run_dir} is not a CTR run folder (no config.yaml)")
    try:
        cfg = from_dict(CTRRunConfig, read_run_config_file(path))
    except (ConfigError, TypeError, AttributeError) as exc:
        raise RunFileError(f"{path} is not a CTR run config ({exc})") from None
    meta = read_run_record(run_dir)
    recorded, cfg.data.allow_pickle = cfg.data.allow_pickle, allow_pickle
    try:
        split = load_ctr_split(cfg)
    except DataError as exc:
        if recorded and not allow_pickle and "allow_pickle" in str(exc):
            raise DataError(f"CTR run {run_dir} records data.allow_pickle=true, but a saved run cannot opt itself in "
                            f"(its config.yaml may come from anyone): {exc}. If you trust {cfg.data.path}, pass "
                            "--data.allow_pickle=true to `semcollab ctr evaluate` (allow_pickle=True to "
                            "load_ctr_run)") from None
        raise
    fp = ctr_fingerprint(split)
    if meta.get("data_fingerprint") not in (None, fp):
        msg = f"the data of CTR run {run_dir} has changed since it was trained"
        if not allow_data_change:
            raise DataChangedError(msg + "; restore it or pass --allow-data-change")
        warnings.warn(msg, stacklevel=2)
    net = build_ctr_model(cfg.model, cfg.model_params, split)
    weights = run_dir / "model.safetensors"
    state = read_weights(run_dir)
    try:
        net.load_trainable_state_dict(state)
    except RuntimeError as exc:
        raise IncompatibleRunError(f"{weights} does not fit the {cfg.model!r} model: {exc}") from exc
    return cfg, net, split


def evaluate_ctr_run(run_dir, stage: str = "test", allow_data_change: bool = False, max_rows: int | None = None,
                     subsample_seed: int = 0, allow_pickle: bool = False) -> dict:
    """Metrics of a saved run on its ``stage`` rows; ``max_rows`` scores the same fixed random subset that
    ``data.max_<stage>_rows`` / ``data.subsample_seed`` select, so a full-data baseline can be compared with
    LM runs scored on a CPU-budget subset (the run's own data fingerprint is still checked first)."""
    if stage not in ("valid", "test"):
        raise ValueError(f"stage must be valid or test, got {stage!r}")
    distributed = ddp.setup()  # under torchrun (before the device is chosen: a GPU rank takes cuda:LOCAL_RANK)
    cfg, net, split = load_ctr_run(run_dir, allow_data_change, allow_pickle=allow_pickle)
    part = split.unsubsampled().parts[stage]
    if max_rows is not None:
        part = part.take(subsample_index(len(part), max_rows, subsample_seed))
    device = resolve_device(cfg.train.device)
    net.to(device)
    if distributed:  # under torchrun an LM model's rows are scored in shards, one per rank, then merged
        key = content_key("ctr-evaluate", _file_digest(Path(run_dir) / "model.safetensors"),
                          _file_digest(Path(run_dir) / "config.yaml"), ctr_fingerprint(split), stage, max_rows,
                          subsample_seed, str(device))
        with inference_shards(Path(default_cache_dir()) / "shards" / "ctr-evaluate", key):
            probs = predict(net, part, device=device)
    else:
        probs = predict(net, part, device=device)
    out = ctr_report(part, probs)
    out["rows"] = {"scored": len(part), "subsample": None if max_rows is None else {"rows": max_rows,
                                                                                    "seed": subsample_seed}}
    return out


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class CTRRun(Run):
    """A saved CTR run: ``score`` is P(like) of each item for the user, given the history of the user's most recent
    row (as the serving API scores a known user); ``recommend`` ranks every item by it, the user's rows masked."""

    task = "ctr"
    BATCH = 1024  # rows scored at once

    def __init__(self, path: Path, config: CTRRunConfig, model: CTRModel, split: CTRSplit):
        super().__init__(path, config, read_json_file(Path(path) / "metrics.json"))
        self._model, self.split = model.eval(), split
        self._last: dict[int, np.ndarray] | None = None
        self._seen: dict[int, set] | None = None

    @property
    def model(self) -> CTRModel:
        return self._model

    @property
    def item_vocab(self):
        return self.split.item_vocab

    def _index(self) -> None:
        last, seen = {}, {}
        for part in ("train", "valid", "test"):  # in time order: the last row seen is the user's most recent
            p = self.split.unsubsampled().parts[part]
            for u, i, h in zip(p.users.tolist(), p.items.tolist(), p.history):
                last[u] = h
                seen.setdefault(u, set()).add(i)
        self._last, self._seen = last, seen

    def history(self, user: str) -> np.ndarray:
        """The user's most recent row's history (item indices, left-padded with 0)."""
        if self._last is None:
            self._index()
        u = self.split.user_vocab.encode(str(user))
        return self._last.get(u, np.zeros(self.split.history_len, dtype=np.int64))

    def seen(self, user: str) -> np.ndarray:
        if self._seen is None:
            self._index()
        u = self.split.user_vocab.encode(str(user))
        hist = self.history(user)
        return np.asarray(sorted(self._seen.get(u, set()) | set(hist[hist > 0].tolist())), dtype=np.int64)

    @torch.inference_mode()
    def score(self, user: str, items: list[str] | None = None) -> np.ndarray:
        """P(like) of each of ``items`` (raw ids; every item when None) for ``user``."""
        u, idx, hist = self.split.user_vocab.encode(str(user)), self.item_indices(items), self.history(user)
        device = next(self._model.parameters()).device
        out = []
        for s in range(0, len(idx), self.BATCH):
            rows = idx[s:s + self.BATCH]
            n = len(rows)
            batch = {"row": torch.zeros(n, dtype=torch.long), "users": torch.full((n,), u, device=device),
                     "items": torch.as_tensor(rows, device=device), "labels": torch.zeros(n, device=device),
                     "history": torch.as_tensor(np.tile(hist, (n, 1)), device=device)}
            out.append(torch.sigmoid(self._model.logits(batch).float()).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)


def load_ctr_view(path: str | Path, allow_data_change: bool = False, allow_pickle: bool = False) -> CTRRun:
    """:class:`CTRRun` of a saved CTR run folder (data and weights checked as :func:`load_ctr_run`)."""
    cfg, net, split = load_ctr_run(path, allow_data_change, allow_pickle=allow_pickle)
    return CTRRun(Path(path), cfg, net, split)


def attention_diagnostic(run_dir, out_dir=None, stage: str = "test", rows: int = 256, seed: int = 0,
                         batch_size: int = 8, allow_data_change: bool = False, allow_pickle: bool = False) -> dict:
    """Load a CTR run with soft tokens (collm, sellarec, sailrec) and record its per-layer attention to the
    collaborative tokens (:func:`~semcollab.methods.lm_ctr.attention_report.attention_report`): ``attention.json`` /
    ``attention.png`` in ``out_dir`` (default: the run folder); returns the report."""
    check_attention_args(stage, rows)  # before the run is loaded
    cfg, net, split = load_ctr_run(run_dir, allow_data_change, allow_pickle=allow_pickle)
    net.to(resolve_device(cfg.train.device))
    return attention_report(net, split, cfg.model, run_dir, out_dir, stage, rows, seed, batch_size)


__all__ = ["attention_diagnostic", "CTRRun", "CTRRunConfig", "CTRSplit", "TrainingIncomplete", "build_ctr_model", "ctr_model_entry",
           "ctr_report", "evaluate_ctr_run", "fit_ctr", "load_ctr_run", "load_ctr_view", "predict", "prepare_ctr",
           "run_ctr"]
