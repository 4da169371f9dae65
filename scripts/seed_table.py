"""Mean ± std over seeds of each model's test metrics, from run folders (Markdown to stdout).

Usage: python scripts/seed_table.py RUNS_GROUP_DIR [RUNS_GROUP_DIR ...]; each group folder holds runs of
one setting; a group with one run is printed without std (ablations)."""

import json
import sys

import numpy as np
import yaml

from semcollab.report.table import run_label, seeded_runs

COLS = ("hr@10", "ndcg@10")
print("| setting | runs | HR@10 | NDCG@10 | head NDCG@10 | tail NDCG@10 | epochs (best) |")
print("|---|---|---|---|---|---|---|")
for group in sys.argv[1:]:
    runs = seeded_runs(group)
    by_setting: dict[str, list] = {}
    for r in runs:
        by_setting.setdefault(run_label(yaml.safe_load((r / "config.yaml").read_text())), []).append(r)
    for name, rs in by_setting.items():
        m = [json.loads((r / "metrics.json").read_text())["test"] for r in rs]
        fits = [json.loads((r / "run.json").read_text())["fit"] for r in rs]

        def cell(vals):
            vals = np.array(vals)
            return f"{vals.mean():.4f} ± {vals.std(ddof=1):.4f}" if len(vals) > 1 else f"{vals[0]:.4f}"

        ep = ", ".join(f"{f['epochs_run']} ({f['best_epoch']})" for f in fits)
        print(f"| {name} | {len(rs)} | {cell([x['overall']['hr@10'] for x in m])} | "
              f"{cell([x['overall']['ndcg@10'] for x in m])} | {cell([x['head']['ndcg@10'] for x in m])} | "
              f"{cell([x['tail']['ndcg@10'] for x in m])} | {ep} |")
