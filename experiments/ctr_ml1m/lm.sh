#!/usr/bin/env bash
# LM rows of the CoLLM ML-1M CTR table on a CPU budget: TALLRec, CoLLM, SeLLa-Rec and three SeLLa-Rec
# ablations, all on the same LM, the same training/valid/test subsets and the same prompt history length.
#   OUT=runs/ctr/lm LM=gemma3-270m experiments/ctr_ml1m/lm.sh
# Rerunning into the same OUT skips finished runs; an unfinished one (time cap) continues from its checkpoint
# (step 1, LoRA on the text prompt, is trained once and shared by every model through the cache).
set -euo pipefail
OUT=${OUT:-runs/ctr/lm}
LM=${LM:-gemma3-270m}
BUDGET=(--data.history_len="${HIST:-5}" --data.max_train_rows="${TRAIN_ROWS:-1536}"
        --data.max_valid_rows="${VALID_ROWS:-256}" --data.max_test_rows="${TEST_ROWS:-1024}"
        --model_params.soft_max_rows="${SOFT_ROWS:-768}"
        --model_params.lm="$LM" --train.progress=false)
run() {  # run NAME MODEL [overrides...]
  local name=$1 model=$2; shift 2
  if ls "$OUT/$name"/*/metrics.json >/dev/null 2>&1; then echo "skip $name (finished)"; return; fi
  echo "== $name"
  semcollab ctr train --model "$model" "${BUDGET[@]}" --output_dir="$OUT/$name" "$@"
}
run tallrec tallrec
run collm collm
# SeLLa-Rec as in the paper (step 3 also trains the MF tables; random start of the <Warm_ID> map) ...
run sellarec-train-mf sellarec
run sellarec-train-mf-no-warm sellarec --model_params.use_warm=false
# ... and with the budget settings (MF tables frozen in step 3, <Warm_ID> map starting as the identity;
# see the SeLLaRec docstring), with the three ablations of the method
SELLA=(--model_params.train_mf=false --model_params.warm_init=identity)
run sellarec sellarec "${SELLA[@]}"
run sellarec-no-warm sellarec "${SELLA[@]}" --model_params.use_warm=false
run sellarec-no-align sellarec "${SELLA[@]}" --model_params.align_weight=0
run sellarec-random-proj sellarec "${SELLA[@]}" --model_params.proj_init=random
semcollab ctr table "$OUT"/*/* --out "${TABLE:-docs/tables/ctr_lm.md}"
