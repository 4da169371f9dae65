"""``diagnose``: complementarity of two saved ranking runs of one split."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..tasks.ranking_eval import diagnose_runs
from ..textsafe import safe_text
from .common import console, handled, warn, warnings_printed


@handled
def diagnose_cmd(run_a: Path = typer.Argument(..., help="run folder of the first model (e.g. semantic)"),
                 run_b: Path = typer.Argument(..., help="run folder of the second model (e.g. sasrec)"),
                 k: int = typer.Option(10), probes: bool = typer.Option(True, help="fit alignment probes A -> B"),
                 out: Path = typer.Option(Path("diagnostics"), help="folder for report.json and report.png"),
                 allow_data_change: bool = typer.Option(False, help="accept runs whose data source changed since")):
    """Complementarity of two trained recommenders on the same dataset: overlap, unique hits, oracle, fusion, probes."""
    with warnings_printed():  # an allowed data change: a warning line, not Python noise
        report, (cfg_a, cfg_b, split) = diagnose_runs(run_a, run_b, k, probes, out, allow_data_change)
    if report["groups"]["all"].get("jaccard") == 1.0:
        warn(f"the two runs recommend identical top-{k} lists to every test user (Jaccard 1.0): are they the same "
              "model? Complementarity figures are meaningless then")
    t = Table(title=safe_text(f"{split.name}: {cfg_a.model} (A) vs {cfg_b.model} (B), top-{k}, test users"))
    for col in ("group", "users", "Jaccard", "HR A", "HR B", "only A", "only B", "oracle HR", "fused HR", "RRF HR",
                "NDCG gap closed"):
        t.add_column(col)
    for g, v in report["groups"].items():
        if not v.get("n_users"):
            continue
        gc = v["fusion_weighted"]["gap_closed"]
        t.add_row(g, str(v["n_users"]), f"{v['jaccard']:.3f}", f"{v['hr_a']:.4f}", f"{v['hr_b']:.4f}", f"{v['only_a']:.4f}",
                  f"{v['only_b']:.4f}", f"{v['oracle_hr']:.4f}", f"{v['fusion_weighted']['hr']:.4f}",
                  f"{v['fusion_rrf']['hr']:.4f}", "-" if gc is None else f"{gc:.2f}")
    console.print(t)
    console.print(safe_text(f"report written to {out}/report.json and {out}/report.png"))
