#!/usr/bin/env bash
# Time and peak memory of ReaEmb's two training stages per offline LM on this machine: a few steps of each stage
# on Beauty's real item text (stage 1: batch 16 pairs; stage 2: 64 anchors), copied to
# benchmarks/results/reaemb_stages_<device>_<LM>.json. Run it on an otherwise idle machine.
# Table generation (pass 1 + the thought position on pass 1's KV cache) is timed by `semcollab reaemb bench-kv`.
#   THREADS=2 DEVICE_TAG=cpu benchmarks/run_reaemb_stages.sh
set -euo pipefail
LMS=${LMS:-"smollm2-135m gemma3-270m qwen2.5-coder-0.5b"}
THREADS=${THREADS:-2}
TAG=${DEVICE_TAG:-cpu}
OUT=${OUT:-runs/reaemb-bench}
export OMP_NUM_THREADS=$THREADS
for lm in $LMS; do
  rm -rf "$OUT/$lm"  # a timing, not a resumable result: start clean
  semcollab reaemb train --dataset s3rec:Beauty --lm "$lm" --out "$OUT/$lm" \
    --stage1.max_steps=4 --stage1.batch_size=16 --stage2.max_steps=2 --stage2.max_anchors=64
  python - "$OUT/$lm/timing.json" "benchmarks/results/reaemb_stages_${TAG}_${lm}.json" "$THREADS" <<'PY'
import json, platform, sys
t = json.load(open(sys.argv[1]))
t["threads"] = int(sys.argv[3]); t["machine"] = platform.processor() or platform.machine()
json.dump(t, open(sys.argv[2], "w"), indent=1)
print(sys.argv[2], {s: (t[s]["seconds"], t[s]["steps"], t[s]["peak_rss_mb"]) for s in ("stage1", "stage2")})
PY
done
