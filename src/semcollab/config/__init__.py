"""Typed run configuration: dataclasses loadable from YAML, with ``key.sub=value`` overrides.

Unknown keys are errors (a typo must not silently fall back to a default), values are coerced to the
annotated type, and the resolved config is saved with every run."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError  # noqa: F401  (defined in errors.py)
from .fields import (  # noqa: F401  (re-exported: every config class builds its fields from these)
    DEVICE_PATTERN,
    DEVICE_TEXT,
    SIZE_MAX,
    allowed,
    at_least,
    device_option,
    fraction,
    is_device,
    one_of,
    positive,
    resolve_device,
    validate,
)


@dataclass
class DataConfig:
    name: str = "ml-100k"  # ml-100k | ml-1m | s3rec:<Beauty|Sports_and_Outdoors|Toys_and_Games|Yelp> | amazon | table
    path: str | None = None  # source file/folder; default located automatically where possible
    meta_path: str | None = None  # Amazon metadata file, or the item table of a generic table
    user_col: str = "user"
    item_col: str = "item"
    time_col: str = "timestamp"
    rating_col: str | None = None
    item_text_cols: list[str] | None = None
    duplicates: str = one_of("error", "error", "drop", "keep")
    min_rating: float | None = None
    user_k: int = at_least(5, 0)  # iterative k-core; 0 or 1 = no filtering
    item_k: int = at_least(5, 0)
    split: str = one_of("loo", "loo", "temporal")
    valid_frac: float = fraction(0.1, lo_open=True)  # temporal split only
    test_frac: float = fraction(0.1, lo_open=True)
    cache: bool = True
    cache_dir: str | None = None

    def _check(self):
        if self.valid_frac + self.test_frac >= 1:
            yield "valid_frac", (f"+ data.test_frac must be < 1 (train keeps the rest), got {self.valid_frac} + "
                                 f"{self.test_frac}")


LOSSES = ("auto", "ce", "bce", "bpr", "sampled_ce")
METRIC = re.compile(r"^(hr|recall|ndcg|mrr)@(\d+)$")


def epoch_bounds_check(cfg):
    """The cross-field rule of every training config (ranking and CTR): ``min_epochs`` within ``epochs``."""
    if cfg.min_epochs > cfg.epochs:
        yield "min_epochs", (f"must be at most train.epochs ({cfg.epochs}), got {cfg.min_epochs}: the patience "
                             "could never end the run")


@dataclass
class TrainConfig:
    epochs: int = at_least(200, 1)
    batch_size: int = at_least(256, 1)
    lr: float = positive(1e-3)
    weight_decay: float = at_least(0.0, 0, integer=False)
    # auto: the model's own (bpr for MF-BPR, ce otherwise) | ce: full softmax | bce: sampled negatives | bpr
    # | sampled_ce: softmax over the target + neg_samples negatives shared by the batch
    loss: str = one_of("auto", *LOSSES)
    neg_samples: int = at_least(1, 1)  # negatives per positive (bce) or per batch (sampled_ce)
    length_buckets: bool = False  # batch sequence windows of similar length (much faster on short histories)
    eval_every: int = at_least(1, 1)
    patience: int = at_least(10, 1)  # evaluations without validation improvement before stopping
    min_epochs: int = at_least(0, 0)  # the patience stops no run before this epoch (a lucky first-epoch peak)
    metric: str = allowed("ndcg@10", lambda v: METRIC.match(v.lower()) is not None,
                          "<hr|recall|ndcg|mrr>@<k> with k one of eval.ks")
    seed: int = at_least(42, 0)
    device: str = device_option()
    bf16: bool = False  # autocast matmuls to bfloat16 (GPU)
    progress: bool = True
    max_minutes: float | None = positive(None)  # wall-clock cap on training (summed over resumed calls)
    # a saved run (`semcollab train`) writes a resume checkpoint at most this often (0: every epoch; None: never)
    checkpoint_minutes: float | None = at_least(1.0, 0, integer=False)

    def _check(self):
        yield from epoch_bounds_check(self)


@dataclass
class EvalConfig:
    ks: list[int] = allowed(ok=lambda v: len(v) > 0 and all(k >= 1 for k in v) and len(set(v)) == len(v),
                            text="a non-empty list of distinct integers >= 1", default_factory=lambda: [5, 10, 20])
    protocol: str = one_of("full", "full", "sampled")
    n_negatives: int = at_least(100, 1)  # sampled protocol only
    negatives: str = one_of("uniform", "uniform", "popularity")  # sampled protocol only
    mask_history: bool = True
    head_frac: float = fraction(0.2, lo_open=True)  # top fraction of items by training popularity counted as head
    long_user_min: int | None = at_least(None, 1)  # history length from which a user is "long"; default: median
    chunk_size: int = at_least(1024, 1)  # users scored at once; bounds memory
    # full ranking: items scored at once per user chunk, their top-k merged (None: one chunk while chunk_size x
    # (n_items + 1) float32 scores fit in 256 MB, else chunks of that size; semcollab.evaluation.streaming)
    item_chunk_size: int | None = at_least(None, 1)
    # rank by score - pop_correction * log(1 + training count) (semcollab.models.pop_correction), for any ranking
    # model, in every evaluation of the run (validation during training, test) and when it is served; 0 = off
    pop_correction: float = at_least(0.0, 0, integer=False)


@dataclass
class RunConfig:
    """A ranking run. ``task`` is recorded in every saved run's config.yaml: :func:`semcollab.tasks.load_task_config`
    reads it to pick the schema (RunConfig, CTRRunConfig, the ReaEmb pipeline's) of a saved or given config."""

    task: str = allowed("ranking", lambda v: v == "ranking", "ranking (this schema is the ranking task's)")
    model: str = "sasrec"
    model_params: dict = field(default_factory=dict)  # checked against the model's own config class
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = allowed("runs", lambda v: v.strip() != "", "a folder path")
    save_model: bool = True

    def __post_init__(self):
        self.fold_legacy_keys()

    def fold_legacy_keys(self) -> None:
        """The hybrid's own ``model_params.pop_correction`` (runs saved before ``eval.pop_correction`` existed) is
        read as ``eval.pop_correction``: one correction, one place, whatever wrote the config. Called again by
        whoever sets ``model`` after the config is built (the API's ``model=`` argument)."""
        if self.model != "hybrid" or "pop_correction" not in self.model_params:
            return
        self.model_params = dict(self.model_params)
        raw = self.model_params.pop("pop_correction")
        try:
            beta = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"config key 'model_params.pop_correction' expects a number, got {raw!r}") from None
        if not beta >= 0 or beta == float("inf"):
            raise ConfigError(f"config key 'model_params.pop_correction' must be a finite number >= 0, got {raw!r}")
        if beta > 0 and self.eval.pop_correction > 0 and beta != self.eval.pop_correction:
            raise ConfigError(f"config keys 'model_params.pop_correction' ({raw!r}) and 'eval.pop_correction' "
                              f"({self.eval.pop_correction!r}) disagree; keep eval.pop_correction (the hybrid's own "
                              "key is its older name)")
        if beta > 0:
            self.eval = dataclasses.replace(self.eval, pop_correction=beta)

    def _check(self):
        m = METRIC.match(self.train.metric.lower())
        if m and int(m.group(2)) not in self.eval.ks:
            yield "train.metric", (f"is {self.train.metric!r}, but eval.ks={self.eval.ks} does not compute "
                                   f"@{m.group(2)}; add {m.group(2)} to eval.ks or pick another metric")


