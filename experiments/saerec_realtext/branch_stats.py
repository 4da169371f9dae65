"""How trained SAERec runs use their intent branches: one Markdown row per run folder (stdout).

Usage: python experiments/saerec_realtext/branch_stats.py RUN_DIR [RUN_DIR ...] [--stage test] [--max-users 2000]
       [--batch-size 256] [--seed 0] [--json OUT.json]

Columns (last position of each evaluated user's history; see semcollab.methods.saerec.branch_stats):
w_per / w_pub = mean fusion weight (gate or attention) of the personal / public branch; |int|/|seq| = mean
||g_per h_per + g_pub h_pub|| / ||h_seq||; int share = mean |intent term| / (|seq term| + |intent term|) over
the fused top-10; top10 chg = users whose top-10 set changes without the intents; ovl@10 = mean overlap of the
two top-10 lists; HR/NDCG fused vs seq = the model's score vs its h_seq-only score; H_per = normalised
personal attention entropy; cov = personal intents used / candidate latents; top10 mass = share of personal
attention on the 10 most-used intents; alive = latents firing on some item. --json writes every statistic."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from semcollab.report.table import run_label
from semcollab.tasks import ranking_eval

COLUMNS = [  # (header, key, format)
    ("users", "users", "d"), ("w_per", "weight_personal_mean", ".3f"), ("w_pub", "weight_public_mean", ".3f"),
    ("\\|int\\|/\\|seq\\|", "ratio_intent_mean", ".3f"), ("int share", "share_intent_top10", ".3f"),
    ("top10 chg", "top10_changed_frac", ".3f"), ("ovl@10", "overlap@10_mean", ".3f"),
    ("HR@10 fused", "hr@10_fused", ".4f"), ("HR@10 seq", "hr@10_seq_only", ".4f"),
    ("NDCG@10 fused", "ndcg@10_fused", ".4f"), ("NDCG@10 seq", "ndcg@10_seq_only", ".4f"),
    ("H_per", "entropy_personal_norm_mean", ".3f"), ("H_pub", "entropy_public_norm_mean", ".3f"),
    ("cov", "coverage_personal_frac", ".3f"), ("top10 mass", "top10_intent_mass_share", ".3f"),
    ("alive", "alive_frac", ".3f"),
]


def label(run_dir: Path) -> str:
    cfg = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"))
    return run_label(cfg)


def cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| run | variant | " + " | ".join(h for h, _, _ in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for name, s in rows:
        variant = f"{s['retrieval']}/{s['public']}/{s['fusion']}/{s['intent_source']}"
        lines.append(f"| {name} | {variant} | " + " | ".join(cell(s.get(k), f) for _, k, f in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    ap.add_argument("--stage", default="test", choices=["valid", "test"])
    ap.add_argument("--max-users", type=int, default=2000, help="users sampled per run (0: all)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write every statistic of every run here")
    args = ap.parse_args(argv)
    rows, failed = [], 0
    for run in args.runs:
        try:
            stats = ranking_eval.branch_stats_for_run(run, stage=args.stage, max_users=args.max_users or None,
                                                      batch_size=args.batch_size, seed=args.seed)
        except Exception as exc:  # noqa: BLE001 - report the run and go on with the others
            print(f"{run}: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
            continue
        rows.append((label(run), stats))
    if rows:
        print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({str(s["run_dir"]): {"label": n, **s} for n, s in rows}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
