"""The tasks a run can be, and one entry for their configs.

``ranking`` (:mod:`.ranking`), ``ctr`` (:mod:`.ctr`) and ``item-table`` (:mod:`.item_table`) each train, save and
load runs; :func:`semcollab.run` / :func:`semcollab.load_run` pick the task. Every config names its task in a
``task`` key (saved ranking and CTR configs record it; a config without one -- written before it was recorded, or
the ReaEmb pipeline's -- is told apart by the keys only one schema has). The schemas themselves live in
:mod:`semcollab.config` (ranking) and :mod:`semcollab.config.ctr`."""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError, RunConfig, apply_overrides, from_dict, raw_config, to_dict
from ..config.ctr import CTRDataConfig, CTRRunConfig
from ..registry import TASKS

# keys only the ReaEmb pipeline's config has at the top level, and only the CTR data section has
_ITEM_TABLE_KEYS = {"stage1", "stage2", "encoder", "lm", "dataset", "text_fields"}
_CTR_DATA_KEYS = {"history_len", "max_train_rows", "max_valid_rows", "max_test_rows", "subsample_seed", "allow_pickle"}


def schema_for(task: str) -> type:
    """The config dataclass of ``task``."""
    if task == "ranking":
        return RunConfig
    if task == "ctr":
        return CTRRunConfig
    if task == "item-table":
        from ..methods.reaemb import ReaEmbPipelineConfig  # heavy (torch, the LM stack): only when asked

        return ReaEmbPipelineConfig
    raise ConfigError(f"config key 'task' must be one of {list(TASKS)}, got {task!r}")


def infer_task(tree: dict) -> str | None:
    """The task a nested config dict is for: its ``task`` key, else the keys only one schema has (``stage1``,
    ``encoder``, ``lm``, ...: item-table; ``data.history_len`` etc.: ctr; an ``eval`` section or other ranking data
    keys: ranking); None when nothing tells (e.g. ``{"model": "mf"}``: the model then decides)."""
    task = tree.get("task")
    if task is not None:
        schema_for(str(task))  # an unknown task is an error naming the key
        return str(task)
    if _ITEM_TABLE_KEYS & set(tree):
        return "item-table"
    data = tree.get("data") if isinstance(tree.get("data"), dict) else {}
    if _CTR_DATA_KEYS & set(data):
        return "ctr"
    ranking_only = set(to_dict(RunConfig().data)) - set(to_dict(CTRDataConfig()))
    if "eval" in tree or ranking_only & set(data):
        return "ranking"
    return None


def config_tree(config=None, overrides: list[str] | None = None) -> dict:
    """The nested settings of ``config`` (a YAML path, a dict, a config object or None) with ``key=value``
    ``overrides`` on top, unvalidated: what :func:`infer_task` reads."""
    if config is None or isinstance(config, (str, Path)):
        return raw_config(config, overrides)
    if isinstance(config, dict):
        return raw_config(None, overrides, **config)
    return apply_overrides(to_dict(config), overrides or [])


def load_task_config(config=None, overrides: list[str] | None = None, task: str | None = None) -> tuple[str, object]:
    """``(task, validated config)``: one entry for every task's config. ``task`` (or the config's own ``task``
    key, or its keys) picks the schema; a config object of a task's schema is taken as it is."""
    tree = config_tree(config, overrides)
    task = task or infer_task(tree) or "ranking"
    schema = schema_for(task)
    if task == "item-table":
        tree = {k: v for k, v in tree.items() if k != "task"}  # the pipeline's schema has no task key
    elif tree.get("task", task) != task:
        raise ConfigError(f"config key 'task' is {tree['task']!r}, but a {task} config was asked for")
    cfg = from_dict(schema, tree)
    if task == "item-table":
        cfg.data.name = cfg.dataset  # as the pipeline's own loader does: `dataset` names the data
    return task, cfg


__all__ = ["TASKS", "config_tree", "infer_task", "load_task_config", "schema_for"]
