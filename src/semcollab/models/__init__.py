"""Model registry: name -> (class, config dataclass). One model per file."""

from __future__ import annotations

from ..config import from_dict, to_dict
from ..methods.saerec.model import SAERec, SAERecConfig
from .base import Recommender
from .bert4rec import BERT4Rec, BERT4RecConfig
from .fusion import FusionConfig, SemCollabFusion
from .gru4rec import GRU4Rec, GRU4RecConfig
from .mf_bpr import MFBPR, MFConfig
from .pop import PopConfig, Popularity
from .sasrec import SASRec, SASRecConfig
from .semantic import SemanticConfig, SemanticMean

REGISTRY: dict[str, tuple[type, type]] = {
    "pop": (Popularity, PopConfig),
    "mf-bpr": (MFBPR, MFConfig),
    "sasrec": (SASRec, SASRecConfig),
    "gru4rec": (GRU4Rec, GRU4RecConfig),
    "bert4rec": (BERT4Rec, BERT4RecConfig),
    "semantic": (SemanticMean, SemanticConfig),
    "fusion": (SemCollabFusion, FusionConfig),
    "saerec": (SAERec, SAERecConfig),
}
ALIASES = {"popularity": "pop", "mf": "mf-bpr", "bpr": "mf-bpr", "mfbpr": "mf-bpr"}


def register(name: str, model_cls: type, config_cls: type) -> None:
    """Add a model to the registry (used by method modules such as SAERec)."""
    REGISTRY[name] = (model_cls, config_cls)


def canonical_name(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {sorted(REGISTRY)}")
    return key


def typed_params(name: str, params: dict) -> dict:
    """``params`` converted to their declared types (``"0.9"`` -> 0.9), so a saved config records values,
    not the strings they arrived as; unknown keys raise. Only the keys given are returned."""
    _, cfg_cls = REGISTRY[canonical_name(name)]
    typed = to_dict(from_dict(cfg_cls, params or {}, prefix="model_params."))
    return {k: typed[k] for k in (params or {})}


def build_model(name: str, params: dict, split) -> Recommender:
    """Instantiate a registered model for ``split`` with its typed config from ``params``."""
    key = canonical_name(name)
    cls, cfg_cls = REGISTRY[key]
    cfg = from_dict(cfg_cls, params, prefix="model_params.")
    if hasattr(cls, "from_split"):  # models that need more than sizes (popularity, text embeddings)
        return cls.from_split(split, cfg)
    return cls(split.n_users, split.n_items, cfg)


__all__ = ["REGISTRY", "Recommender", "build_model", "canonical_name", "register", "typed_params"]
