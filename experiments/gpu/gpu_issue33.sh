#!/usr/bin/env bash
# Issue 33's GPU-only row: RecTools' UniSRec (experiments/peers/rectools_unisrec.py, RecTools' own model and fit) on
# the S3-Rec sets prepared in .gpu33/ (python experiments/gpu/prepare_issue33.py, here; carry .gpu33), SEEDS seeds,
# all runs at once on the one GPU. The protocol of every other row of the table: window 50 (the history length of
# configs/s3rec_converge.yaml), the epoch picked on validation NDCG@10 (every epoch, patience 20, up to 200 epochs),
# full ranking, history masked, semcollab's evaluator. RecTools' other defaults (full softmax, lr 1e-4, batch 128,
# n_factors 256) unless EXTRA says otherwise. MINUTES caps each run's training (stopped_by "time" in its run.json:
# not converged); every run then writes its run folder under $OUT/gpu_issue33/<DS>/.
#   bash experiments/gpu/run.sh 33                 # exits 2 "no GPU: not run" without CUDA
#   MINUTES=7 SEEDS="1 2 3" EXTRA="--batch-size 256" bash experiments/gpu/run.sh 33
# PART=rows: semcollab's own runs instead (experiments/hybrid_s3rec/run.sh, JOBS at once on the one GPU, the MiniLM
# vectors from the same tables: ITEM_TABLES), by default the component ablations of hybrid-ns-128 on Beauty and
# Toys and the full model beside them (the GPU reference for the CPU seeds), ROWS_SEEDS (default 1), each run capped at MINUTES of
# training (stopped_by "time" in run.json: not converged); run folders and the tables under $OUT/gpu_issue33/rows/.
#   PART=rows bash experiments/gpu/run.sh 33
#   PART=rows ROWS_DATASETS=Sports_and_Outdoors ROWS_STAGES=main ROWS_MODELS="hybrid-ns-128 alphafuse" ROWS_SEEDS=3 bash experiments/gpu/run.sh 33
set -euo pipefail
PY=${PY:-python3}
G=${G:-.gpu33}
OUT=${OUT:-runs/gpu}/gpu_issue33
PART=${PART:-unisrec}
case "$PART" in unisrec|rows) ;; *) echo "PART must be unisrec or rows, got '$PART'" >&2; exit 2 ;; esac
MINUTES=${MINUTES:-7}
SEEDS=${SEEDS:-"1 2 3"}
EXTRA=${EXTRA:-}
# GPU33_ALLOW_CPU=1: the plumbing on a CPU (a check of this script on tiny files, not a measurement)
[ "${GPU33_ALLOW_CPU:-0}" = 1 ] || "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 2)' \
  || { echo "no GPU: not run (experiments/gpu/gpu_issue33.sh needs one CUDA device)" >&2; exit 2; }
tables=$(find "$G/tables" -name '*-minilm.npy' 2>/dev/null | sort || true)
[ -n "$tables" ] || { echo "no item tables in $G/tables: run python experiments/gpu/prepare_issue33.py on the CPU machine and carry $G" >&2; exit 2; }
G=$(cd "$G" && pwd)  # absolute: SEMCOLLAB_SHARED must not fall back to another shared/ folder
export SEMCOLLAB_SHARED=$G/shared SEMCOLLAB_CACHE=/tmp/semcollab-cache-33
if [ "$PART" = rows ]; then dest=$OUT/rows; else dest=$OUT; fi
mkdir -p "$dest"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$dest/gpu.txt" 2>/dev/null || true
if [ "$PART" = rows ]; then
  # semcollab's own dependencies are on the device image (KINDS.md); RecTools' wheels are not needed here
  export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
  timeout $(( MINUTES * 60 + 240 )) env ITEM_TABLES="$G/tables" SEMCOLLAB="$PY -m semcollab" PY="$PY" \
    OUT="$dest" TABLE="$dest/table.md" JOBS="${JOBS:-14}" SEEDS="${ROWS_SEEDS:-1}" \
    DATASETS="${ROWS_DATASETS:-Beauty Toys_and_Games}" ABLATE_DATASETS="${ROWS_DATASETS:-Beauty Toys_and_Games}" \
    STAGES="${ROWS_STAGES:-main ablate}" MODELS="${ROWS_MODELS:-hybrid-ns-128}" ABLATE_VIEW=null_space \
    EXTRA="--train.max_minutes=$MINUTES $EXTRA" bash experiments/hybrid_s3rec/run.sh
  exit
fi
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site33 "$G"/whl/*.whl
export PYTHONPATH=$PWD/src:/tmp/site33${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT/logs"
pids=()
for table in $tables; do
  ds=$(basename "$table" -minilm.npy)
  for seed in $SEEDS; do
    # shellcheck disable=SC2086
    timeout $(( MINUTES * 60 + 150 )) "$PY" experiments/peers/rectools_unisrec.py --dataset "s3rec:$ds" --seed "$seed" \
      --item-table "$table" --max-len 50 --epochs 200 --valid-every 1 --patience 20 --max-minutes "$MINUTES" \
      --out "$OUT/$ds" $EXTRA > "$OUT/logs/$ds-seed$seed.log" 2>&1 &
    pids+=($!)
  done
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
grep -h "test NDCG@10" "$OUT"/logs/*.log || true
echo "$failed of ${#pids[@]} runs failed (logs in $OUT/logs); run folders in $OUT/<dataset>/"
[ "$failed" -eq 0 ]
