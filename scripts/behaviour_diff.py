"""Compare two folders written by scripts/behaviour_check.sh: every run's metrics.json (valid and test, every
figure) must be equal to the last digit, and both ReaEmb tables byte-identical. Prints one line per run.
``python scripts/behaviour_diff.py BEFORE AFTER``; exit code 1 on any difference."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def runs(folder: Path) -> dict[str, Path]:
    """``{"<study>/<model>-<dataset>": metrics.json}``; run folder names start with a timestamp."""
    out = {}
    for m in sorted(folder.glob("*/*/metrics.json")):
        study, run = m.parts[-3], m.parts[-2]
        out[f"{study}/{run.split('-', 2)[-1]}"] = m
    return out


def main(before: str, after: str) -> int:
    a, b = runs(Path(before)), runs(Path(after))
    bad = 0
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            print(f"{key}: only in {'before' if key in a else 'after'}")
            bad += 1
            continue
        ma, mb = (json.loads(p.read_text()) for p in (a[key], b[key]))
        ma, mb = ({k: m[k] for k in ("valid", "test") if k in m} for m in (ma, mb))
        same = ma == mb
        digest = hashlib.sha256(json.dumps(mb, sort_keys=True).encode()).hexdigest()[:12]
        test = mb.get("test", {})
        head = test.get("overall", test.get("all", {}))
        shown = {k: round(v, 4) for k, v in head.items() if k in ("ndcg@10", "hr@10", "auc", "uauc")}
        print(f"{key}: {'identical' if same else 'DIFFERENT'} (sha256 {digest}) test {shown}")
        bad += not same
    ta, tb = (Path(f) / "reaemb_downstream.md" for f in (before, after))
    same = ta.read_bytes() == tb.read_bytes()
    print(f"reaemb_downstream.md: {'identical' if same else 'DIFFERENT'} ({len(tb.read_bytes())} bytes)")
    return 1 if bad or not same else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
