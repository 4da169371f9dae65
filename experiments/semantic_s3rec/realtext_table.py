"""Per dataset: SASRec, semantic-only with attribute-id text and with real text per encoder (test, full ranking),
from the run folders of experiments/semantic_s3rec/run.sh (Markdown to stdout).

Usage: python experiments/semantic_s3rec/realtext_table.py [OUT=runs/semantic-s3rec]"""

import json
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/semantic-s3rec")
NAMES = {"sasrec": "SASRec", "semantic-attribute-ids": "semantic-only, attribute-id text",
         "semantic-minilm": "semantic-only, real text, MiniLM", "semantic-mpnet": "semantic-only, real text, mpnet"}
print("| dataset | model | HR@10 | NDCG@10 | head NDCG@10 | tail NDCG@10 |")
print("|---|---|---|---|---|---|")
for ds in sorted(p for p in out.iterdir() if p.is_dir()):
    for key, name in NAMES.items():
        runs = sorted((ds / key).glob("*/metrics.json"))
        if not runs:
            continue
        t = json.loads(runs[-1].read_text())["test"]
        print(f"| {ds.name} | {name} | {t['overall']['hr@10']:.4f} | {t['overall']['ndcg@10']:.4f} | "
              f"{t['head']['ndcg@10']:.4f} | {t['tail']['ndcg@10']:.4f} |")
