"""Typed run configuration: dataclasses loadable from YAML, with ``key.sub=value`` overrides.

Unknown keys are errors (a typo must not silently fall back to a default), values are coerced to the
annotated type, and the resolved config is saved with every run."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A config key is unknown or a value has the wrong type."""


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
    duplicates: str = "error"  # error | drop | keep
    min_rating: float | None = None
    user_k: int = 5
    item_k: int = 5
    split: str = "loo"  # loo | temporal
    valid_frac: float = 0.1
    test_frac: float = 0.1
    cache: bool = True
    cache_dir: str | None = None


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    # auto: the model's own (bpr for MF-BPR, ce otherwise) | ce: full softmax | bce: sampled negatives | bpr
    # | sampled_ce: softmax over the target + neg_samples negatives shared by the batch
    loss: str = "auto"
    neg_samples: int = 1  # negatives per positive (bce) or per batch (sampled_ce)
    length_buckets: bool = False  # batch sequence windows of similar length (much faster on short histories)
    eval_every: int = 1
    patience: int = 10  # evaluations without validation improvement before stopping
    metric: str = "ndcg@10"
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = False  # autocast matmuls to bfloat16 (GPU)
    progress: bool = True
    max_minutes: float | None = None  # wall-clock cap on training


@dataclass
class EvalConfig:
    ks: list[int] = field(default_factory=lambda: [5, 10, 20])
    protocol: str = "full"  # full | sampled
    n_negatives: int = 100  # sampled protocol only
    negatives: str = "uniform"  # uniform | popularity (sampled protocol only)
    mask_history: bool = True
    head_frac: float = 0.2  # top fraction of items by training popularity counted as head
    long_user_min: int | None = None  # history length from which a user is "long"; default: median
    chunk_size: int = 1024  # users scored at once; bounds memory


@dataclass
class RunConfig:
    model: str = "sasrec"
    model_params: dict = field(default_factory=dict)  # checked against the model's own config class
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = "runs"
    save_model: bool = True


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
        value = yaml.safe_load(value)  # "--train.lr=1e-3" arrives as a string
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
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
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
    except (TypeError, ValueError):
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
    return cls(**kwargs)


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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, **top) -> RunConfig:
    """Read YAML (optional), apply keyword sections and overrides, and validate into a RunConfig."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping")
        data = loaded
    for k, v in top.items():
        if v is None:
            continue
        if isinstance(v, dict):
            data[k] = {**data.get(k, {}), **v}
        else:
            data[k] = v
    data = apply_overrides(data, overrides or [])
    return from_dict(RunConfig, data)
