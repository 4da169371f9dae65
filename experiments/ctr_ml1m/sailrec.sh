#!/usr/bin/env bash
# SAILRec rows of the CoLLM ML-1M CTR table, on the budget of experiments/ctr_ml1m/lm.sh (same LM, same training /
# valid / test subsets, same prompt history length, same step-1 LoRA from the cache), with its ablations,
# steering schedules and a sweep of the bias magnitude; then the attention diagnostic of the CoLLM and
# SeLLa-Rec runs of lm.sh and of the SAILRec runs.
#   OUT=runs/ctr/lm LM=gemma3-270m experiments/ctr_ml1m/sailrec.sh
# Rerunning into the same OUT skips finished runs; an unfinished one (time cap) continues from its checkpoint.
# Env: MAGNITUDES (default "0.5 2 4", beside the default 1), ROWS (attention diagnostic rows, default 256),
# ONLY="name ..." (run just those runs, then stop: no table, no diagnostic; e.g. ONLY="sailrec sailrec-lora-lr-1e-4").
set -euo pipefail
OUT=${OUT:-runs/ctr/lm}
LM=${LM:-gemma3-270m}
ROWS=${ROWS:-256}
BUDGET=(--data.history_len="${HIST:-5}" --data.max_train_rows="${TRAIN_ROWS:-1536}"
        --data.max_valid_rows="${VALID_ROWS:-256}" --data.max_test_rows="${TEST_ROWS:-1024}"
        --model_params.soft_max_rows="${SOFT_ROWS:-768}"
        --model_params.lm="$LM" --train.progress=false)
run() {  # run NAME [overrides...]
  local name=$1; shift
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  if ls "$OUT/$name"/*/metrics.json >/dev/null 2>&1; then echo "skip $name (finished)"; return; fi
  echo "== $name"
  semcollab ctr train --model sailrec "${BUDGET[@]}" --output_dir="$OUT/$name" "$@"
}
run sailrec                                                   # suppress-neutral-enhance, magnitude 1
run sailrec-no-steering --model_params.steering=neutral       # = the "neutral everywhere" schedule
run sailrec-no-user-align --model_params.user_align=false
run sailrec-no-item-align --model_params.item_align=false
run sailrec-enhance --model_params.steering=enhance
run sailrec-suppress --model_params.steering=suppress
for m in ${MAGNITUDES:-0.5 2 4}; do run "sailrec-magnitude-$m" --model_params.steer_magnitude="$m"; done
run sailrec-lora-lr-1e-4 --model_params.lora_lr=1e-4        # joint-stage LoRA 10x slower than the mappers (soft_lr)
[ -n "${ONLY:-}" ] && exit 0
semcollab ctr table "$OUT"/*/* --out "${TABLE:-docs/tables/ctr_lm.md}"
mkdir -p docs/diagnostics/attention
for name in collm sellarec sailrec sailrec-no-steering sailrec-no-user-align sailrec-no-item-align sailrec-enhance; do
  run_dir=$(ls -d "$OUT/$name"/*/ 2>/dev/null | head -n 1 || true)
  [ -n "$run_dir" ] || continue
  [ -f "docs/diagnostics/attention/$name/attention.json" ] && continue
  semcollab ctr attention "$run_dir" --rows "$ROWS" --out "docs/diagnostics/attention/$name"
done
