"""``diagnose``: complementarity of two saved ranking runs of one split."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..config import to_dict
from ..methods.complementarity.diagnose import diagnose
from ..tasks.base import read_run_record
from ..textsafe import safe_text
from .common import check_k, console, handled, load_saved_run, warn


@handled
def diagnose_cmd(run_a: Path = typer.Argument(..., help="run folder of the first model (e.g. semantic)"),
                 run_b: Path = typer.Argument(..., help="run folder of the second model (e.g. sasrec)"),
                 k: int = typer.Option(10), probes: bool = typer.Option(True, help="fit alignment probes A -> B"),
                 out: Path = typer.Option(Path("diagnostics"), help="folder for report.json and report.png"),
                 allow_data_change: bool = typer.Option(False, help="accept runs whose data source changed since")):
    """Complementarity of two trained recommenders on the same dataset: overlap, unique hits, oracle, fusion, probes."""
    if run_a.resolve() == run_b.resolve():
        raise typer.BadParameter(f"both arguments are the same run ({run_a}); a run against itself has Jaccard "
                                 "1.0 by construction. Give two different runs of one split")
    fp_a, fp_b = read_run_record(run_a).get("data_fingerprint"), read_run_record(run_b).get("data_fingerprint")
    if fp_a and fp_b and fp_a != fp_b:
        raise typer.BadParameter(f"{run_a} and {run_b} were trained on different data (fingerprints "
                                 f"{fp_a[:12]} vs {fp_b[:12]}), even if the source path is the same")
    cfg_a, model_a, split = load_saved_run(run_a, allow_data_change)
    cfg_b, model_b, _ = load_saved_run(run_b, allow_data_change)
    if to_dict(cfg_a.data) != to_dict(cfg_b.data):
        raise typer.BadParameter("the two runs were trained on different data settings; compare runs of one split")
    check_k(k, split)
    report = diagnose(model_a, model_b, split, k, (cfg_a.model, cfg_b.model), probes, out)
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
