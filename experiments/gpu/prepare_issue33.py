"""Fill ``.gpu33/`` here (on the CPU machine) with what ``bash experiments/gpu/run.sh 33`` needs on a device
machine, which has neither ``../shared`` nor the MiniLM package nor RecTools, and receives only the repository
plus the folders a call carries (64 MiB in all):

    .gpu33/shared/data/s3rec/<DS>.txt      the interaction files (the leave-one-out split needs only these)
    .gpu33/tables/<DS>-minilm.npy + .json  semcollab's MiniLM item vectors (the cache every semantic row reads),
                                           float16 by default: half the bytes, rounding <= 2^-11 relative; the
                                           .json records the item-id hash the loader checks, and the dtype
    .gpu33/whl/                            the rectools 0.19.0 and pytorch-lightning 2.5.2 wheels (RecTools pins
                                           pytorch-lightning <= 2.5.2; the device image has 2.6.6)

    python experiments/gpu/prepare_issue33.py [--datasets Beauty Toys_and_Games Sports_and_Outdoors] [--dtype float16]

then, in the device call, ``carry: [".gpu33"]``. Beauty, Toys and Sports fit one call (~37 MB beside the ~18 MB
tracked tree); Yelp goes in a second one (``--datasets Yelp``). The script refuses (exit 1, naming the sizes) when
the folder and the tracked files would pass the limit. ``.gpu33/`` is in .gitignore."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CARRY_LIMIT = 64 * 2**20  # the device call's limit on everything that travels
WHEELS = ("rectools==0.19.0", "pytorch-lightning==2.5.2")
PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux2014_x86_64"]


def tracked_bytes() -> int:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / n.decode()).stat().st_size for n in names if n and (REPO / n.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def write_table(dataset: str, out: Path, dtype: str) -> Path:
    """The MiniLM vectors of ``s3rec:<dataset>`` as every semantic row reads them (cache; encoded when missing)."""
    from semcollab.config import DataConfig
    from semcollab.data import load_split
    from semcollab.models.alphafuse import SemanticItemSettings, semantic_item_vectors
    from semcollab.models.text_table import item_ids_sha256

    split = load_split(DataConfig(name=f"s3rec:{dataset}"), log=None)
    vectors = semantic_item_vectors(split, SemanticItemSettings(encoder="minilm"))
    table = vectors.astype(dtype)
    if not np.isfinite(table).all():
        raise SystemExit(f"{dataset}: the MiniLM vectors do not fit {dtype} (non-finite values after the cast)")
    path = out / f"{dataset}-minilm.npy"
    np.save(path, table)
    meta = {"item_ids_sha256": item_ids_sha256(split.item_vocab.ids), "encoder": "minilm", "dtype": dtype,
            "shape": list(table.shape), "float32_sha256": hashlib.sha256(vectors.tobytes()).hexdigest(),
            "max_abs_rounding": float(np.abs(table.astype(np.float32) - vectors).max())}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["Beauty", "Toys_and_Games", "Sports_and_Outdoors"])
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    ap.add_argument("--out", default=str(REPO / ".gpu33"))
    a = ap.parse_args(argv)
    from semcollab.data.sources.files import shared_file

    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)  # a folder of this script only: rebuilt whole, so no earlier dataset rides along unseen
    (out / "shared" / "data" / "s3rec").mkdir(parents=True)
    (out / "tables").mkdir()
    for ds in a.datasets:
        shutil.copy2(shared_file(f"data/s3rec/{ds}.txt"), out / "shared" / "data" / "s3rec" / f"{ds}.txt")
        print(f"{ds}: {write_table(ds, out / 'tables', a.dtype)}")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", *PLATFORM,
                    "-d", str(out / "whl"), *WHEELS], check=True)
    total, tracked = folder_bytes(out), tracked_bytes()
    print(f"{out}: {total / 2**20:.1f} MiB; tracked files {tracked / 2**20:.1f} MiB; limit {CARRY_LIMIT / 2**20:.0f} MiB")
    if total + tracked > CARRY_LIMIT:
        print(f"too large to carry: {(total + tracked) / 2**20:.1f} MiB > 64 MiB; prepare fewer --datasets per call",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
