#!/usr/bin/env bash
# The prepared GPU checks, one per issue, for a session lent a CUDA device (one call of the device tool):
#   bash experiments/gpu/run.sh 31   # DDP SASRec epoch on the 30M synthetic set + gemma3-270m bf16 embeddings of Beauty
#   bash experiments/gpu/run.sh 32   # the CoLLM ML-1M CTR models in bf16 on all rows, under a 10-minute cap
#   bash experiments/gpu/run.sh 33   # RecTools UniSRec on the S3-Rec sets, 3 seeds (first, here:
#                                    # python experiments/gpu/prepare_issue33.py; carry .gpu33)
#   PART=rows bash experiments/gpu/run.sh 33   # semcollab's own runs from the same tables: the hybrid's ablations
# 31 and 32 write one JSON under $OUT (default runs/gpu), 33 run folders and logs under $OUT/gpu_issue33; each exits
# 2 with "no GPU: not run" on a machine without CUDA.
set -euo pipefail
here=$(dirname "$0")
OUT=${OUT:-runs/gpu}
case "${1:-}" in
  31) python "$here/gpu_issue31.py" --out "$OUT/gpu_issue31.json" "${@:2}" ;;
  32) python "$here/gpu_issue32.py" --out "$OUT/gpu_issue32" "${@:2}" ;;
  33) OUT=$OUT bash "$here/gpu_issue33.sh" ;;
  *) echo "usage: bash experiments/gpu/run.sh 31|32|33 [options of the issue's script]" >&2; exit 2 ;;
esac
