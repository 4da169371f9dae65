"""The ranged fields every config dataclass is built from (``at_least``, ``fraction``, ``one_of``, ...), the device
rule, and :func:`validate`, which checks them (and each class's ``_check`` rules) with errors naming the key."""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable
from dataclasses import field

from ..errors import ConfigError

# The one rule for a device option: every config's ``device`` accepts exactly these strings.
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICE_TEXT = "auto, cpu, cuda, cuda:<n> or mps"


def is_device(value) -> bool:
    """Whether ``value`` is a device option every config accepts (see :data:`DEVICE_PATTERN`)."""
    return isinstance(value, str) and DEVICE_PATTERN.match(value) is not None


def resolve_device(name: str, key: str = "train.device"):
    """``auto`` -> CUDA when present, else CPU; a CUDA device asked for on a machine without one is refused,
    naming the config ``key`` that asked for it. Lives here so every trainer (ranking, CTR, LM) shares one
    rule."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}={name} was asked for but no CUDA device is available")
    return torch.device(name)


# ------------------------------------------------------------------------------------------- ranges
# A setting's allowed range lives beside its default (``field(metadata=...)``), so every dataclass built
# by :func:`from_dict` is checked before any data is read or any epoch runs: ``max_len=0`` once looped
# forever, ``batch_size=-5`` trained on nothing and saved "loss 0.0".
def allowed(default=dataclasses.MISSING, ok: Callable[[typing.Any], bool] | None = None, text: str = "",
            default_factory=dataclasses.MISSING):
    """A dataclass field whose value must satisfy ``ok`` (described to the user as ``text``)."""
    kw = {"default": default} if default_factory is dataclasses.MISSING else {"default_factory": default_factory}
    return field(metadata={"ok": ok, "allowed": text}, **kw)


def at_least(default, lo, integer: bool = True):
    return allowed(default, lambda v: v >= lo, f"{'an integer' if integer else 'a number'} >= {lo}")


def positive(default):
    return allowed(default, lambda v: v > 0, "a number > 0")


def fraction(default, lo_open: bool = False, hi_open: bool = True):
    lo, hi = ("(" if lo_open else "["), (")" if hi_open else "]")
    return allowed(default, lambda v: (v > 0 if lo_open else v >= 0) and (v < 1 if hi_open else v <= 1),
                   f"a number in {lo}0, 1{hi}")


def one_of(default, *choices):
    return allowed(default, lambda v: v in choices, "one of " + ", ".join(map(str, choices)))


def device_option(default: str = "auto"):
    """A ``device`` field: :func:`is_device` decides, for every config alike."""
    return allowed(default, is_device, DEVICE_TEXT)


# Upper bounds of the integer settings that size a tensor, by field name, in every config class (ranking and
# CTR models, SAE, CTR data): ``--model_params.dim=100000000`` or ``--data.history_len=100000000`` once died in
# the allocator with a traceback. Generous for the models here (hidden sizes of the LMs used are <= 896), far
# below what exhausts a machine's memory on its own; a combination of large values can still need more memory
# than there is.
SIZE_MAX = {"dim": 8192, "mf_dim": 8192, "hidden": 8192, "table_hidden": 8192, "proj_hidden": 8192,
            "mapper_hidden": 8192, "layers": 64, "heads": 64, "mapper_heads": 64, "max_len": 1000,
            "history_len": 1000, "expansion": 256, "n_user_tokens": 256, "lora_rank": 1024,
            "neg_samples": 100_000, "n_negatives": 100_000}


def validate(cfg, prefix: str = "", recursive: bool = True) -> None:
    """Check every ranged field of dataclass ``cfg`` (and its cross-field ``_check`` rules).

    Raises :class:`ConfigError` naming the first offending key, its value and the allowed range."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            if recursive:
                validate(value, f"{prefix}{f.name}.")
            continue
        ok = f.metadata.get("ok")
        if ok is None or value is None:
            continue
        try:
            good = bool(ok(value))
        except TypeError:
            good = False
        if not good:
            raise ConfigError(f"config key '{prefix}{f.name}' must be {f.metadata['allowed']}, got {value!r}")
        hi = SIZE_MAX.get(f.name)
        if hi is not None and isinstance(value, int) and not isinstance(value, bool) and value > hi:
            raise ConfigError(f"config key '{prefix}{f.name}' must be {f.metadata['allowed']} and at most {hi} "
                              f"(it sizes a tensor: a larger value exhausts memory), got {value!r}")
    extra = getattr(cfg, "_check", None)
    if extra is not None:
        for key, message in extra():
            raise ConfigError(f"config key '{prefix}{key}' {message}")