def _is_optional(tp) -> tuple[bool, typing.Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return True, args[0]
    return False, tp


def _coerce(value, tp, key: str):
    optional, base = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key '{key}' may not be null")
    if isinstance(value, str) and base is not str:
        try:
            value = yaml.safe_load(value)  # "--train.lr=1e-3" arrives as a string
        except yaml.YAMLError:  # "\x1f", "{a: 1": not a value at all
            raise ConfigError(f"config key '{key}' expects {getattr(base, '__name__', base)}, got {value!r}") from None
        if value is None and optional:
            return None
    origin = typing.get_origin(base)
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            raise TypeError
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            value = int(value)
            if not -2**63 <= value < 2**63:  # beyond int64 every array library overflows (data.user_k=2**63)
                raise ConfigError(f"config key '{key}' expects an integer in the 64-bit range, got {value}")
            return value
        if base is float:
            if isinstance(value, bool):
                raise TypeError
            value = float(value)
            if not math.isfinite(value):  # nan passed "> 0" checks as False, inf passed them as True
                raise ConfigError(f"config key '{key}' expects a finite number, got {value!r}")
            return value
        if base is str:
            return str(value)
        if origin is list or base is list:
            if not isinstance(value, (list, tuple)):
                value = [value]
            (inner,) = typing.get_args(base) or (typing.Any,)
            return [v if inner is typing.Any else _coerce(v, inner, key) for v in value]
        if base is dict or origin is dict:
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
    except ConfigError:  # a ValueError too: the range messages above stand as written
        raise
    except (TypeError, ValueError, OverflowError):  # OverflowError: float(10**400)
        raise ConfigError(f"config key '{key}' expects {getattr(base, '__name__', base)}, got {value!r}") from None
    return value


def from_dict(cls, data: dict | None, prefix: str = ""):
    """Build dataclass ``cls`` from a (nested) dict, rejecting unknown keys."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) {[prefix + k for k in unknown]}; valid keys: {sorted(prefix + n for n in names)}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{prefix}{name}' must be a mapping")
            kwargs[name] = from_dict(tp, value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
    cfg = cls(**kwargs)
    validate(cfg, prefix, recursive=False)  # sections given in ``data`` were checked when built above
    return cfg


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=value`` strings (an optional leading ``--`` is ignored) to a nested dict."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for ov in overrides:
        ov = ov[2:] if ov.startswith("--") else ov
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} must look like key.sub=value")
        key, value = ov.split("=", 1)
        parts = key.split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {ov!r}: '{p}' is not a section")
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, *, schema: type = RunConfig,
                **top):
    """Read YAML (optional), apply keyword sections and overrides, and validate into ``schema`` (a RunConfig by
    default; the CTR task passes its CTRRunConfig)."""
    return from_dict(schema, raw_config(path, overrides, **top))


def raw_config(path: str | Path | None = None, overrides: list[str] | None = None, **top) -> dict:
    """The nested dict :func:`load_config` validates: YAML (optional), keyword sections, then overrides."""
    data: dict = {}
    if path is not None:
        data = read_config_file(path)
    for k, v in top.items():
        if v is None:
            continue
        if isinstance(v, dict) and isinstance(data.get(k, {}), dict):
            data[k] = {**data.get(k, {}), **v}
        else:
            data[k] = v
    return apply_overrides(data, overrides or [])


def _config_tree(config, overrides: list[str] | None, key: str) -> tuple[dict, str]:
    """The nested settings of the API's ``config`` argument (a YAML path, a nested dict or a config object) with
    the overrides on top, and how to name where they came from. A config object sets every key: its ``key`` counts
    as given only where it differs from the class's default."""
    if config is None or isinstance(config, (str, Path)):
        return raw_config(config, overrides), str(config)
    if isinstance(config, dict):
        return raw_config(None, overrides, **config), "the config dict"
    tree, default = to_dict(config), to_dict(type(config)())
    node, base = tree, default
    for part in key.split("."):
        node, base = (node.get(part) if isinstance(node, dict) else None), (base.get(part) if isinstance(base, dict)
                                                                              else None)
    if node == base:  # the class default: not a choice the caller made
        tree = {}
    return apply_overrides(tree, overrides or []), f"the {type(config).__name__} object"


def dataset_name(option: str | None, path: str | Path | None = None, overrides: list[str] | None = None,
                 key: str = "data.name", flag: str = "--dataset") -> str | None:
    """One source of truth for the dataset of a command: the ``flag`` option (None when not given) or the
    config's ``key`` (from the YAML at ``path`` or an override). Both given and different is a ConfigError
    naming both; ``--data.name=X`` was once silently replaced by the ``--dataset`` default. Returns the name to
    use, or None when neither was given (the config's default applies)."""
    node, source = _config_tree(path, overrides, key)
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    from_config = None if node is None else str(node)
    if option is not None and from_config is not None and option != from_config:
        overridden = any(o.lstrip("-").split("=", 1)[0] == key for o in overrides or [])
        where = "an override" if overridden or path is None else source
        raise ConfigError(f"{flag} {option} and {key}={from_config} (from {where}) name different datasets; give "
                          "one of them")
    if option is not None and not option.strip():
        raise ConfigError(f"{flag} must name a dataset, got an empty name")
    return option if option is not None else from_config


CONFIG_MAX_BYTES = 1 << 20  # a run config is a few hundred bytes; /dev/zero once grew to 5 GB in 3 s


def read_config_file(path: str | Path, expected: str = "--config takes a YAML file") -> dict:
    """A YAML config file as a dict. Checked before it is opened: it must be a regular file (a FIFO blocked
    forever, /dev/zero read without end) of at most :data:`CONFIG_MAX_BYTES`; invalid YAML or bytes that are
    not UTF-8 are a :class:`ConfigError` naming the file (and the line, where YAML knows it). ``expected`` ends
    the message of a file of the wrong kind (a run's config.yaml is read here too)."""
    import stat

    p = Path(path)
    try:
        st = p.stat()  # follows symlinks: a link to a regular file is fine
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as exc:  # a symlink loop, a component that is a file, no permission
        raise ConfigError(f"config file {p} cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"config file {p} is a folder; {expected}")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"config file {p} is not a regular file (a pipe, socket or device); {expected}")
    if st.st_size > CONFIG_MAX_BYTES:
        raise ConfigError(f"config file {p} has {st.st_size} bytes, more than the {CONFIG_MAX_BYTES} a config may "
                          "have; is it the right file?")
    with open(p, "rb") as fh:  # the size may change between stat and read: never read more than the limit
        raw = fh.read(CONFIG_MAX_BYTES + 1)
    if len(raw) > CONFIG_MAX_BYTES:
        raise ConfigError(f"config file {p} has more than {CONFIG_MAX_BYTES} bytes; is it the right file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {exc.start}, line {line}); is it a YAML "
                          "file?") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {p} is not valid YAML{where}: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{p}: top level must be a mapping (key: value lines), got {type(loaded).__name__}")
    return loaded


def resolve_config(config, overrides: list[str] | None = None, schema: type = RunConfig):
    """The API's ``config`` argument -- a YAML path, a nested dict, a ``schema`` object or None -- with
    ``key=value`` overrides on top, validated into a new ``schema`` object."""
    if isinstance(config, schema):
        return load_config(None, overrides, schema=schema, **to_dict(config))
    if isinstance(config, dict):
        return load_config(None, overrides, schema=schema, **config)
    return load_config(config, overrides, schema=schema)
