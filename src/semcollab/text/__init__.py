"""The semantic side: item texts -> language-model embeddings (cached), optional PCA/whitening."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from ..config import at_least, one_of
from .encoders import EncoderSpec, TextEncoder, embed_texts, resolve_encoder
from .reduce import PCAReducer, fit_pca
from .templates import render_item_texts

__all__ = [
    "EmbedConfig",
    "EncoderSpec",
    "PCAReducer",
    "TextEncoder",
    "TextSettings",
    "embed_texts",
    "fit_pca",
    "item_embeddings",
    "render_item_texts",
    "resolve_encoder",
]


@dataclass
class TextSettings:
    """The embedding settings a text-using model exposes in its own config (``model_params``)."""

    encoder: str = "minilm"
    template: str | None = None
    pooling: str | None = one_of(None, "mean", "last")
    prompt: str = ""
    pca_dim: int | None = at_least(None, 1)
    whiten: bool = False
    cache_dir: str | None = None


@dataclass
class EmbedConfig:
    encoder: str = "minilm"  # minilm | smollm2-135m | a local model folder | a hub id (needs internet)
    template: str | None = None  # Python format string over item columns; default "field: value; ..."
    fields: list[str] | None = None  # text fields for the default template; default: all the dataset has
    pooling: str | None = None  # mean | last; default per encoder (mean for sentence encoders, last for causal LMs)
    prompt: str = ""
    max_length: int = 128
    batch_size: int = 64
    device: str = "auto"
    pca_dim: int | None = None
    whiten: bool = False
    cache_dir: str | None = None
    progress: bool = False
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_model_config(cls, model_cfg: TextSettings) -> EmbedConfig:
        """The embedding settings of a text model's config (its :class:`TextSettings` fields)."""
        return cls(**{f.name: getattr(model_cfg, f.name) for f in fields(TextSettings)})


def item_embeddings(split, cfg: EmbedConfig | None = None, out_dir: Path | None = None) -> tuple[np.ndarray, dict]:
    """``(n_items + 1, d)`` item vectors aligned with item indices (row 0 = padding = zeros) and stats.

    With ``out_dir`` the rendered texts, vectors and stats are written there for inspection."""
    cfg = cfg or EmbedConfig()
    if hasattr(split, "render_texts"):  # a None template means the dataset's default template
        texts = split.render_texts(cfg.template, cfg.fields)
    else:
        texts = render_item_texts(split.items, cfg.fields or split.text_fields, cfg.template)
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if len(empty) == len(texts):
        raise ValueError(f"{split.name}: every item text is empty; the dataset has no text fields ({split.text_fields})")
    spec = resolve_encoder(cfg.encoder, cfg.pooling, cfg.prompt, cfg.max_length)
    vecs, stats = embed_texts(texts, spec, cfg.cache_dir, cfg.device, cfg.batch_size, cfg.progress)
    stats["empty_texts"] = len(empty)
    if cfg.pca_dim:
        train_items = np.unique(split.train["item"].to_numpy()) - 1
        red = fit_pca(vecs, train_items, cfg.pca_dim, cfg.whiten)
        vecs = red.transform(vecs).astype(np.float32)
        stats.update(pca_dim=cfg.pca_dim, whiten=cfg.whiten, pca_fit_items=len(train_items),
                     pca_explained_variance=float(red.explained_variance_ratio.sum()))
    full = np.zeros((len(texts) + 1, vecs.shape[1]), dtype=np.float32)
    full[1:] = vecs
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "item_texts.jsonl", "w") as fh:
            for idx, (raw_id, t) in enumerate(zip(split.item_vocab.ids, texts), start=1):
                fh.write(json.dumps({"index": idx, "item": raw_id, "text": t}) + "\n")
        np.save(out_dir / "item_embeddings.npy", full)
        (out_dir / "embed_stats.json").write_text(json.dumps(stats, indent=2))
    return full, stats
