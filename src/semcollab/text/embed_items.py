"""Item embeddings with every setting checked before anything is encoded: ``semcollab embed`` and
:func:`embed_items` refuse a pooling the encoder cannot apply, ``whiten`` without PCA, or a PCA dimension above the
training items or the encoder's width, instead of failing (or being ignored) after a long encoding pass. The messages
name the CLI options (``--pca-dim`` is ``EmbedConfig.pca_dim``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from .. import distributed as ddp
from ..config import ConfigError
from ..hub.models import MODELS
from ..hub.wheels import default_cache_dir
from ..runs.shards import content_key, inference_shards
from . import EmbedConfig, item_embeddings
from .encoders import resolve_encoder


def encoder_facts(encoder: str) -> tuple[str | None, int | None]:
    """``(kind, output dim)`` of an encoder known before loading it: ``sentence-transformers`` (pools with its own
    modules) or ``hf`` from the registry or the folder's files; None where it is not known (a hub id)."""
    if encoder in MODELS:
        e = MODELS[encoder]
        return ("sentence-transformers" if e.kind == "sentence-encoder" else "hf"), e.hidden_size
    p = Path(encoder).expanduser()
    if not p.is_dir():
        return None, None
    if (p / "modules.json").exists():
        return "sentence-transformers", None  # a Dense module may change the dim: known once loaded
    try:
        dim = json.loads((p / "config.json").read_text(encoding="utf-8")).get("hidden_size")
    except (OSError, ValueError, AttributeError):
        dim = None
    return "hf", dim if isinstance(dim, int) and not isinstance(dim, bool) else None


def check_embed_options(encoder: str, pooling: str | None, pca_dim: int | None, whiten: bool, split) -> int | None:
    """Refuse embed settings that would be ignored or fail after the encoding: a pooling the encoder cannot
    apply, ``--whiten`` without PCA, a PCA dim above the training items or the encoder's dim. Returns the
    encoder's dim when known before encoding."""
    kind, dim = encoder_facts(encoder)
    if pooling is not None and pooling not in ("mean", "last"):
        raise ConfigError(f"--pooling must be mean or last, got {pooling!r}")
    if kind == "sentence-transformers" and pooling not in (None, "mean"):
        raise ConfigError(f"--pooling {pooling}: {encoder} is a sentence-transformers model and pools with its own "
                          "(mean) module; leave --pooling out (mean and last apply to Hugging Face models)")
    if whiten and pca_dim is None:  # whitening divides each PCA component by its standard deviation
        raise ConfigError("--whiten scales the PCA components and needs --pca-dim D (D = the encoder's dim "
                          f"{'' if dim is None else f'{dim} '}whitens without reducing)")
    if pca_dim is not None:
        n_train = len(np.unique(split.train["item"].to_numpy()))
        if pca_dim > n_train:
            raise ConfigError(f"--pca-dim must be at most the {n_train} training items of {split.name} (PCA is "
                              f"fitted on them), got {pca_dim}")
        if dim is not None and pca_dim > dim:
            raise ConfigError(f"--pca-dim must be at most the encoder's dim ({encoder}: {dim}), got {pca_dim}")
    return dim


def embed_items(split, cfg: EmbedConfig, out_dir: str | Path | None = None):
    """:func:`~semcollab.text.item_embeddings` after :func:`check_embed_options`; returns ``(vectors, stats)``.
    Where the encoder's width is known only once loaded (a hub id), the vectors are encoded (and cached) first and
    the PCA dimension checked against them before the reduction.

    Under torchrun (``semcollab embed --nproc N``) the LM batches are split over the ranks (:mod:`semcollab.runs.
    shards`: bit-equal to one process, a killed rank's shard redone on resume); every rank returns the vectors,
    rank 0 alone writes ``out_dir``."""
    dim = check_embed_options(cfg.encoder, cfg.pooling, cfg.pca_dim, cfg.whiten, split)
    if not ddp.setup():
        return _embed_items(split, cfg, dim, out_dir)
    spec = resolve_encoder(cfg.encoder, cfg.pooling, cfg.prompt, cfg.max_length)
    root = Path(cfg.cache_dir or default_cache_dir()) / "shards" / "embed"
    with inference_shards(root, content_key("embed", spec.key(), cfg.device, cfg.batch_size)):
        return _embed_items(split, cfg, dim, out_dir if ddp.is_main() else None)


def _embed_items(split, cfg: EmbedConfig, dim: int | None, out_dir):
    if cfg.pca_dim is not None and dim is None:
        vecs, _ = item_embeddings(split, dataclasses.replace(cfg, pca_dim=None, whiten=False))
        if cfg.pca_dim > vecs.shape[1]:
            raise ConfigError(f"--pca-dim must be at most the encoder's dim ({cfg.encoder}: {vecs.shape[1]}), got "
                              f"{cfg.pca_dim}")
    return item_embeddings(split, cfg, out_dir=out_dir)


__all__ = ["check_embed_options", "embed_items", "encoder_facts"]
