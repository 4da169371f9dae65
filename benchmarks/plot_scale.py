"""Log-log plot of the issue-31 cost study (benchmarks/bench_scale.py's JSON): time and peak memory of data prepare
and one SASRec epoch against interactions, and of the 10,000-user full-ranking evaluation against items.

Filled markers: measured; hollow markers: extrapolated from a capped stage (the JSON says from how many steps or
users); a capped stage without an estimate is drawn at its lower bound with an upward triangle. The figure's footer
names the JSON it was drawn from.

Usage: python benchmarks/plot_scale.py [JSON] [--png docs/img/scale_loglog.png]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "scale" / "scale_cpu.json"
DEFAULT_PNG = HERE.parent / "docs" / "img" / "scale_loglog.png"
SERIES = (("prepare", "data prepare", "interactions", "tab:blue"), ("epoch", "SASRec epoch (sampled_ce)",
          "interactions", "tab:orange"), ("eval", "eval of {users:,} users (full ranking)", "items", "tab:green"))
EVAL_LIMIT_MB = 4096


def points(results: dict, stage: str, axis: str) -> list[dict]:
    """One dict per shape that has ``stage``: x (interactions or items), seconds, peak MB and its kind."""
    out = []
    for name, rec in results.get("shapes", {}).items():
        r = rec.get(stage)
        if not r or r.get("status") == "failed":
            continue
        seconds = r.get("seconds") if r.get("seconds") is not None else r.get("at_least_seconds")
        kind = {"done": "measured", "extrapolated": "extrapolated", "capped": "lower bound"}.get(r["status"], "?")
        asked = results.get("settings", {}).get("eval_users")
        if stage == "eval" and asked and r.get("users", asked) < asked:  # a small shape has fewer test users
            kind = f"{kind}, {r['users']:,} users"
        out.append({"shape": name, "x": rec["shape"][axis], "seconds": seconds, "mb": r.get("peak_rss_mb"),
                    "kind": kind})
    return sorted(out, key=lambda p: p["x"])


def plot(json_path: Path, png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads(Path(json_path).read_text())
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    marker = {"measured": ("o", True), "extrapolated": ("o", False), "lower bound": ("^", True)}
    for stage, label, axis, color in SERIES:
        pts = points(results, stage, axis)
        col = 1 if axis == "items" else 0
        for row, key, unit in ((0, "seconds", "seconds"), (1, "mb", "peak RSS (MB)")):
            ax = axes[row][col]
            xs = [p["x"] for p in pts if p[key]]
            ys = [p[key] for p in pts if p[key]]
            if xs:
                ax.plot(xs, ys, "-", color=color, alpha=0.6,
                        label=label.format(users=results.get("settings", {}).get("eval_users") or 0))
            for p in pts:
                if not p[key]:
                    continue
                m, filled = marker[p["kind"].split(",")[0]]
                ax.plot(p["x"], p[key], m, color=color, markerfacecolor=color if filled else "white", markersize=8)
                if p["kind"] != "measured":
                    ax.annotate(p["kind"], (p["x"], p[key]), textcoords="offset points", xytext=(6, -10),
                                fontsize=7, color=color)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(axis)
            ax.set_ylabel(unit)
            ax.grid(True, which="both", alpha=0.3)
    axes[1][1].axhline(EVAL_LIMIT_MB, color="red", linestyle="--", linewidth=1, label="4 GB (issue 31's bound)")
    for ax in axes.flat:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    m = results.get("machine", {})
    s = results.get("settings", {})
    fig.suptitle(f"Cost vs data size, one process, {m.get('cpu_model', '?')} ({m.get('cpu_count', '?')} cores, "
                 f"{m.get('threads', '?')} threads), torch {m.get('torch', '?')}", fontsize=10)
    loads = [r["load_average_1min_before"] for rec in results.get("shapes", {}).values() for r in rec.values()
             if isinstance(r, dict) and r.get("load_average_1min_before") is not None]
    busy = f"; 1-min load average before the stages {min(loads):.1f}-{max(loads):.1f}" if loads else ""
    fig.text(0.01, 0.005, f"from {json_path}{busy}; SASRec batch {s.get('batch_size')}, max_len {s.get('max_len')}, "
             f"{s.get('neg_samples')} shared negatives; hollow = extrapolated from a capped stage; import floor "
             f"{m.get('import_floor_rss_mb')} MB", fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f"{png.stem}.tmp-{os.getpid()}{png.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png)
    return png


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", nargs="?", default=str(DEFAULT_JSON))
    ap.add_argument("--png", default=str(DEFAULT_PNG))
    a = ap.parse_args(argv)
    print(f"read {a.json}; wrote {plot(Path(a.json), Path(a.png))}")


if __name__ == "__main__":
    main()
