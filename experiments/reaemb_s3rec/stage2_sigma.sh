#!/usr/bin/env bash
# Stage-2 ablation: rerun ReaEmb's stage 2 with a larger rollout noise on top of the study's finished stage 1,
# then the stage-2 table, SASRec on it and the stage summary. Why: at the paper's sigma (0.1, relative to the
# thought vector's RMS) no noisy rollout changed the rank reward (results 15), so stage 2 had no signal.
#   DATASET=Beauty SIGMA=10 SEEDS=1 experiments/reaemb_s3rec/stage2_sigma.sh
# The stage-1 folder and the plain / stage-1 tables are copied from runs/reaemb-s3rec/$DATASET-$LM (they do not
# depend on stage 2), so only stage 2 and its table are computed; output in runs/reaemb-s3rec-sigma$SIGMA/.
# Every step is skipped when its output exists (run.sh's rule), so rerunning continues; DRY=1 prints the
# LM and recommender commands (the copies are made).
set -euo pipefail
DATASET=${DATASET:-Beauty}
SIGMA=${SIGMA:-10}
LM=${LM:-smollm2-135m}
SEEDS=${SEEDS:-1}
SRC=${SRC:-runs/reaemb-s3rec}
OUT=${OUT:-runs/reaemb-s3rec-sigma$SIGMA}
src="$SRC/$DATASET-$LM" dst="$OUT/$DATASET-$LM"
[ -f "$src/stage1/final/state.json" ] || { echo "no finished stage 1 in $src: run experiments/reaemb_s3rec/run.sh first" >&2; exit 2; }
mkdir -p "$dst/tables"
[ -d "$dst/stage1" ] || cp -r "$src/stage1" "$dst/stage1"
for t in plain stage1; do
  for ext in npy json; do [ -f "$dst/tables/$t.$ext" ] || cp "$src/tables/$t.$ext" "$dst/tables/$t.$ext"; done
done
# one call: the LM part (stage 2 and the tables, whatever EMBS says) and then SASRec on the stage-2 table
DATASETS=$DATASET LM=$LM S2_SIGMA=$SIGMA OUT=$OUT MODELS=sasrec EMBS=stage2 SEEDS=$SEEDS experiments/reaemb_s3rec/run.sh
summary=(python experiments/reaemb_s3rec/stage_summary.py "$dst" --json-out
         "benchmarks/results/reaemb_stage_summary_$DATASET-$LM-sigma$SIGMA.json")
if [ -n "${DRY:-}" ]; then echo "${summary[*]}"; elif [ ! -f "${summary[-1]}" ]; then "${summary[@]}"; fi
