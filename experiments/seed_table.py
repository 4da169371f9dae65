"""Seeded-run tables (Markdown to stdout): mean ± std over seeds of each setting's test metrics, or Welch's t-test
between two groups of seeded runs. The one copy of both statistics: the study scripts and
experiments/reaemb_s3rec/downstream_table.py format and test with `mean_sd` and `welch` from here.

Usage: python experiments/seed_table.py GROUP [GROUP ...]
           each group folder holds runs of one setting; a group with one run is printed without std (ablations)
       python experiments/seed_table.py --welch GROUP_A GROUP_B [GROUP_A GROUP_B ...] [--metric ndcg@10]
           one row per pair and part (overall, head and tail items) on the test metric. With three seeds a side
           the test has few degrees of freedom: read p as a guide, not a verdict.
       --split valid: both on the validation split (the epoch each run kept), to set a ranking on validation
           beside the one on test.
       python experiments/seed_table.py --curve 50,100,200 GROUP [GROUP ...]
           validation NDCG@10 at those epochs (each run's training history, run.json), mean ± std per group: a
           setting that learns slower and one that ends lower look alike at an epoch cap; this tells them apart."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

from semcollab.report.table import run_label, seeded_runs

# a sample's summary for a Welch test: (mean, std with ddof=1 or nan for one value, n)
Summary = tuple[float, float, int]


def mean_sd_seconds(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v[0]:.1f}"


def mean_sd(values, digits: int = 4) -> str:
    """``mean ± std`` (sample std, ddof=1) to ``digits`` decimals; a single value alone."""
    v = np.asarray(values)
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else f"{v[0]:.{digits}f}"


def summary(values) -> Summary:
    v = np.asarray(values)
    return v.mean(), v.std(ddof=1) if len(v) > 1 else float("nan"), len(v)


def welch(a: Summary, b: Summary) -> tuple[float, float]:
    """Welch's unequal-variance t-test from two summaries: (t, two-sided p)."""
    r = stats.ttest_ind_from_stats(a[0], a[1], a[2], b[0], b[1], b[2], equal_var=False)
    return r.statistic, r.pvalue


SPLITS = ("test", "valid")


def _metrics(run: Path, split: str = "test") -> dict:
    path = run / "metrics.json"
    metrics = json.loads(path.read_text())
    if split not in metrics:
        raise SystemExit(f"{path}: no '{split}' split (it has: {', '.join(metrics) or 'nothing'})")
    return metrics[split]


def _mixed(records: list[dict]) -> str:
    """`` (mixed hardware)`` when a setting's runs name different devices in run.json: their seconds per epoch are
    then not one machine's (the same setting took 13-16 s/epoch on one 2-core x86_64 CPU, 15-18 on another)."""
    return " (mixed hardware)" if len({rec.get("hardware") for rec in records}) > 1 else ""


def seed_rows(groups: list[str], folder_names: bool = False, more: bool = False,
              split: str = "test") -> Iterator[str]:
    """The mean ± std table, line by line: one row per setting (run label) in each group, in the groups' order.
    ``folder_names``: a group's row is named by its folder (label in brackets when a group holds several settings);
    ``more``: short-history users' NDCG@10 and seconds per epoch too; ``split``: the metrics' split (the header
    names it when it is not test)."""
    pre = "" if split == "test" else f"{split} "
    extra = f" {pre}short-history NDCG@10 | s / epoch |" if more else ""
    yield (f"| setting | runs | {pre}HR@10 | {pre}NDCG@10 | {pre}head NDCG@10 | {pre}tail NDCG@10 |"
           + extra + " epochs (best) |")
    yield "|---|---|---|---|---|---|" + ("---|---|" if more else "") + "---|"
    for group in groups:
        by_setting: dict[str, list[Path]] = {}
        for r in seeded_runs(group):
            by_setting.setdefault(run_label(yaml.safe_load((r / "config.yaml").read_text())), []).append(r)
        for name, rs in by_setting.items():
            if folder_names:
                name = Path(group).name + (f" [{name}]" if len(by_setting) > 1 else "")
            m = [_metrics(r, split) for r in rs]
            records = [json.loads((r / "run.json").read_text()) for r in rs]
            fits = [rec["fit"] for rec in records]
            ep = ", ".join(f"{f['epochs_run']} ({f['best_epoch']})" for f in fits)
            cols = (f" {mean_sd([x['short_users']['ndcg@10'] for x in m])} | "
                    f"{mean_sd_seconds([f['seconds_per_epoch'] for f in fits])}{_mixed(records)} |") if more else ""
            yield (f"| {name} | {len(rs)} | {mean_sd([x['overall']['hr@10'] for x in m])} | "
                   f"{mean_sd([x['overall']['ndcg@10'] for x in m])} | {mean_sd([x['head']['ndcg@10'] for x in m])} | "
                   f"{mean_sd([x['tail']['ndcg@10'] for x in m])} |{cols} {ep} |")


