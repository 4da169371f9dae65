"""Python API: ``semcollab.run(model=..., dataset=..., config=...)``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import RunConfig, from_dict, load_config, to_dict
from .data import Split, load_split
from .evaluate.evaluator import evaluate_ranking
from .models import build_model, canonical_name, typed_params
from .runinfo import new_run_dir, save_run_record
from .train.trainer import FitResult, fit, resolve_device


@dataclass
class RunResult:
    config: RunConfig
    valid: dict
    test: dict
    fit: FitResult
    run_dir: Path | None
    model: torch.nn.Module
    split: Split


def _as_config(config, model, dataset, overrides) -> RunConfig:
    if isinstance(config, RunConfig):
        base = to_dict(config)
        cfg = load_config(None, overrides, **base)
    elif isinstance(config, dict):
        cfg = load_config(None, overrides, **config)
    else:
        cfg = load_config(config, overrides)
    if model is not None:
        cfg.model = model
    if dataset is not None:
        cfg.data.name = dataset
    cfg.model = canonical_name(cfg.model)
    cfg.model_params = typed_params(cfg.model, cfg.model_params)
    return cfg


def run(model: str | None = None, dataset: str | None = None, config=None, overrides: list[str] | None = None,
        log=print, save: bool = True) -> RunResult:
    """Prepare data, train ``model``, evaluate on valid and test, and save the run.

    ``config`` is a YAML path, a nested dict or a :class:`RunConfig`; ``overrides`` are ``key=value``
    strings applied on top (``["train.epochs=5", "model_params.hidden=128"]``)."""
    cfg = _as_config(config, model, dataset, overrides)
    split = load_split(cfg.data, log=log)
    if log:
        log(f"dataset {split.name}: {split.stats}")
    net = build_model(cfg.model, cfg.model_params, split)
    result = fit(net, split, cfg.train, cfg.eval, log=log)
    device = resolve_device(cfg.train.device)
    pop = split.item_popularity()
    valid = evaluate_ranking(net, split.eval_set("valid"), split.n_items, pop, cfg.eval, device)
    test = evaluate_ranking(net, split.eval_set("test"), split.n_items, pop, cfg.eval, device)
    run_dir = None
    if save:
        run_dir = new_run_dir(cfg.output_dir, cfg.model, cfg.data.name)
        (run_dir / "metrics.json").write_text(json.dumps({"valid": valid, "test": test}, indent=2))
        if cfg.save_model:
            save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
                      str(run_dir / "model.safetensors"))
        save_run_record(run_dir, cfg, {"dataset_stats": split.stats, "fit": result.__dict__})
    return RunResult(cfg, valid, test, result, run_dir, net, split)


class IncompatibleRunError(RuntimeError):
    """A saved run's weights do not fit the model this version builds from the run's config."""


def load_run(run_dir: str | Path, log=None) -> tuple[RunConfig, torch.nn.Module, Split]:
    """Rebuild a saved run's model (weights from ``model.safetensors``) and its data split."""
    import yaml

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a semcollab run folder (no config.yaml)")
    cfg = from_dict(RunConfig, yaml.safe_load(cfg_path.read_text()))
    split = load_split(cfg.data, log=log)
    net = build_model(cfg.model, cfg.model_params, split)
    weights = run_dir / "model.safetensors"
    if not weights.exists():
        raise FileNotFoundError(f"{weights} is missing (the run was saved with save_model=false)")
    try:
        net.load_state_dict(load_file(str(weights)))
    except RuntimeError as exc:  # torch names every missing, unexpected and wrongly shaped tensor
        raise IncompatibleRunError(
            f"{weights} does not fit the {cfg.model!r} model this semcollab version builds from its config "
            f"(saved by an older version? git hash in run.json): {exc}") from exc
    return cfg, net, split
