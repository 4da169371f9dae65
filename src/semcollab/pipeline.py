"""One entry for every task: :func:`run` trains any registered model, :func:`load_run` gives back any saved run as a
:class:`~semcollab.tasks.base.Run`, :func:`evaluate` re-scores one, :func:`recommend` asks one for a user's top items.

Which task's pipeline runs is decided once, here (:func:`choose_task`): the ``task`` argument, else the config's
``task`` key (or the keys only one task's config has), else the task the model is registered for."""

from __future__ import annotations

from pathlib import Path

from . import registry
from .config import ConfigError
from .distributed import env_world_size
from .errors import DistributedError, RunFileError
from .tasks import TASKS, config_tree, infer_task
from .tasks.base import Run, RunResult, read_run_config_file, read_run_record
from .tasks.ctr import evaluate_ctr_run, load_ctr_view, run_ctr
from .tasks.item_table import load_item_table_view, run_item_table
from .tasks.ranking import load_ranking_view, read_run_config, run_ranking
from .tasks.ranking_eval import evaluate_run

DEFAULT_MODEL = {"ranking": "sasrec", "ctr": "mf", "item-table": "reaemb"}


def _task_of(model_name: str) -> str:
    """The task ``model_name`` is registered for; a name two tasks share resolves in :data:`registry.TASKS` order
    (``mf`` names MF-BPR, as ``semcollab train --model mf`` always did; CTR's ``mf`` is reached with ``task="ctr"``)."""
    return registry.model_entry(model_name).task


def choose_task(task: str | None = None, model: str | None = None, config=None,
                overrides: list[str] | None = None) -> str:
    """The task of a run: ``task``, else the config's (its ``task`` key or the keys only one task has), else the
    one ``model`` (or the config's ``model``) is registered for; ``ranking`` when nothing is said."""
    if task is not None:
        if task not in TASKS:
            raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}")
        return task
    tree = config_tree(config, overrides)
    found = infer_task(tree)
    if found is not None:
        return found
    name = model if model is not None else tree.get("model")
    return _task_of(str(name)) if name is not None else "ranking"


def run(model: str | None = None, dataset: str | None = None, config=None, overrides: list[str] | None = None,
        *, task: str | None = None, log=print, save: bool = True) -> RunResult:
    """Train and evaluate ``model`` on ``dataset`` and save the run; any task.

    ``config``: a YAML path, a nested dict or a config object; ``overrides``: ``key=value`` strings on top
    (``["train.epochs=5", "model_params.hidden=128"]``). Every setting is checked before data is read; the same
    seed, data and config give the same numbers (on CPU); a killed run continues when called again with the same
    arguments. Returns a :class:`RunResult` (``.metrics``, ``.run_dir``, ``.model``, ``.config``, ...)."""
    task = choose_task(task, model, config, overrides)
    if task == "item-table" and env_world_size() > 1:  # `reaemb train --nproc` is the distributed ReaEmb route
        raise DistributedError(f"semcollab.run does not train {model or 'this model'} (an item-table model) in several "
                               "processes; use `semcollab reaemb train --nproc N`, or run it without torchrun")
    if task == "ranking":
        return run_ranking(model, dataset, config, overrides, log=log, save=save)
    if task == "ctr":
        return run_ctr(model, dataset, config, overrides, log=log, save=save)
    return run_item_table(model, dataset, config, overrides, log=log, save=save)


def run_task(path: str | Path) -> str:
    """The task of a saved run folder: ``config.yaml``'s ``task`` (recorded since issue 29), else ``run.json``'s
    (CTR runs recorded it before), else the keys of its config (ReaEmb runs, older ranking runs)."""
    path = Path(path)
    if not path.is_dir():
        read_run_config(path)  # the messages for a missing folder, a file or a symlink loop
    cfg_path = path / "config.yaml"
    if not cfg_path.exists() and not cfg_path.is_symlink():
        raise RunFileError(f"{path} is not a semcollab run folder (no config.yaml)")
    tree = read_run_config_file(cfg_path)
    task = tree.get("task") or read_run_record(path).get("task") or infer_task(tree) or "ranking"
    if task not in TASKS:
        raise RunFileError(f"{cfg_path}: task {task!r} is not one of {list(TASKS)}")
    return task


def load_run(path: str | Path, *, allow_data_change: bool = False, allow_pickle: bool = False,
             data_paths: dict | None = None) -> Run:
    """A saved run of any task as a :class:`Run`: ``.task``, ``.config``, ``.metrics``, ``.model``,
    ``.score(user, items=None)`` and ``.recommend(user, k)`` (raw user / item ids); an item-table run also has
    ``.item_table()``. The run's data is prepared again and checked against its recorded fingerprint (a change is
    refused unless ``allow_data_change``); ``data_paths`` (ranking) finds data that moved; ``allow_pickle`` (CTR)
    reads data pickles other than the known CoLLM split."""
    task = run_task(path)
    if task == "ranking":
        return load_ranking_view(path, allow_data_change=allow_data_change, data_paths=data_paths)
    if task == "ctr":
        return load_ctr_view(path, allow_data_change=allow_data_change, allow_pickle=allow_pickle)
    return load_item_table_view(path)


def evaluate(path: str | Path, stage: str = "test", overrides: list[str] | None = None, *,
             allow_data_change: bool = False, allow_pickle: bool = False, max_rows: int | None = None,
             subsample_seed: int = 0) -> dict:
    """Metrics of a saved run on its ``stage`` rows, computed again: ranking (``overrides``: ``eval.*`` settings,
    e.g. ``["eval.protocol=sampled"]``) or CTR (``max_rows`` / ``subsample_seed``: the fixed subset a CPU-budget
    LM run was scored on). An item-table run has no metrics of its own: evaluate a ranking run that reads it."""
    task = run_task(path)
    if task == "ctr":
        if overrides:
            raise ConfigError(f"a CTR run is evaluated without overrides; got {overrides}")
        return evaluate_ctr_run(path, stage, allow_data_change, max_rows, subsample_seed, allow_pickle=allow_pickle)
    if task == "item-table":
        raise ConfigError(f"{path} is an item-table run: it has no metrics of its own; evaluate a ranking run that "
                          "reads its table (--model_params.item_table=...)")
    return evaluate_run(path, stage, overrides, allow_data_change=allow_data_change)


def recommend(path: str | Path, user: str, k: int = 10, **load) -> list[tuple[str, float]]:
    """The top ``k`` items (raw id, score) of a saved run of any task for raw user id ``user``, history masked."""
    return load_run(path, **load).recommend(user, k)


def list_models(task: str | None = None) -> list[str]:
    """Every model :func:`run` can train (of ``task`` when given), plugins included."""
    return registry.list_models(task)


__all__ = ["Run", "RunResult", "choose_task", "evaluate", "list_models", "load_run", "recommend", "run", "run_task"]
