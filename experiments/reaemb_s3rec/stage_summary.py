"""What ReaEmb's two stages did in one run folder, from its saved states and tables (no LM is loaded):
stage-1 loss as means of equal windows and the learnt temperature; stage-2 noise-free rank reward per third of
its steps against the chance level of a uniformly random rank; and how far apart the tables are (mean cosine per
item: plain LM vs stage 1, stage 1 vs stages 1+2), over the items with text (row 0 is padding).

Usage: python experiments/reaemb_s3rec/stage_summary.py RUN_DIR [--windows 10] [--json-out FILE]
(tables are read from RUN_DIR/tables/{plain,stage1,stage2}.npy, as experiments/reaemb_s3rec/run.sh writes them)"""

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

ap = argparse.ArgumentParser()
ap.add_argument("run_dir", type=Path)
ap.add_argument("--windows", type=int, default=10, help="stage-1 loss is reported as this many window means")
ap.add_argument("--json-out", type=Path)
args = ap.parse_args()
if args.windows < 1:
    ap.error("--windows must be >= 1")


def read(path: Path) -> str:
    if not path.exists():
        raise SystemExit(f"{path} not found: is {args.run_dir} a finished `semcollab reaemb train` folder?")
    return path.read_text()


cfg = yaml.safe_load(read(args.run_dir / "config.yaml"))
s1 = json.loads(read(args.run_dir / "stage1" / "final" / "state.json"))
s2 = json.loads(read(args.run_dir / "stage2" / "final" / "state.json"))
out = {"run_dir": str(args.run_dir)}


def window_means(x: np.ndarray, n: int) -> list[float]:
    """Means of ``n`` near-equal consecutive windows (fewer when ``x`` is shorter: no empty window)."""
    return [round(float(w.mean()), 3) for w in np.array_split(x, min(n, len(x)))] if len(x) else []


losses = np.asarray(s1["losses"], dtype=float)  # one per optimizer step
out["stage1"] = {"steps": s1["steps"], "temperature": s1["temperature"],
                 "loss_window_means": window_means(losses, args.windows)}

# one noise-free reward per micro-batch (grad_accum of them per optimizer step), of the last call only
rewards = np.asarray(s2["noise_free_rewards_this_call"], dtype=float)
k = 1 + int(cfg["stage2"]["n_random"])  # the positive among k candidates; reward 1 / (1 + log2(rank + 2))
chance = float(np.mean(1.0 / (1.0 + np.log2(np.arange(k) + 2.0))))
out["stage2"] = {"steps": s2["steps"], "micro_batches_with_reward": len(rewards), "candidates": k,
                 "chance_reward": round(chance, 3), "noise_free_reward_thirds": window_means(rewards, 3)}
accum = int(cfg["stage2"].get("grad_accum", 1))
if len(rewards) < (s2["steps"] - 1) * accum + 1:  # the last step may hold fewer micro-batches
    out["stage2"]["note"] = (f"rewards cover the last call only ({len(rewards)} micro-batches for {s2['steps']} "
                             f"steps of {accum})")


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a[1:].astype(np.float64), b[1:].astype(np.float64)
    keep = (np.linalg.norm(a, axis=1) > 0) & (np.linalg.norm(b, axis=1) > 0)  # items without text stay zero
    a, b = a[keep], b[keep]
    return float(np.mean((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


tables = {n: args.run_dir / "tables" / f"{n}.npy" for n in ("plain", "stage1", "stage2")}
have = {n: np.load(p) for n, p in tables.items() if p.exists()}
out["mean_cosine"] = {}
for a, b in (("plain", "stage1"), ("stage1", "stage2")):
    if a in have and b in have:
        out["mean_cosine"][f"{a}_vs_{b}"] = round(mean_cosine(have[a], have[b]), 5)
print(json.dumps(out, indent=2))
if args.json_out:
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(out, indent=2) + "\n")
