"""One registry for what a user can add without touching semcollab: models of every task and dataset sources.

A model is one file with one decorator (the PEFT / LensKit pattern)::

    @register("my-model", task="ranking", config=MyConfig)
    class MyModel(Recommender): ...

``task`` picks the pipeline that trains and evaluates it: ``ranking`` (next-item, full ranking), ``ctr`` (yes/no
click prediction, AUC / UAUC) or ``item-table`` (a model whose product is an item-embedding table). A dataset
format is a function with :func:`register_source`::

    @register_source("my-format", argument="<path>")
    def load(cfg: DataConfig, arg: str | None) -> RawDataset: ...   # --dataset my-format:<path>

Built-in entries load on first lookup; a user's package is found through the ``semcollab.plugins`` entry-point
group or the ``SEMCOLLAB_PLUGINS`` environment variable (comma-separated module names), so the CLI sees it as well
as Python code."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from .errors import ConfigError, UnknownNameError

TASKS = ("ranking", "ctr", "item-table")
SOURCE_KINDS = ("interactions", "ctr")
PLUGINS_ENV = "SEMCOLLAB_PLUGINS"
ENTRY_POINT_GROUP = "semcollab.plugins"
# Modules that register the built-in entries when imported (imported on the first lookup, not at import time, so
# that importing semcollab stays cheap and no package has to import the methods that build on it: models/ used to
# import methods/saerec for its table of names, while methods/saerec imports models/).
BUILTIN_MODULES: tuple[str, ...] = (
    "semcollab.models.pop",
    "semcollab.models.mf_bpr",
    "semcollab.models.sasrec",
    "semcollab.models.gru4rec",
    "semcollab.models.bert4rec",
    "semcollab.models.semantic",
    "semcollab.models.fusion",
    "semcollab.models.llm_esr",
    "semcollab.models.alphafuse",
    "semcollab.models.hybrid",
    "semcollab.methods.saerec.model",
    "semcollab.models.mf_ctr",
    "semcollab.models.sasrec_ctr",
    "semcollab.methods.lm_ctr.tallrec",
    "semcollab.methods.lm_ctr.collm",
    "semcollab.methods.lm_ctr.sellarec",
    "semcollab.methods.lm_ctr.sailrec",
    "semcollab.tasks.item_table",
    "semcollab.data.sources",
)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    cls: type
    config: type
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceEntry:
    """``load(cfg, arg)`` reads the source (``arg``: the text after ``name:``, None without one); a ``ctr`` source
    is called ``load(cfg, arg, allow_pickle=...)`` and returns click data instead of interactions."""

    name: str
    load: Callable
    help: str = ""
    argument: str | None = None  # what follows "name:" (e.g. "<path>"); None: the source takes no argument
    kind: str = "interactions"  # "interactions" (a RawDataset) or "ctr" (a CTRData of labelled rows)
    aliases: dict[str, str] = field(default_factory=dict)  # short name -> the full "name[:argument]" it stands for

    @property
    def usage(self) -> str:
        """How a user names it: ``atomic:<name>``, ``table``."""
        return f"{self.name}:{self.argument}" if self.argument else self.name


# One namespace per task: ``mf`` is MF-BPR among ranking models (an alias) and the click model among CTR ones.
_models: dict[tuple[str, str], ModelEntry] = {}  # (task, name) -> entry
_aliases: dict[tuple[str, str], str] = {}  # (task, alias) -> name
_sources: dict[str, SourceEntry] = {}
_source_aliases: dict[str, str] = {}
_state = {"builtins": "no", "entry_points": False}
_plugin_modules: set[str] = set()


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
    if isinstance(aliases, str):
        raise ConfigError(f"register({name!r}): aliases must be a tuple of names, got the string {aliases!r}")

    def deco(cls: type) -> type:
        cfg = config if config is not None else getattr(cls, "Config", None)
        if cfg is None:
            raise ConfigError(f"register({name!r}): pass config=<dataclass> or give {cls.__name__} a Config")
        old = _models.get((task, name))
        if old is not None and (old.cls.__module__, old.cls.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ConfigError(f"{task} model {name!r} is already registered by "
                              f"{old.cls.__module__}.{old.cls.__qualname__}")
        if _aliases.get((task, name), name) != name:
            raise ConfigError(f"{task} model name {name!r} is already an alias of {_aliases[(task, name)]!r}")
        for a in aliases:
            owner = _aliases.get((task, _check_name(a, "alias")))
            if owner not in (None, name) or ((task, a) in _models and a != name):
                raise ConfigError(f"alias {a!r} of {name!r} is already taken by {owner or a!r}")
        _models[(task, name)] = ModelEntry(name, task, cls, cfg, tuple(aliases))
        _aliases.update({(task, a): name for a in aliases})
        return cls

    return deco


def register_source(name: str, help: str = "", argument: str | None = None, kind: str = "interactions",
                    aliases: dict[str, str] | None = None):
    """Function decorator: a dataset source ``name`` (``--dataset name``, or ``name:<argument>`` when ``argument``
    names what follows the colon). ``aliases`` map short names to a full spec (``{"beauty": "s3rec:Beauty"}``)."""
    _check_name(name, "dataset source")
    if kind not in SOURCE_KINDS:
        raise ConfigError(f"register_source({name!r}): kind must be one of {list(SOURCE_KINDS)}, got {kind!r}")
    aliases = dict(aliases or {})
    for a, spec in aliases.items():
        _check_name(a, "dataset alias")
        if spec.partition(":")[0].lower() != name:
            raise ConfigError(f"register_source({name!r}): alias {a!r} must stand for {name!r}[:...], got {spec!r}")

    def deco(fn: Callable) -> Callable:
        old = _sources.get(name)
        if old is not None and (old.load.__module__, old.load.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ConfigError(f"dataset source {name!r} is already registered by {old.load.__module__}")
        if name in _source_aliases and _source_aliases[name].partition(":")[0].lower() != name:
            raise ConfigError(f"dataset source {name!r} is already an alias of {_source_aliases[name]!r}")
        for a in aliases:
            taken = _source_aliases.get(a)
            if (taken is not None and taken.partition(":")[0].lower() != name) or (a in _sources and a != name):
                raise ConfigError(f"dataset alias {a!r} of {name!r} is already taken by {taken or a!r}")
        _sources[name] = SourceEntry(name, fn, help, argument, kind, aliases)
        _source_aliases.update(aliases)
        return fn

    return deco


def _load_all() -> None:
    """Import the built-in modules (once), the entry-point plugins (once) and any module named in
    ``$SEMCOLLAB_PLUGINS`` not imported yet (read on every lookup, so setting it later still takes effect)."""
    if _state["builtins"] == "no":
        _state["builtins"] = "loading"  # a lookup made while a built-in module is being imported sees what is there
        try:
            for mod in BUILTIN_MODULES:
                importlib.import_module(mod)
        except BaseException:
            _state["builtins"] = "no"
            raise
        _state["builtins"] = "done"
    if not _state["entry_points"]:
        _state["entry_points"] = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()
    for mod in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        if mod in _plugin_modules:
            continue
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ConfigError(f"{PLUGINS_ENV}: cannot import plugin module {mod!r}: {exc}") from exc
        _plugin_modules.add(mod)


def model_entry(name: str, task: str | None = None) -> ModelEntry:
    """The entry of model ``name`` (aliases and any case accepted) among ``task``'s models; without ``task``, the
    first task in :data:`TASKS` order that has the name (``mf`` is the ranking MF-BPR, as ``semcollab train --model
    mf`` always meant). An unknown name raises :class:`~semcollab.errors.UnknownNameError` (a ConfigError and a
    KeyError) listing the available ones."""
    _load_all()
    if task is not None and task not in TASKS:
        raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}")
    key = str(name).lower()
    for t in ([task] if task is not None else TASKS):
        entry = _models.get((t, _aliases.get((t, key), key)))
        if entry is not None:
            return entry
    others = [t for t in TASKS if (t, _aliases.get((t, key), key)) in _models]
    if task is not None and others:
        raise UnknownNameError(f"model {name!r} is a {others[0]} model, not a {task} one; available {task} models: "
                               f"{list_models(task)}")
    raise UnknownNameError(f"unknown model {name!r}; available: {list_models(task)}")


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, sorted; only those of ``task`` when given."""
    _load_all()
    if task is not None and task not in TASKS:
        raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}")
    return sorted({n for (t, n) in _models if task is None or t == task})


