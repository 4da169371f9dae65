"""Markdown rows of complementarity reports (semcollab diagnose ... --out DIR -> DIR/report.json).

Usage: python experiments/diagnostics/report_rows.py docs/diagnostics/<name>/report.json [...]
One row per report and item group (all / head / tail): Jaccard@K of the two top-K lists, HR@K of A and B, the
users only A or only B hits, the oracle (either hits) HR, the validation-weighted and RRF fusions and the share of
the oracle gap the weighted fusion closes; then the linear probe's R² (A -> B item vectors) in distribution and
head -> tail."""

import json
import sys
from pathlib import Path

GROUPS = (("all", "all"), ("head_items", "head items"), ("tail_items", "tail items"))
print("| report | group | users | Jaccard@10 | HR A | HR B | only A | only B | oracle HR | weighted fusion HR "
      "| RRF HR | oracle NDCG gap closed (weighted) | probe R² (in dist. / head->tail) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for path in sys.argv[1:]:
    r = json.loads(Path(path).read_text())
    splits = r.get("probes", {}).get("splits", {})
    probe = " / ".join(f"{splits[s]['linear']['r2']:.3f}" if s in splits else "-" for s in ("in_distribution", "head_to_tail"))
    for key, name in GROUPS:
        g = r["groups"][key]
        print(f"| {Path(path).parent.name} | {name} | {g['n_users']:,} | {g['jaccard']:.4f} | {g['hr_a']:.4f} | "
              f"{g['hr_b']:.4f} | {g['only_a']:.4f} | {g['only_b']:.4f} | {g['oracle_hr']:.4f} | "
              f"{g['fusion_weighted']['hr']:.4f} | {g['fusion_rrf']['hr']:.4f} | "
              f"{100 * g['fusion_weighted']['gap_closed']:.0f}% | {probe if key == 'all' else ''} |")
