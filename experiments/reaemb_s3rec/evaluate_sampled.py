"""Re-evaluate saved ranking runs under the sampled protocol (the ReaEmb / LLMEmb papers' 100 random negatives),
writing one JSON per run beside its metrics.json (`sampled-<negatives>-<n>.json`); existing files are kept,
unfinished run folders (no metrics.json) are skipped.

Usage: python experiments/reaemb_s3rec/evaluate_sampled.py RUN_DIR [RUN_DIR ...] [--n 100] [--negatives uniform]"""

import argparse
import json
from pathlib import Path

from semcollab.tasks.ranking_eval import evaluate_run

ap = argparse.ArgumentParser()
ap.add_argument("runs", nargs="+", type=Path)
ap.add_argument("--n", type=int, default=100)
ap.add_argument("--negatives", default="uniform", choices=("uniform", "popularity"))
args = ap.parse_args()
for run_dir in args.runs:
    out = run_dir / f"sampled-{args.negatives}-{args.n}.json"
    if out.exists():
        continue
    if not (run_dir / "metrics.json").exists():  # e.g. a run killed mid-training beside its rerun
        print(f"{run_dir}: not a finished run (no metrics.json), skipped")
        continue
    res = evaluate_run(run_dir, "test", ["eval.protocol=sampled", f"eval.negatives={args.negatives}",
                                         f"eval.n_negatives={args.n}"])
    out.write_text(json.dumps(res, indent=1))
    print(f"{run_dir}: {res['protocol']} HR@10 {res['overall']['hr@10']:.4f} NDCG@10 {res['overall']['ndcg@10']:.4f}")