def source_entry(name: str) -> SourceEntry:
    """The entry of dataset source ``name`` (its plain name, as registered)."""
    _load_all()
    if name not in _sources:
        raise UnknownNameError(f"unknown dataset source {name!r}; available: {list_sources()}")
    return _sources[name]


def find_source(spec: str) -> tuple[SourceEntry, str | None] | None:
    """The source a dataset spec names and its argument: ``"s3rec:Beauty"`` -> (s3rec, ``"Beauty"``), ``"beauty"``
    (an alias) -> the same, ``"table"`` -> (table, None). The source name is matched in any case, the argument is
    kept as written. None when nothing matches: an unknown name, an argument given to a source that takes none,
    or none given to one that needs it."""
    _load_all()
    name, colon, arg = str(spec).partition(":")
    key = name.lower()
    if not colon and key in _source_aliases:
        name, colon, arg = _source_aliases[key].partition(":")
        key = name.lower()
    entry = _sources.get(key)
    if entry is None or bool(colon) != (entry.argument is not None):
        return None
    return entry, (arg if colon else None)


def list_sources(kind: str | None = None) -> list[str]:
    """Registered dataset source names, sorted; only those of ``kind`` (interactions / ctr) when given."""
    _load_all()
    if kind is not None and kind not in SOURCE_KINDS:
        raise ConfigError(f"kind must be one of {list(SOURCE_KINDS)}, got {kind!r}")
    return sorted(n for n, e in _sources.items() if kind is None or e.kind == kind)


__all__ = ["SOURCE_KINDS", "TASKS", "ModelEntry", "SourceEntry", "find_source", "list_models", "list_sources",
           "model_entry", "register", "register_source", "source_entry"]