def _group_metrics(group: str, split: str = "test") -> list[dict]:
    """Each run's metrics of ``split`` in a t-test group, read once for all its parts."""
    runs = seeded_runs(group)
    if len(runs) < 2:
        raise SystemExit(f"{group}: needs at least 2 finished runs for a t-test, found {len(runs)}")
    return [_metrics(r, split) for r in runs]


def welch_rows(groups: list[str], metric: str, split: str = "test") -> Iterator[str]:
    """The t-test table, line by line: groups in pairs A B [A B ...], one row per pair and part (on ``split``)."""
    if len(groups) % 2:
        raise SystemExit("give the groups in pairs: A B [A B ...]")
    name = metric if split == "test" else f"{split} {metric}"
    yield f"| A | B | part | {name} A | {name} B | diff | t | p |"
    yield "|---|---|---|---|---|---|---|---|"
    for ga, gb in zip(groups[::2], groups[1::2]):
        ma, mb = _group_metrics(ga, split), _group_metrics(gb, split)
        for part in ("overall", "head", "tail"):
            x, y = np.array([m[part][metric] for m in ma]), np.array([m[part][metric] for m in mb])
            t, p = welch(summary(x), summary(y))
            yield (f"| {ga} | {gb} | {part} | {x.mean():.4f} (n={len(x)}) | {y.mean():.4f} (n={len(y)}) | "
                   f"{x.mean() - y.mean():+.4f} | {t:.2f} | {p:.3f} |")


def curve_rows(groups: list[str], epochs: list[int]) -> Iterator[str]:
    """Validation NDCG@10 at each of ``epochs`` (from the runs' fit history), one row per group; a cell averages
    the runs that reached that epoch and says how many when some stopped earlier (early stopping)."""
    if not epochs or min(epochs) < 1:
        raise SystemExit(f"--curve takes epochs >= 1, got {epochs}")
    yield "| setting | runs | " + " | ".join(f"valid NDCG@10 at epoch {e}" for e in epochs) + " |"
    yield "|---|---|" + "---|" * len(epochs)
    for group in groups:
        runs = seeded_runs(group)
        histories = []
        for r in runs:
            fit = json.loads((r / "run.json").read_text()).get("fit") or {}
            if not fit.get("history"):
                raise SystemExit(f"{r / 'run.json'}: no training history (fit.history) to read a curve from")
            histories.append({h["epoch"]: h["valid_ndcg@10"] for h in fit["history"] if "valid_ndcg@10" in h})
        cells = []
        for e in epochs:
            values = [h[e] for h in histories if e in h]
            cell = mean_sd(values) if values else "-"
            cells.append(cell + (f" (n={len(values)})" if 0 < len(values) < len(histories) else ""))
        yield f"| {group} | {len(runs)} | " + " | ".join(cells) + " |"


def _epochs(text: str) -> list[int]:
    try:
        return [int(e) for e in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"epochs separated by commas, e.g. 50,100,200; got {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("groups", nargs="+", metavar="GROUP")
    ap.add_argument("--welch", action="store_true", help="Welch's t-test between groups given in pairs")
    ap.add_argument("--metric", default="ndcg@10", help="the --welch test's metric")
    ap.add_argument("--folder-names", action="store_true", help="name each row by its group folder")
    ap.add_argument("--more", action="store_true", help="add short-history users' NDCG@10 and seconds per epoch")
    ap.add_argument("--split", choices=SPLITS, default="test", help="the split both tables read (default test)")
    ap.add_argument("--curve", type=_epochs, metavar="E1,E2,...",
                    help="validation NDCG@10 at these epochs (training history), one row per group")
    a = ap.parse_args(argv)
    if a.curve and a.welch:
        ap.error("--curve and --welch are two different tables: give one")
    rows = (curve_rows(a.groups, a.curve) if a.curve else welch_rows(a.groups, a.metric, a.split) if a.welch
            else seed_rows(a.groups, a.folder_names, a.more, a.split))
    for line in rows:
        print(line)  # line by line: a group that fails leaves the rows before it, as the table is written


if __name__ == "__main__":
    main()
