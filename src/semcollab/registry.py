"""One registry for what a user can add without touching semcollab: models of every task and dataset sources.

A model is one file with one decorator (the PEFT / LensKit pattern)::

    @register("my-model", task="ranking", config=MyConfig)
    class MyModel(Recommender): ...

``task`` picks the pipeline that trains and evaluates it: ``ranking`` (next-item, full ranking), ``ctr`` (yes/no
click prediction, AUC / UAUC) or ``item-table`` (a model whose product is an item-embedding table). A dataset
format is a function with :func:`register_source`. Built-in entries load on first lookup; a user's package is
found through the ``semcollab.plugins`` entry-point group or the ``SEMCOLLAB_PLUGINS`` environment variable
(comma-separated module names), so the CLI sees it as well as Python code."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from .errors import ConfigError

TASKS = ("ranking", "ctr", "item-table")
PLUGINS_ENV = "SEMCOLLAB_PLUGINS"
ENTRY_POINT_GROUP = "semcollab.plugins"
# Modules that register the built-in entries when imported (imported on the first lookup, not at import time, so
# that importing semcollab stays cheap and no package has to import the methods that build on it).
BUILTIN_MODULES: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    cls: type
    config: type
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceEntry:
    name: str
    load: Callable
    help: str = ""


_models: dict[str, ModelEntry] = {}
_aliases: dict[str, str] = {}
_sources: dict[str, SourceEntry] = {}
_loaded: list[bool] = [False]


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip().lower() or ":" in name:
        raise ConfigError(f"{what} name must be a non-empty lower-case string without ':', got {name!r}")
    return name


def register(name: str, task: str = "ranking", config: type | None = None, aliases: tuple[str, ...] = ()):
    """Class decorator: make ``cls`` buildable by name (``semcollab.run(model=name)``, ``--model name``).

    ``config`` is the model's typed config dataclass (``model_params`` are validated against it); it defaults to
    the class's ``Config`` attribute. Registering a name twice with another class is an error."""
    _check_name(name, "model")
    if task not in TASKS:
        raise ConfigError(f"register({name!r}): task must be one of {list(TASKS)}, got {task!r}")

    def deco(cls: type) -> type:
        cfg = config if config is not None else getattr(cls, "Config", None)
        if cfg is None:
            raise ConfigError(f"register({name!r}): pass config=<dataclass> or give {cls.__name__} a Config")
        old = _models.get(name)
        if old is not None and (old.cls.__module__, old.cls.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ConfigError(f"model {name!r} is already registered by {old.cls.__module__}.{old.cls.__qualname__}")
        for a in aliases:
            owner = _aliases.get(_check_name(a, "alias"))
            if owner not in (None, name) or (a in _models and a != name):
                raise ConfigError(f"alias {a!r} of {name!r} is already taken by {owner or a!r}")
        _models[name] = ModelEntry(name, task, cls, cfg, tuple(aliases))
        _aliases.update({a: name for a in aliases})
        return cls

    return deco


def register_source(name: str, help: str = ""):
    """Function decorator: a dataset source ``name`` (``--dataset name`` or ``name:<argument>``)."""
    _check_name(name, "dataset source")

    def deco(fn: Callable) -> Callable:
        old = _sources.get(name)
        if old is not None and (old.load.__module__, old.load.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ConfigError(f"dataset source {name!r} is already registered by {old.load.__module__}")
        _sources[name] = SourceEntry(name, fn, help)
        return fn

    return deco


def _load_all() -> None:
    if _loaded[0]:
        return
    _loaded[0] = True
    for mod in BUILTIN_MODULES:
        importlib.import_module(mod)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()
    for mod in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ConfigError(f"{PLUGINS_ENV}: cannot import plugin module {mod!r}: {exc}") from exc


def model_entry(name: str, task: str | None = None) -> ModelEntry:
    """The entry of model ``name`` (aliases and case accepted); ``task`` restricts the lookup."""
    _load_all()
    key = str(name).strip().lower()
    key = _aliases.get(key, key)
    entry = _models.get(key)
    if entry is None or (task is not None and entry.task != task):
        raise ConfigError(f"unknown {task + ' ' if task else ''}model {name!r}; available: {list_models(task)}")
    return entry


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, sorted; only those of ``task`` when given."""
    _load_all()
    if task is not None and task not in TASKS:
        raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}")
    return sorted(n for n, e in _models.items() if task is None or e.task == task)


def source_entry(name: str) -> SourceEntry:
    _load_all()
    if name not in _sources:
        raise ConfigError(f"unknown dataset source {name!r}; available: {list_sources()}")
    return _sources[name]


def list_sources() -> list[str]:
    _load_all()
    return sorted(_sources)


__all__ = ["TASKS", "ModelEntry", "SourceEntry", "list_models", "list_sources", "model_entry", "register",
           "register_source", "source_entry"]
