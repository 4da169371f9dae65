"""Welch's t-test between two groups of seeded runs on test NDCG@10 (overall, head and tail items).

Usage: python scripts/seed_ttest.py GROUP_A GROUP_B [GROUP_A GROUP_B ...] [--metric ndcg@10]
Each group folder holds runs of one setting (as for scripts/seed_table.py); one Markdown row per pair and part.
With three seeds a side the test has few degrees of freedom: read p as a guide, not a verdict."""

import argparse
import json

import numpy as np
from scipy import stats

from semcollab.report.table import seeded_runs


def values(group: str, part: str, metric: str) -> np.ndarray:
    runs = seeded_runs(group)
    if len(runs) < 2:
        raise SystemExit(f"{group}: needs at least 2 finished runs for a t-test, found {len(runs)}")
    return np.array([json.loads((r / "metrics.json").read_text())["test"][part][metric] for r in runs])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("groups", nargs="+")
    ap.add_argument("--metric", default="ndcg@10")
    a = ap.parse_args()
    if len(a.groups) % 2:
        raise SystemExit("give the groups in pairs: A B [A B ...]")
    print(f"| A | B | part | {a.metric} A | {a.metric} B | diff | t | p |")
    print("|---|---|---|---|---|---|---|---|")
    for ga, gb in zip(a.groups[::2], a.groups[1::2]):
        for part in ("overall", "head", "tail"):
            x, y = values(ga, part, a.metric), values(gb, part, a.metric)
            t = stats.ttest_ind(x, y, equal_var=False)
            print(f"| {ga} | {gb} | {part} | {x.mean():.4f} (n={len(x)}) | {y.mean():.4f} (n={len(y)}) | "
                  f"{x.mean() - y.mean():+.4f} | {t.statistic:.2f} | {t.pvalue:.3f} |")


if __name__ == "__main__":
    main()
