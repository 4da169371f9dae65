"""The ranking task: next-item prediction over the whole catalogue (``semcollab train``; ``semcollab.run`` with a
ranking model). Trains a :class:`~semcollab.models.Recommender`, evaluates valid and test (full ranking), saves
the run folder, and rebuilds a saved one (:func:`load_ranking_run`; :class:`RankingRun` for ``semcollab.load_run``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from .. import distributed as ddp
from ..config import (
    ConfigError,
    RunConfig,
    dataset_name,
    from_dict,
    resolve_config,
    to_dict,
)
from ..data import DataError, Split, load_split
from ..data.sources.files import symlink_loop
from ..errors import DataChangedError, IncompatibleRunError, RunFileError
from ..evaluation.ranking import evaluate_ranking
from ..models import build_model, canonical_name, typed_params
from ..models.pop_correction import corrected
from ..runs.checkpoints import (
    note_other_resume_files,
    remove_resume_file,
    resume_lock,
    run_resume_target,
    trajectory_settings,
)
from ..runs.files import check_writable
from ..runs.record import save_run_record, write_run_dir
from ..train.trainer import fit, resolve_device, seed_everything
from .base import Run, RunResult, read_json_file, read_run_config_file, read_run_record, read_weights


def _as_config(config, model, dataset, overrides) -> RunConfig:
    # one source of truth: dataset= and a data.name of the config / overrides must agree (as on the command line)
    dataset = dataset_name(dataset, config, overrides, flag="the dataset= argument")
    cfg = resolve_config(config, overrides)
    if model is not None:
        cfg.model = model
    if dataset is not None:
        cfg.data.name = dataset
    cfg.model = canonical_name(cfg.model)
    cfg.fold_legacy_keys()
    cfg.model_params = typed_params(cfg.model, cfg.model_params)
    # absolute paths: a saved run must find its data again when evaluated from another directory
    for key in ("path", "meta_path", "cache_dir"):
        value = getattr(cfg.data, key)
        if value:
            setattr(cfg.data, key, str(Path(value).expanduser().resolve()))
    return cfg


def _state_bytes(net: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in net.state_dict().values())


def run_ranking(model: str | None = None, dataset: str | None = None, config=None,
                overrides: list[str] | None = None, log=print, save: bool = True) -> RunResult:
    """Prepare data, train ``model``, evaluate on valid and test, and save the run.

    ``config`` is a YAML path, a nested dict or a :class:`RunConfig`; ``overrides`` are ``key=value``
    strings applied on top (``["train.epochs=5", "model_params.hidden=128"]``). Every setting is checked
    before data is read; the output folder is checked before training; the same seed, data and config
    give the same numbers (on CPU). A saved run checkpoints its training under ``output_dir/.resume/`` (see
    ``train.checkpoint_minutes``): calling ``run`` again with the same arguments after it was killed continues
    from there and ends with the weights an unbroken run would have; the file is removed once the run is saved.

    Under torchrun every process calls this with the same arguments and trains its shard of each batch
    (:mod:`semcollab.distributed`); the ranks share each evaluation; rank 0 alone logs, writes the run folder and the resume
    checkpoint, and every rank returns its result."""
    cfg = _as_config(config, model, dataset, overrides)
    main = not ddp.setup() or ddp.is_main()
    log = log if main else None
    if save and main:
        check_writable(cfg.output_dir)
    with ddp.main_first():  # rank 0 prepares the split (and its cache) before the others read it
        split = load_split(cfg.data, log=log)
    if log:
        log(f"dataset {split.name}: {split.stats}")
    if max(cfg.eval.ks) > split.n_items:
        raise ConfigError(f"config key 'eval.ks' asks for @{max(cfg.eval.ks)}, but {split.name} has only "
                          f"{split.n_items} items")
    seed_everything(cfg.train.seed)  # before the weights are created: same seed, same initial model
    net = build_model(cfg.model, cfg.model_params, split)
    if save and main:  # a full disk is found now, not after the last epoch
        check_writable(cfg.output_dir, _state_bytes(net) if cfg.save_model else 0)
    ckpt = ident = fingerprint = None
    if save:
        fingerprint = split.fingerprint()  # once: the resume key and run.json both record it
        data = {k: v for k, v in to_dict(cfg.data).items() if k not in ("cache", "cache_dir")}
        ckpt, ident = run_resume_target(cfg.output_dir, cfg.model, cfg.data.name, cfg.model_params, data, fingerprint,
                                        {"train": trajectory_settings(cfg.train), "eval": trajectory_settings(cfg.eval)})
        if main:
            note_other_resume_files(ckpt, log)
    with resume_lock(ckpt if main else None):  # owned while it trains; a failed run gives it up (checkpoint stays)
        result = fit(net, split, cfg.train, cfg.eval, log=log, checkpoint=ckpt, checkpoint_key=ident)
        device = resolve_device(cfg.train.device)
        pop = split.item_popularity()

        valid, test = (evaluate_ranking(net, split.eval_set(part), split.n_items, pop, cfg.eval, device,
                                        over_ranks=ddp.active())  # under torchrun: split over ranks, gathered
                       for part in ("valid", "test"))
        run_dir = None
        if save and main:
            def write(tmp: Path) -> None:
                (tmp / "metrics.json").write_text(json.dumps({"valid": valid, "test": test}, indent=2))
                if cfg.save_model:
                    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
                              str(tmp / "model.safetensors"))
                save_run_record(tmp, cfg, {"dataset_stats": split.stats, "data_fingerprint": fingerprint,
                                           "fit": result.__dict__})

            run_dir = write_run_dir(cfg.output_dir, cfg.model, cfg.data.name, write)
            remove_resume_file(ckpt)
        run_dir = ddp.from_main(run_dir)
    return RunResult("ranking", cfg, {"valid": valid, "test": test}, run_dir, result, net, split)


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The validated config of a saved run, with a message naming the file when it is damaged."""

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        if symlink_loop(run_dir):
            raise RunFileError(f"{run_dir}: symlink loop (a symbolic link on this path points back to itself); "
                               "give the real run folder")
        raise RunFileError(f"{run_dir} is not a folder; give a run folder written by `semcollab train`")
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists() and not cfg_path.is_symlink():
        raise RunFileError(f"{run_dir} is not a semcollab run folder (no config.yaml)")
    data = read_run_config_file(cfg_path)
    try:
        return from_dict(RunConfig, data)
    except ConfigError as exc:
        raise RunFileError(f"{cfg_path}: {exc}") from None


