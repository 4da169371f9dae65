"""Complementarity diagnostics for any pair of recommenders ("alignment is not enough")."""

from __future__ import annotations

import json
from pathlib import Path

from .measures import complementarity_report, pair_statistics, summarise
from .probes import item_table, knn_overlap, linear_cka, run_probes

__all__ = ["complementarity_report", "diagnose", "item_table", "knn_overlap", "linear_cka", "pair_statistics",
           "run_probes", "summarise"]


def diagnose(model_a, model_b, split, k: int = 10, names=("A", "B"), probes: bool = True, out_dir: Path | None = None,
             device="cpu", head_frac: float = 0.2) -> dict:
    """Pairwise report (+ alignment probes from A's item vectors onto B's when both have them).

    With ``out_dir``, writes ``report.json`` and ``report.png`` there."""
    report = complementarity_report(model_a, model_b, split, k, device, head_frac, names)
    if probes:
        try:
            sem, col = item_table(model_a), item_table(model_b)
        except TypeError as exc:
            report["probes_skipped"] = str(exc)
        else:
            report["probes"] = run_probes(sem, col, split)
            report["probes"]["direction"] = f"{names[0]} item vectors -> {names[1]} item vectors"
    if out_dir is not None:
        from .report import plot_report

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps(report, indent=2))
        plot_report(report, out_dir / "report.png")
    return report
