#!/usr/bin/env bash
# SASRec epoch time on one machine: 1 process (1 and 2 threads) vs 2 processes under torchrun (gloo, 1 thread each).
# usage: bash benchmarks/bench_ddp_scaling.sh [DATASET] [OUT]   (default s3rec:Beauty, runs/ddp-scaling)
# Prints each run's per-epoch training seconds (run.json fit.history[].epoch_seconds) and the mean; evaluation is left to the end
# (eval_every larger than the epochs), so the epochs time training alone.
set -euo pipefail
DATASET=${1:-s3rec:Beauty}
OUT=${2:-runs/ddp-scaling}
A=(train --model sasrec --dataset "$DATASET" --train.epochs=3 --train.progress=false --train.eval_every=100)
OMP_NUM_THREADS=1 semcollab "${A[@]}" --output_dir="$OUT/p1-t1" > /dev/null
OMP_NUM_THREADS=2 semcollab "${A[@]}" --output_dir="$OUT/p1-t2" > /dev/null
OMP_NUM_THREADS=1 semcollab "${A[@]}" --nproc 2 --output_dir="$OUT/p2-t1" > /dev/null
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
for name in ("p1-t1", "p1-t2", "p2-t1"):
    (run,) = sorted((Path(sys.argv[1]) / name).glob("*/run.json"))[-1:]
    rec = json.loads(run.read_text())
    secs = [h["epoch_seconds"] for h in rec["fit"]["history"]]
    print(f"{name}: epoch seconds {[round(s, 2) for s in secs]}, mean {sum(secs) / len(secs):.2f}")
PY