DATA_PATH_KEYS = ("path", "meta_path", "cache_dir")  # where a saved run's data is: may change, content may not


def _moved_data_config(cfg: RunConfig, data_paths: dict) -> list[str]:
    """Point ``cfg.data`` at ``data_paths`` (``{"path": ...}``; keys of :data:`DATA_PATH_KEYS`) as absolute
    paths; returns the keys that locate the data itself (not the cache) and changed."""
    moved = []
    for key, value in data_paths.items():
        if key not in DATA_PATH_KEYS:
            raise ConfigError(f"only data.{', data.'.join(DATA_PATH_KEYS)} can be changed for a saved run, not "
                              f"data.{key}: the other data settings decide what the model was trained on")
        if value in (None, ""):
            raise ConfigError(f"data.{key} needs a path")
        try:
            new = str(Path(value).expanduser().resolve())
        except (OSError, RuntimeError) as exc:
            if symlink_loop(Path(value)):
                raise DataError(f"data.{key}={value}: symlink loop (a symbolic link on this path points back to "
                                "itself)") from None
            raise DataError(f"data.{key}={value}: {exc}") from None
        if key != "cache_dir" and new != getattr(cfg.data, key):
            moved.append(key)
        setattr(cfg.data, key, new)
    return moved


def load_ranking_run(run_dir: str | Path, log=None, allow_data_change: bool = False,
                     data_paths: dict | None = None) -> tuple[RunConfig, torch.nn.Module, Split]:
    """Rebuild a saved run's model (weights from ``model.safetensors``) and its data split.

    The split is prepared again from the run's source files; if its fingerprint differs from the one
    recorded at training time (the file was edited or replaced), this raises :class:`DataChangedError`
    unless ``allow_data_change`` (then it only warns): numbers from other data must not pass silently.
    ``data_paths`` (``{"path": ..., "meta_path": ..., "cache_dir": ...}``) finds data that moved: the split
    read from there must have the recorded fingerprint (same content), under the same rule."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    meta = read_run_record(run_dir)
    recorded = meta.get("data_fingerprint")
    trained_at = cfg.data.path or "its default location"
    moved = _moved_data_config(cfg, data_paths or {})
    if moved and recorded is None and not allow_data_change:
        raise DataChangedError(f"run {run_dir} has no recorded data fingerprint (run.json), so data at "
                               f"data.{moved[0]}={getattr(cfg.data, moved[0])} cannot be checked against what it "
                               "was trained on; pass --allow-data-change to use it anyway")
    if moved and recorded is None:
        warnings.warn(f"run {run_dir} has no recorded data fingerprint: the data at {getattr(cfg.data, moved[0])} "
                      "is used unchecked because allow_data_change was given", stacklevel=2)
    try:
        split = load_split(cfg.data, log=log)
    except DataError as exc:
        if moved:
            raise
        raise DataError(f"{exc}. Run {run_dir} was trained on {cfg.data.name} at {trained_at}; if the data "
                        "moved, give its new place with --data.path=... (and --data.meta_path=...): it is "
                        "accepted when its content has the run's recorded fingerprint") from None
    if recorded is not None and recorded != split.fingerprint():
        msg = (f"the data of run {run_dir} has changed since it was trained: {cfg.data.name} "
               f"({cfg.data.path or 'default location'}) now prepares to different contents "
               f"(fingerprint {split.fingerprint()[:12]} != recorded {recorded[:12]})")
        if not allow_data_change:
            raise DataChangedError(msg + ". Restore the original file, or pass --allow-data-change to use "
                                         "the current data anyway.")
        warnings.warn(msg + "; continuing because allow_data_change was given", stacklevel=2)
    elif moved and log:
        log(f"data of run {run_dir} read from {cfg.data.path} (trained at {trained_at}): same content "
            f"(fingerprint {split.fingerprint()[:12]})")
    net = build_model(cfg.model, cfg.model_params, split)
    weights = run_dir / "model.safetensors"
    state = read_weights(run_dir)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:  # torch names every missing, unexpected and wrongly shaped tensor
        raise IncompatibleRunError(
            f"{weights} does not fit the {cfg.model!r} model this semcollab version builds from its config "
            f"(saved by an older version? git hash in run.json): {exc}") from exc
    return cfg, net, split


class RankingRun(Run):
    """A saved ranking run: ``score`` is the model's score of every item after the user's whole known history
    (train, valid and test events, the most recent ``max_len``), as ``semcollab recommend`` ranks them (with the
    run's ``eval.pop_correction``, as it was evaluated and is served)."""

    task = "ranking"

    def __init__(self, path: Path, config: RunConfig, model: torch.nn.Module, split: Split):
        super().__init__(path, config, read_json_file(Path(path) / "metrics.json"))
        self._model, self.split = model.eval(), split
        self._ranker = corrected(self._model, split.item_popularity(), config.eval.pop_correction).eval()
        self._histories = None

    @property
    def model(self) -> torch.nn.Module:
        return self._model

    @property
    def item_vocab(self):
        return self.split.item_vocab

    def seen(self, user: str) -> np.ndarray:
        if self._histories is None:
            self._histories = self.split._sequences([self.split.train, self.split.valid, self.split.test])
        return self._histories[self.split.user_vocab.encode(str(user))]

    @torch.inference_mode()
    def score(self, user: str, items: list[str] | None = None) -> np.ndarray:
        hist = self.seen(user)
        max_len = self._model.max_len or max(1, len(hist))
        seq = torch.as_tensor(np.array(hist[-max_len:], dtype=np.int64))[None]
        scores = self._ranker.score(torch.as_tensor([self.split.user_vocab.encode(str(user))]), seq)[0].float()
        return scores.cpu().numpy()[self.item_indices(items)]


def load_ranking_view(path: str | Path, allow_data_change: bool = False, data_paths: dict | None = None) -> RankingRun:
    """:class:`RankingRun` of a saved ranking run folder (weights and data checked as :func:`load_ranking_run`)."""
    cfg, net, split = load_ranking_run(path, allow_data_change=allow_data_change, data_paths=data_paths)
    return RankingRun(Path(path), cfg, net.to("cpu"), split)


__all__ = ["DATA_PATH_KEYS", "RankingRun", "load_ranking_run", "load_ranking_view", "read_run_config",
           "run_ranking"]
