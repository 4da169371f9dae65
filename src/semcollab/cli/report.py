"""Results of saved runs: ``report`` (one self-contained HTML page) and ``table`` (one results table)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..report.html import _datasets, _label, load_run, write_report
from ..report.table import markdown_rows, rich_rows
from ..textsafe import safe_text
from .common import console, fail, handled, warn
from .ctr import ctr_rich_table


@handled
def report(runs: list[Path] = typer.Argument(..., help="run folders (ranking and/or CTR) written by `semcollab train`"),
           out: Path = typer.Option(Path("report.html"), help="the HTML file to write"),
           diagnose: Path | None = typer.Option(None, help="a `semcollab diagnose` output folder (report.json + "
                                                           "report.png) to include"),
           allow_mixed_datasets: bool = typer.Option(False, help="accept runs of several datasets: one section "
                                                                 "per dataset")):
    """One HTML file (no network needed: plots and styles inline): metrics with mean ± sd over seeds, training
    curves, head/tail and short/long-user breakdowns, warm/cold for CTR runs, intents, complementarity."""
    path = write_report(runs, out, diagnose=diagnose, allow_mixed_datasets=allow_mixed_datasets)
    console.print(safe_text(f"report written to {path} ({path.stat().st_size / 1e3:.0f} kB, {len(runs)} runs)"))


@handled
def table(run_dirs: list[Path] = typer.Argument(..., help="run folders written by `semcollab train` or `ctr train`"),
          stage: str = typer.Option("test"), out: Path | None = typer.Option(None, help="write Markdown here")):
    """One results table from saved runs (each may have been trained with its own settings), with a dataset
    column, sorted by dataset; CTR runs get their own table; a folder that is no run is skipped with a warning."""
    # a folder that is not a finished run (e.g. runs/ctr, a folder *of* runs) is skipped with one warning line
    # naming it; with no run left it is an error
    runs, skipped = [], []
    for d in run_dirs:
        missing = [f for f in ("metrics.json", "config.yaml") if not (d / f).is_file()]
        if missing:
            inside = sum((p / "metrics.json").is_file() for p in d.iterdir()) if d.is_dir() else 0
            why = (f"{d} is not a finished run folder: {missing[0]} is missing" if d.is_dir() else
                   f"{d} is not a folder") + (f" (it holds {inside} run folders: give {d}/* to include them)"
                                              if inside else "")
            skipped.append(why)
            warn(f"skipped {why}")
            continue
        runs.append(load_run(d, stage))
    if not runs:
        fail("no finished run folder to tabulate: " + "; ".join(skipped))
    _datasets(runs)
    runs.sort(key=lambda r: r.dataset)  # stable: the given order within a dataset
    md = []
    for kind in ("ranking", "ctr"):
        rows: list[tuple[str, str, dict]] = []
        for r in (r for r in runs if r.kind == kind):
            name = _label(r)
            if any(n == name and ds == r.dataset for n, ds, _ in rows):
                name = f"{name} ({r.path.name})"
            rows.append((name, r.dataset, r.metrics))
        if not rows:
            continue
        if kind == "ranking":
            console.print(rich_rows(rows, title=f"{stage} (full ranking)"))
            md.append(markdown_rows(rows))
        else:
            console.print(ctr_rich_table({f"{n} ({ds})": m for n, ds, m in rows}, f"{stage} (CTR)"))
            md.append(_ctr_markdown(rows))
    if out:
        out.write_text("\n\n".join(md) + "\n")
        console.print(safe_text(f"table written to {out}"))


def _ctr_markdown(rows: list[tuple[str, str, dict]]) -> str:
    def f(v):
        return "-" if v is None else f"{v:.4f}"

    lines = ["| model | dataset | AUC | UAUC | warm AUC | warm UAUC | cold AUC | cold UAUC | log-loss |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n, ds, m in rows:
        w, c = m.get("warm") or {}, m.get("cold") or {}
        lines.append(f"| {n} | {ds} | {f(m['all'].get('auc'))} | {f(m['all'].get('uauc'))} | "
                     f"{f(w.get('auc'))} | {f(w.get('uauc'))} | {f(c.get('auc'))} | {f(c.get('uauc'))} | "
                     f"{f(m['all'].get('logloss'))} |")
    return "\n".join(lines)
