"""The semantic side: item texts -> language-model embeddings (cached), optional PCA/whitening."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from ..config import at_least, one_of
from .encoders import EncoderOutputError, EncoderSpec, TextEncoder, embed_texts, resolve_encoder
from .reduce import PCAReducer, fit_pca
from .templates import render_item_texts, template_fields

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


EMPTY_TEXT = ("template", "skip", "refuse")


@dataclass
class TextSettings:
    """The embedding settings a text-using model exposes in its own config (``model_params``).

    ``empty_text``: what happens to items whose rendered text is empty (the template's fields are all
    missing for them). Any such item is reported (a warning with the count and example ids); then

    * ``template`` (default): the item is encoded from a fallback text -- the ``"field: value; ..."`` join
      over all of its non-empty text fields, else ``"item <id>"`` -- so every item keeps a vector of its own
      (before, all of them shared the one vector of the empty string, which made them look identical);
    * ``skip``: the item gets no text vector (an all-zero row, never encoded or cached). The pure semantic
      model scores it ``-inf`` (it cannot rank an item it knows nothing about: it is never recommended, and
      counts as a miss when it is the target); fusion models still rank it by its ID embedding;
    * ``refuse``: a :class:`~semcollab.data.DataError` naming the count and examples.

    ``template`` is the default because a run should neither stop nor drop items for a few missing
    titles, yet each item must stay distinguishable and every item must keep a usable vector (the
    ``embed`` output never holds an all-zero row); the warning says that a fallback was used."""

    encoder: str = "minilm"
    template: str | None = None
    pooling: str | None = one_of(None, "mean", "last")
    prompt: str = ""
    pca_dim: int | None = at_least(None, 1)
    whiten: bool = False
    cache_dir: str | None = None
    empty_text: str = one_of("template", *EMPTY_TEXT)


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
    empty_text: str = "template"  # template | skip | refuse: see TextSettings
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_model_config(cls, model_cfg: TextSettings) -> EmbedConfig:
        """The embedding settings of a text model's config (its :class:`TextSettings` fields)."""
        return cls(**{f.name: getattr(model_cfg, f.name) for f in fields(TextSettings)})


def _empty_text_items(split, cfg: EmbedConfig, texts: list[str]) -> tuple[list[str], list[int], dict]:
    """Apply ``cfg.empty_text`` to the items whose text is empty: ``(texts, skipped positions, stats)``."""
    import warnings

    from ..errors import DataError

    empty = [i for i, t in enumerate(texts) if not t.strip()]
    ids = split.item_vocab.ids
    if cfg.template is not None:
        used = f"template {cfg.template!r} (columns {template_fields(cfg.template)})"
    elif not cfg.fields and getattr(split, "default_template", None):
        used = f"the dataset's template {split.default_template!r} (columns {template_fields(split.default_template)})"
    else:
        used = f"text columns {cfg.fields or split.text_fields}"
    if empty and len(empty) == len(texts):
        raise DataError(f"{split.name}: every item text is empty ({len(texts)} items) with {used}; the item table "
                        f"has columns {[c for c in split.items.columns]}. Give a template over columns that hold "
                        "text (--template / model_params.template), or data.item_text_cols for a table")
    stats = {"empty_texts": len(empty), "empty_text": cfg.empty_text}
    if not empty:
        return texts, [], stats
    if cfg.empty_text not in EMPTY_TEXT:
        raise DataError(f"empty_text must be one of {', '.join(EMPTY_TEXT)}, got {cfg.empty_text!r}")
    examples = [str(ids[i]) for i in empty[:5]]
    stats["empty_text_examples"] = examples
    head = f"{split.name}: {len(empty)} of {len(texts)} items have an empty text with {used} (e.g. items {examples})"
    if cfg.empty_text == "refuse":
        raise DataError(f"{head}; refused by empty_text=refuse. Use empty_text=template (encode a fallback text) "
                        "or empty_text=skip (no text vector), or a template over columns they have")
    if cfg.empty_text == "skip":
        warnings.warn(f"{head}: they get no text vector (empty_text=skip): the semantic model never recommends "
                      "them, fusion models rank them by their ID embedding", stacklevel=3)
        return texts, empty, stats
    fallback = render_item_texts(split.items, split.text_fields, None) if split.text_fields else [""] * len(texts)
    texts = list(texts)
    for i in empty:
        texts[i] = fallback[i] if fallback[i].strip() else f"item {ids[i]}"
    warnings.warn(f"{head}: they are encoded from a fallback text (their other text fields, else 'item <id>'; "
                  "empty_text=template); set empty_text=skip to give them no text vector or empty_text=refuse to "
                  "stop (model_params.empty_text for a model)", stacklevel=3)
    return texts, [], stats


def item_embeddings(split, cfg: EmbedConfig | None = None, out_dir: Path | None = None) -> tuple[np.ndarray, dict]:
    """``(n_items + 1, d)`` item vectors aligned with item indices (row 0 = padding = zeros) and stats.

    Items with an empty text are handled by ``cfg.empty_text`` (see :class:`TextSettings`; ``skip`` leaves
    their rows at zero, also after PCA). With ``out_dir`` the rendered texts, vectors and stats are written
    there for inspection."""
    cfg = cfg or EmbedConfig()
    if hasattr(split, "render_texts"):  # a None template means the dataset's default template
        texts = split.render_texts(cfg.template, cfg.fields)
    else:
        texts = render_item_texts(split.items, cfg.fields or split.text_fields, cfg.template)
    rendered = texts
    texts, skipped, empty_stats = _empty_text_items(split, cfg, texts)
    keep = np.setdiff1d(np.arange(len(texts)), skipped)
    spec = resolve_encoder(cfg.encoder, cfg.pooling, cfg.prompt, cfg.max_length)
    try:
        enc, stats = embed_texts([texts[i] for i in keep], spec, cfg.cache_dir, cfg.device, cfg.batch_size,
                                 cfg.progress)
    except EncoderOutputError as exc:
        i = int(keep[exc.index])
        raise EncoderOutputError(f"{split.name}, item {split.item_vocab.ids[i]} (index {i + 1}): {exc}", i) from None
    vecs = np.zeros((len(texts), enc.shape[1]), dtype=np.float32)
    vecs[keep] = enc
    stats.update(empty_stats)
    if cfg.pca_dim:
        train_items = np.setdiff1d(np.unique(split.train["item"].to_numpy()) - 1, skipped)
        red = fit_pca(vecs, train_items, cfg.pca_dim, cfg.whiten)
        vecs = red.transform(vecs).astype(np.float32)
        vecs[skipped] = 0  # no text vector stays no text vector (centring would move it)
        stats.update(pca_dim=cfg.pca_dim, whiten=cfg.whiten, pca_fit_items=len(train_items),
                     pca_explained_variance=float(red.explained_variance_ratio.sum()))
    full = np.zeros((len(texts) + 1, vecs.shape[1]), dtype=np.float32)
    full[1:] = vecs
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        skip = set(skipped)
        with open(out_dir / "item_texts.jsonl", "w") as fh:
            for k, (raw_id, t) in enumerate(zip(split.item_vocab.ids, rendered)):
                row = {"index": k + 1, "item": raw_id, "text": t}
                if not t.strip():  # how the empty text was handled, and what was encoded instead
                    row["empty_text"] = cfg.empty_text
                    if k not in skip:
                        row["encoded_text"] = texts[k]
                fh.write(json.dumps(row) + "\n")
        np.save(out_dir / "item_embeddings.npy", full)
        (out_dir / "embed_stats.json").write_text(json.dumps(stats, indent=2))
    return full, stats
