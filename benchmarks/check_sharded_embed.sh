#!/usr/bin/env bash
# Sharded LM item embeddings on real data equal the one-process ones, row for row (issue 31):
#   bash benchmarks/check_sharded_embed.sh [DATASET] [ENCODER] [WORK]   (default ml-100k smollm2-135m /tmp/sharded_embed)
# Runs `semcollab embed` once in one process and once with --nproc 2, each with an empty embedding cache (the model
# folder of the usual cache is linked in, so nothing is converted or fetched again), then compares the two
# item_embeddings.npy files: max |difference|, rows equal, and the seconds of each call.
set -euo pipefail
DATASET=${1:-ml-100k}
ENCODER=${2:-smollm2-135m}
WORK=${3:-/tmp/sharded_embed}
MODELS=${SEMCOLLAB_CACHE:-$HOME/.cache/semcollab}/models
PREPARED=${SEMCOLLAB_CACHE:-$HOME/.cache/semcollab}/prepared
rm -rf "$WORK"
for mode in one two; do
  mkdir -p "$WORK/$mode/cache"
  ln -s "$MODELS" "$WORK/$mode/cache/models"
  [ -d "$PREPARED" ] && ln -s "$PREPARED" "$WORK/$mode/cache/prepared"
  extra=(); [ "$mode" = two ] && extra=(--nproc 2)
  start=$(date +%s.%N)
  SEMCOLLAB_CACHE="$WORK/$mode/cache" semcollab embed --dataset "$DATASET" --encoder "$ENCODER" \
    --out "$WORK/$mode/out" "${extra[@]}" > "$WORK/$mode/log.txt" 2>&1
  echo "$mode: $(python -c "import time; print(round(time.time() - $start, 1))") s" | tee "$WORK/$mode/seconds.txt"
done
python - "$WORK" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
w = Path(sys.argv[1])
a = np.load(next((w / "one/out").rglob("item_embeddings.npy")), allow_pickle=False)
b = np.load(next((w / "two/out").rglob("item_embeddings.npy")), allow_pickle=False)
res = {"shape": list(a.shape), "max_abs_difference": float(np.abs(a - b).max()),
       "rows_equal": int((a == b).all(1).sum()), "bit_equal": bool(np.array_equal(a, b))}
print(json.dumps(res))
(w / "compare.json").write_text(json.dumps(res, indent=2))
PY
