"""What ReaEmb's two stages did in one run folder, from its saved states and tables (no LM is loaded):
stage-1 loss as means of equal windows and the learnt temperature; stage-2 noise-free rank reward per third of
its steps against the chance level of a uniformly random rank; and how far apart the tables are (mean cosine per
item: plain LM vs stage 1, stage 1 vs stages 1+2), over the items with text (row 0 is padding).

Usage: python scripts/reaemb_stage_summary.py RUN_DIR [--windows 10] [--json-out FILE]
(tables are read from RUN_DIR/tables/{plain,stage1,stage2}.npy, as scripts/reaemb_s3rec.sh writes them)"""

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


def read_json(path: Path) -> dict:
    if not path.exists():
        raise SystemExit(f"{path} not found: is {args.run_dir} a finished `semcollab reaemb train` folder?")
    return json.loads(path.read_text())


cfg = yaml.safe_load((args.run_dir / "config.yaml").read_text())
s1 = read_json(args.run_dir / "stage1" / "final" / "state.json")
s2 = read_json(args.run_dir / "stage2" / "final" / "state.json")
out = {"run_dir": str(args.run_dir)}

losses = np.asarray(s1["losses"], dtype=float)
out["stage1"] = {"steps": s1["steps"], "temperature": s1["temperature"],
                 "loss_window_means": [round(float(w.mean()), 3) for w in np.array_split(losses, args.windows)]}

rewards = np.asarray(s2["noise_free_rewards_this_call"], dtype=float)
k = 1 + int(cfg["stage2"]["n_random"])  # the positive among k candidates; reward 1 / (1 + log2(rank + 2))
chance = float(np.mean(1.0 / (1.0 + np.log2(np.arange(k) + 2.0))))
out["stage2"] = {"steps": s2["steps"], "candidates": k, "chance_reward": round(chance, 3),
                 "noise_free_reward_thirds": [round(float(w.mean()), 3) for w in np.array_split(rewards, 3)]}
if len(rewards) != s2["steps"]:
    out["stage2"]["note"] = f"rewards cover the last call only ({len(rewards)} of {s2['steps']} steps)"


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
