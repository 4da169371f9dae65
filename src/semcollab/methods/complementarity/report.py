"""Plots for the complementarity report (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_report(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g, v in report["groups"].items() if v.get("n_users")]
    a, b = report["models"]["a"], report["models"]["b"]
    has_probes = "probes" in report
    fig, axes = plt.subplots(1, 3 if has_probes else 2, figsize=(17 if has_probes else 11, 4.5))
    x = np.arange(len(groups))
    ax = axes[0]
    series = [(f"{a}", "hr_a"), (f"{b}", "hr_b"), ("weighted fusion", None), ("RRF", None), ("oracle", "oracle_hr")]
    w = 0.16
    for i, (label, key) in enumerate(series):
        if key:
            vals = [report["groups"][g][key] for g in groups]
        elif label == "RRF":
            vals = [report["groups"][g]["fusion_rrf"]["hr"] for g in groups]
        else:
            vals = [report["groups"][g]["fusion_weighted"]["hr"] for g in groups]
        ax.bar(x + (i - 2) * w, vals, w, label=label)
    ax.set_xticks(x, groups, rotation=20)
    ax.set_title(f"HR@{report['k']}: single views, fusions, oracle")
    ax.legend(fontsize=8)
    ax = axes[1]
    bottom = np.zeros(len(groups))
    for key, label in (("both_hit", "both hit"), ("only_a", f"only {a}"), ("only_b", f"only {b}"), ("neither", "neither")):
        vals = np.array([report["groups"][g][key] for g in groups])
        ax.bar(x, vals, 0.6, bottom=bottom, label=label)
        bottom += vals
    for i, g in enumerate(groups):
        ax.text(i, 1.01, f"J={report['groups'][g]['jaccard']:.2f}", ha="center", fontsize=8)
    ax.set_xticks(x, groups, rotation=20)
    ax.set_ylim(0, 1.1)
    ax.set_title(f"hit agreement (J = top-{report['k']} Jaccard)")
    ax.legend(fontsize=8, loc="lower right")
    if has_probes:
        ax = axes[2]
        splits = list(report["probes"]["splits"])
        probes = [p for p in ("linear", "lowrank", "mlp") if p in report["probes"]["splits"][splits[0]]]
        xs = np.arange(len(splits))
        for p in probes:
            ax.plot(xs, [report["probes"]["splits"][s][p]["r2"] for s in splits], marker="o", label=f"{p} R²")
            ax.plot(xs, [report["probes"]["splits"][s][p]["knn_overlap"] for s in splits], marker="x", ls="--",
                    label=f"{p} kNN overlap")
        ax.set_xticks(xs, splits)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title("alignment probes: text → ID vectors")
        ax.legend(fontsize=7)
    fig.suptitle(f"{report['dataset']}: {a} vs {b}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
