"""Data: ``data prepare`` (load, filter, split, cache) and ``embed`` (item text vectors)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import typer

from ..config import ConfigError, load_config
from ..data import load_split
from ..hub.models import MODELS
from ..text import EmbedConfig, item_embeddings
from ..textsafe import safe_text
from .common import EMPTY_TEXT_HELP, EXTRA, EmptyText, console, dataset_option, handled, log, named

data_app = typer.Typer(no_args_is_help=True, help="Dataset preparation.")


@data_app.command("prepare", context_settings=EXTRA)
@handled
def data_prepare(ctx: typer.Context, dataset: str = typer.Argument(..., help="ml-100k, s3rec:Beauty, table, ..."),
                 config: Path | None = typer.Option(None, help="YAML config")):
    """Load, filter, remap and split a dataset (cached as Parquet); print its statistics."""
    cfg = load_config(config, ctx.args)
    cfg.data.name = dataset_option(dataset, config, ctx.args, flag="the DATASET argument")
    split = load_split(cfg.data, log=log)
    console.print_json(json.dumps({"dataset": split.name, "protocol": split.protocol, **split.stats}))



def _encoder_facts(encoder: str) -> tuple[str | None, int | None]:
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


def _check_embed_options(encoder: str, pooling: str | None, pca_dim: int | None, whiten: bool, split) -> int | None:
    """Refuse embed settings that would be ignored or fail after the encoding: a pooling the encoder cannot
    apply, ``--whiten`` without PCA, a PCA dim above the training items or the encoder's dim. Returns the
    encoder's dim when known before encoding."""
    kind, dim = _encoder_facts(encoder)
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


@handled
def embed(ctx: typer.Context, dataset: str | None = typer.Option(None, help="default: data.name, else ml-100k"),
          encoder: str = typer.Option("minilm", help="minilm, smollm2-135m, a local model folder or a hub id"),
          template: str | None = typer.Option(None, help='e.g. "{title} ({year}). Genres: {genres}"; default: the '
                                                 "dataset's own template"),
          pooling: str | None = typer.Option(None, help="mean or last (Hugging Face models; default per encoder)"),
          prompt: str = typer.Option("", help="instruction prepended to every item text"),
          pca_dim: int | None = typer.Option(None, min=1, help="PCA dimension, fitted on training items only"),
          whiten: bool = typer.Option(False, help="whiten the PCA components (needs --pca-dim)"),
          batch_size: int = typer.Option(64, min=1),
          out: Path = typer.Option(Path("embeddings"), help="folder for texts, vectors and stats"),
          empty_text: EmptyText = typer.Option(EmptyText.template, help=EMPTY_TEXT_HELP)):
    """Encode every item's text with a language model (cached by model + text hash)."""
    named(encoder, "--encoder")
    named(template, "--template")
    cfg = load_config(None, ctx.args)
    cfg.data.name = dataset_option(dataset, None, ctx.args) or cfg.data.name
    split = load_split(cfg.data)
    dim = _check_embed_options(encoder, pooling, pca_dim, whiten, split)
    ecfg = EmbedConfig(encoder=encoder, template=template, pooling=pooling, prompt=prompt, pca_dim=pca_dim,
                       whiten=whiten, batch_size=batch_size, progress=True, empty_text=empty_text.value)
    if pca_dim is not None and dim is None:  # dim known only once encoded: encode (cached), check, then reduce
        vecs, _ = item_embeddings(split, dataclasses.replace(ecfg, pca_dim=None, whiten=False))
        if pca_dim > vecs.shape[1]:
            raise ConfigError(f"--pca-dim must be at most the encoder's dim ({encoder}: {vecs.shape[1]}), got "
                              f"{pca_dim}")
    vecs, stats = item_embeddings(split, ecfg, out_dir=out / split.name)
    console.print_json(json.dumps(stats))
    console.print(safe_text(f"{vecs.shape[0] - 1} item vectors of dim {vecs.shape[1]} and their texts written to "
                            f"{out / split.name}"))
