"""Re-evaluate saved ranking runs under the sampled protocol (the ReaEmb / LLMEmb papers' 100 random negatives),
writing one JSON per run beside its metrics.json (`sampled-<negatives>-<n>.json`); existing files are kept,
unfinished run folders (no metrics.json) are skipped.

Usage: python scripts/evaluate_sampled.py RUN_DIR [RUN_DIR ...] [--n 100] [--negatives uniform]"""

import argparse
import json
from pathlib import Path

from semcollab.config import EvalConfig, from_dict, to_dict
from semcollab.evaluate.evaluator import evaluate_ranking
from semcollab.tasks.ranking import load_ranking_run
from semcollab.train.trainer import resolve_device

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
    cfg, net, split = load_ranking_run(run_dir)
    ev = from_dict(EvalConfig, {**to_dict(cfg.eval), "protocol": "sampled", "negatives": args.negatives,
                                "n_negatives": args.n}, prefix="eval.")  # validated like a config file
    device = resolve_device(cfg.train.device)
    res = evaluate_ranking(net.to(device), split.eval_set("test"), split.n_items, split.item_popularity(), ev, device)
    out.write_text(json.dumps(res, indent=1))
    print(f"{run_dir}: {res['protocol']} HR@10 {res['overall']['hr@10']:.4f} NDCG@10 {res['overall']['ndcg@10']:.4f}")
