"""Re-evaluating a saved ranking run, e.g. under the sampled protocol: the body of ``semcollab evaluate`` and of
``experiments/reaemb_s3rec/evaluate_sampled.py`` as one Python function, plus the rule for where a saved run's
data is now."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from ..config import (
    ConfigError,
    EvalConfig,
    RunConfig,
    apply_overrides,
    from_dict,
    raw_config,
    resolve_device,
    to_dict,
)
from ..evaluation.ranking import evaluate_ranking
from ..methods.complementarity.diagnose import diagnose
from ..methods.saerec.branch_stats import saerec_branch_stats
from ..methods.saerec.model import SAERec
from .base import read_run_record
from .ranking import DATA_PATH_KEYS, load_ranking_run, read_run_config

STAGES = ("valid", "test")


@dataclass
class RunEvaluation:
    model: str  # the run's model name
    dataset: str  # the split's name
    stage: str
    metrics: dict  # what evaluate_ranking returns


def eval_overrides_only(overrides: list[str]) -> None:
    """A saved run is re-evaluated with other ``eval.*`` settings only: anything else decides what was trained."""
    bad = [a for a in overrides if not a.lstrip("-").startswith("eval.")]
    if bad:
        raise ConfigError(f"evaluate takes only eval.* overrides and --data.path/--data.meta_path/"
                          f"--data.cache_dir=...; got {bad}")


def config_data_paths(config: str | Path | None, run_dir: str | Path, data_paths: dict | None = None) -> dict:
    """Where a saved run's data is now, from a config file: its ``data:`` section (the one given to ``train``)
    says data.path/meta_path/cache_dir (``data_paths`` win); its other data settings must be the run's, since they
    decide what the model was trained on. Other sections are not used (the run keeps its own): a warning names
    them."""
    data_paths = dict(data_paths or {})
    if config is None:
        return data_paths
    raw = raw_config(config)  # read once, through the config-file guards (not a FIFO, not oversized, valid YAML)
    from_file = from_dict(RunConfig, raw).data  # the whole file validated: unknown keys and bad values are errors
    section = raw.get("data") or {}
    run_data = read_run_config(run_dir).data
    for key in section:
        if key not in DATA_PATH_KEYS and getattr(from_file, key) != getattr(run_data, key):
            raise ConfigError(f"{config}: data.{key} is {getattr(from_file, key)!r}, but run {run_dir} was trained "
                              f"with {getattr(run_data, key)!r}; a saved run keeps the data settings it was trained "
                              "on (only data.path, data.meta_path and data.cache_dir may change)")
    unused = sorted(k for k in raw if k != "data")
    if unused:
        warnings.warn(f"{config}: section(s) {unused} not used: run {run_dir} keeps its own; only data.* is read",
                      stacklevel=2)
    paths = {k: section[k] for k in DATA_PATH_KEYS if section.get(k)}
    return {**paths, **data_paths}


def evaluate_run(run_dir: str | Path, stage: str = "test", overrides: list[str] | None = None, *,
                 allow_data_change: bool = False, data_paths: dict | None = None, config: str | Path | None = None,
                 log=None) -> dict:
    """Re-evaluate a saved ranking run on ``stage`` (valid or test); returns the metrics dict that
    ``semcollab evaluate`` prints.

    ``overrides`` are ``eval.*`` settings over the run's own (``["eval.protocol=sampled", "eval.n_negatives=100"]``).
    ``data_paths`` (``{"path": ...}``) or the ``data:`` section of ``config`` find data that moved since training
    (checked against the run's recorded fingerprint, see :func:`~semcollab.tasks.ranking.load_ranking_run`); ``log`` then reports
    where it was read. A changed data source is refused unless ``allow_data_change`` (then it only warns)."""
    return evaluate_saved_run(run_dir, stage, overrides, allow_data_change=allow_data_change, data_paths=data_paths,
                              config=config, log=log).metrics


def evaluate_saved_run(run_dir: str | Path, stage: str = "test", overrides: list[str] | None = None, *,
                       allow_data_change: bool = False, data_paths: dict | None = None,
                       config: str | Path | None = None, log=None) -> RunEvaluation:
    """:func:`evaluate_run` with the run's model and dataset names beside the metrics (for a titled table)."""
    if stage not in STAGES:
        raise ConfigError(f"stage must be valid or test, got {stage!r}")
    overrides = list(overrides or [])
    eval_overrides_only(overrides)
    ev = from_dict(EvalConfig, apply_overrides({"eval": to_dict(read_run_config(run_dir).eval)}, overrides)["eval"],
                   prefix="eval.")
    data_paths = config_data_paths(config, run_dir, data_paths)
    cfg, net, split = load_ranking_run(run_dir, allow_data_change=allow_data_change, data_paths=data_paths,
                                   log=log if data_paths else None)  # the data's own log lines only if it moved
    if max(ev.ks) > split.n_items:
        raise ConfigError(f"eval.ks asks for @{max(ev.ks)}, but {split.name} has only {split.n_items} items")
    device = resolve_device(cfg.train.device)
    net.to(device)
    metrics = evaluate_ranking(net, split.eval_set(stage), split.n_items, split.item_popularity(), ev, device)
    return RunEvaluation(cfg.model, split.name, stage, metrics)


def branch_stats_for_run(run_dir: str | Path, stage: str = "test", max_users: int | None = 2000,
                         batch_size: int = 256, seed: int = 0, allow_data_change: bool = False) -> dict:
    """:func:`~semcollab.methods.saerec.branch_stats.saerec_branch_stats` for a saved run folder (rebuilt with
    :func:`load_ranking_run`), with the run's own ``eval.mask_history``; adds ``run_dir``
    and ``model``. Raises ConfigError for a non-SAERec run."""
    cfg, model, split = load_ranking_run(run_dir, allow_data_change=allow_data_change)
    if not isinstance(model, SAERec):
        raise ConfigError(f"{run_dir} is a {cfg.model!r} run; branch statistics need a saerec run")
    stats = saerec_branch_stats(model, split, stage=stage, max_users=max_users, batch_size=batch_size, seed=seed,
                                mask_history=cfg.eval.mask_history)
    return {"run_dir": str(run_dir), "model": cfg.model, **stats}
def diagnose_runs(run_a: str | Path, run_b: str | Path, k: int = 10, probes: bool = True,
                  out: str | Path | None = None, allow_data_change: bool = False):
    """Complementarity of two saved ranking runs of one split
    (:func:`~semcollab.methods.complementarity.diagnose.diagnose`); returns the report and ``(config A, config B,
    split)``. Two runs that are the same folder, or were trained on other data or data settings, are refused."""
    run_a, run_b = Path(run_a), Path(run_b)
    if run_a.resolve() == run_b.resolve():
        raise ConfigError(f"both arguments are the same run ({run_a}); a run against itself has Jaccard 1.0 by "
                          "construction. Give two different runs of one split")
    fp_a, fp_b = read_run_record(run_a).get("data_fingerprint"), read_run_record(run_b).get("data_fingerprint")
    if fp_a and fp_b and fp_a != fp_b:
        raise ConfigError(f"{run_a} and {run_b} were trained on different data (fingerprints {fp_a[:12]} vs "
                          f"{fp_b[:12]}), even if the source path is the same")
    cfg_a, model_a, split = load_ranking_run(run_a, allow_data_change=allow_data_change)
    cfg_b, model_b, _ = load_ranking_run(run_b, allow_data_change=allow_data_change)
    if to_dict(cfg_a.data) != to_dict(cfg_b.data):
        raise ConfigError("the two runs were trained on different data settings; compare runs of one split")
    if not 1 <= k <= split.n_items:
        raise ConfigError(f"--k must be between 1 and the catalogue size ({split.n_items} items of {split.name}), "
                          f"got {k}")
    report = diagnose(model_a, model_b, split, k, (cfg_a.model, cfg_b.model), probes, out)
    return report, (cfg_a, cfg_b, split)


