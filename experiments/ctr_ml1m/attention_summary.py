"""Markdown summary of `semcollab ctr attention` reports: the answer position's mean attention mass on each kind
of collaborative token over the shallow (first 30%), middle and deep (last 20%) layers, all rows, with the
uniform-attention reference; for steered runs also the same weights with the bias removed.

Usage: python experiments/ctr_ml1m/attention_summary.py docs/diagnostics/attention/*/attention.json > table.md"""

import json
import sys
from pathlib import Path


def bands(values: list[float], shallow: float = 0.3, deep: float = 0.2) -> tuple[float, float, float, int]:
    n = len(values)
    s, d = round(shallow * n), round(deep * n)
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    peak = max(range(n), key=lambda i: values[i])
    return mean(values[:s]), mean(values[s:n - d]), mean(values[n - d:]), peak


print("| run | token | uniform | shallow | middle | deep | peak layer (mass) | bias removed: shallow / middle / deep |")
print("|---|---|---|---|---|---|---|---|")
for path in sys.argv[1:]:
    r = json.loads(Path(path).read_text())
    g = r["groups"]["all"]
    for k in r["kinds"]:
        a = g["answer"][k]
        s, m, d, peak = bands(a)
        off = ""
        if "unsteered" in r:
            so, mo, do, _ = bands(r["unsteered"]["groups"]["all"]["answer"][k])
            off = f"{so:.4f} / {mo:.4f} / {do:.4f}"
        print(f"| {Path(path).parent.name} | {k} | {g['uniform'][k]:.4f} | {s:.4f} | {m:.4f} | {d:.4f} | "
              f"{peak} ({a[peak]:.3f}) | {off} |")
