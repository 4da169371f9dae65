"""Data: ``data prepare`` (load, filter, split, cache) and ``embed`` (item text vectors)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from ..config import load_config
from ..data import load_split
from ..distributed import is_main, launch, setup, without_nproc
from ..text import EmbedConfig
from ..text.embed_items import embed_items
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
          empty_text: EmptyText = typer.Option(EmptyText.template, help=EMPTY_TEXT_HELP),
          nproc: int | None = typer.Option(None, min=1, help="encode in N processes: re-runs this command under torchrun "
                                                      "(each rank encodes its share of the LM batches)")):
    """Encode every item's text with a language model (cached by model + text hash)."""
    if nproc is not None:
        raise typer.Exit(launch(nproc, ["embed", *without_nproc(sys.argv[1:])]))
    named(encoder, "--encoder")
    named(template, "--template")
    cfg = load_config(None, ctx.args)
    cfg.data.name = dataset_option(dataset, None, ctx.args) or cfg.data.name
    split = load_split(cfg.data)
    setup()  # under torchrun: join the group now, so that rank 0 alone shows the progress bar
    ecfg = EmbedConfig(encoder=encoder, template=template, pooling=pooling, prompt=prompt, pca_dim=pca_dim,
                       whiten=whiten, batch_size=batch_size, progress=is_main(), empty_text=empty_text.value)
    vecs, stats = embed_items(split, ecfg, out_dir=out / split.name)
    if not is_main():  # under torchrun rank 0 alone prints
        return
    console.print_json(json.dumps(stats))
    console.print(safe_text(f"{vecs.shape[0] - 1} item vectors of dim {vecs.shape[1]} and their texts written to "
                            f"{out / split.name}"))
