"""Copy the small result files of finished runs (metrics.json, run.json, sampled-*.json) from a runs folder into
a folder that is committed, keeping their relative paths, so a table can be rebuilt after runs/ is gone (runs/
is git-ignored and does not outlive the machine it was made on; checkpoints and tables stay behind).

Usage: python scripts/archive_runs.py SRC DST     e.g. runs/reaemb-s3rec benchmarks/runs/reaemb-s3rec
A run counts once it has metrics.json. A file already in DST with different content is refused, never
overwritten (name the run to remove by hand if it was replaced on purpose)."""

import filecmp
import shutil
import sys
from pathlib import Path

KEEP = ("metrics.json", "run.json", "sampled-*.json")


def archive(src: Path, dst: Path) -> tuple[int, int]:
    """Returns (files copied, files already there and identical)."""
    copied = same = 0
    conflicts = []
    for metrics in sorted(src.rglob("metrics.json")):
        run = metrics.parent
        for pattern in KEEP:
            for f in sorted(run.glob(pattern)):
                target = dst / f.relative_to(src)
                if target.exists():
                    if filecmp.cmp(f, target, shallow=False):
                        same += 1
                    else:
                        conflicts.append(target)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)
                copied += 1
    if conflicts:
        raise SystemExit("these archived files differ from the runs folder and were left as they are:\n  "
                         + "\n  ".join(map(str, conflicts)))
    return copied, same


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    if not src.is_dir():
        raise SystemExit(f"{src}: no such folder")
    n, s = archive(src, dst)
    print(f"{n} file(s) copied into {dst}, {s} already there")
