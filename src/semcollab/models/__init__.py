"""The ranking models by name. Each model file registers its class with ``@register(name, task="ranking")``
(:mod:`semcollab.registry`); this package only builds them, so it imports no model (nor any method) itself."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ..config import from_dict, to_dict
from ..registry import list_models, model_entry
from .base import Recommender

TASK = "ranking"


class _RankingModels(Mapping):
    """Read-only view ``name -> (class, config dataclass)`` of the registered ranking models (canonical names)."""

    def __getitem__(self, name: str) -> tuple[type, type]:
        entry = model_entry(name, task=TASK)
        if entry.name != name:  # an alias or another spelling is not a key of the mapping
            raise KeyError(name)
        return entry.cls, entry.config

    def __iter__(self) -> Iterator[str]:
        return iter(list_models(TASK))

    def __len__(self) -> int:
        return len(list_models(TASK))


REGISTRY: Mapping[str, tuple[type, type]] = _RankingModels()


def canonical_name(name: str) -> str:
    """The registered name of ranking model ``name`` (``"MF"`` -> ``"mf-bpr"``); unknown names raise
    :class:`~semcollab.errors.UnknownNameError` (a KeyError) listing the available ones."""
    return model_entry(name, task=TASK).name


def typed_params(name: str, params: dict) -> dict:
    """``params`` converted to their declared types (``"0.9"`` -> 0.9), so a saved config records values,
    not the strings they arrived as; unknown keys raise. Only the keys given are returned."""
    cfg_cls = model_entry(name, task=TASK).config
    typed = to_dict(from_dict(cfg_cls, params or {}, prefix="model_params."))
    return {k: typed[k] for k in (params or {})}


def build_model(name: str, params: dict, split) -> Recommender:
    """Instantiate a registered model for ``split`` with its typed config from ``params``."""
    entry = model_entry(name, task=TASK)
    cfg = from_dict(entry.config, params, prefix="model_params.")
    if hasattr(entry.cls, "from_split"):  # models that need more than sizes (popularity, text embeddings)
        return entry.cls.from_split(split, cfg)
    return entry.cls(split.n_users, split.n_items, cfg)


__all__ = ["REGISTRY", "Recommender", "build_model", "canonical_name", "typed_params"]
