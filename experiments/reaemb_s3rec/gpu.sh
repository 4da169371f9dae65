#!/usr/bin/env bash
# ReaEmb on one GPU, with the CPU study's settings (experiments/reaemb_s3rec/run.sh: bfloat16 LM, 150 stage-1 steps of 16
# pairs, 60 stage-2 steps of 4 anchors, configs/s3rec_converge*.yaml downstream):
#   1. timings, on the GPU alone: the per-stage benchmark (benchmarks/run_reaemb_stages.sh) and the KV-reuse
#      benchmark at batch 16 (the CPU rows' setting) and at batch 128 (a GPU-sized batch);
#   2. the LM part of each dataset in DATASETS (both stages, then the plain / stage-1 / stages-1+2 tables);
#   3. every downstream run of those datasets (train, then the uniform-100 and popularity-100 re-evaluations),
#      JOBS at a time on the one GPU: the recommenders are small, so one run alone leaves the GPU mostly idle.
# Outputs land where the CPU study puts them (RUNS, benchmarks/results/*_cuda_*), so the same table script reads
# both; every step is skipped when its output exists, so the same command continues an interrupted run.
#   DATASETS=Yelp JOBS=6 experiments/reaemb_s3rec/gpu.sh
# Env: DATASETS, JOBS, RUNS, LM, SKIP_BENCH=1 (no timings), DEVICE_TAG (default cuda).
set -euo pipefail
DATASETS=${DATASETS:-Yelp}
JOBS=${JOBS:-6}
RUNS=${RUNS:-runs/reaemb-s3rec}
LM=${LM:-smollm2-135m}
TAG=${DEVICE_TAG:-cuda}
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'experiments/reaemb_s3rec/gpu.sh: torch sees no CUDA device')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
mkdir -p "$RUNS/logs" benchmarks/results
if [ -z "${SKIP_BENCH:-}" ]; then
  res=benchmarks/results/reaemb_stages_${TAG}_$LM.json
  [ -f "$res" ] || LMS=$LM THREADS=${THREADS:-8} DEVICE_TAG=$TAG OUT=runs/reaemb-bench-$TAG benchmarks/run_reaemb_stages.sh
  for bs in 16 128; do
    res=benchmarks/results/reaemb_kv_${TAG}_${LM}_b$bs.json
    [ -f "$res" ] || semcollab reaemb bench-kv --dataset s3rec:Beauty --lm "$LM" --n-items $((bs * 8)) \
      --batch-size $bs --repeats 3 --json-out "$res"
  done
fi
DATASETS="$DATASETS" LM=$LM LM_ONLY=1 OUT=$RUNS experiments/reaemb_s3rec/run.sh  # it loops over DATASETS itself
for ds in $DATASETS; do
  res=benchmarks/results/reaemb_stage_summary_$ds-$LM-$TAG.json
  [ -f "$res" ] || python experiments/reaemb_s3rec/stage_summary.py "$RUNS/$ds-$LM" --json-out "$res"
done
queue=$(mktemp)
DATASETS="$DATASETS" LM=$LM OUT=$RUNS QUEUE=$queue experiments/reaemb_s3rec/run.sh
echo "$(wc -l < "$queue") downstream runs, $JOBS at a time"
threads=$(( $(nproc) / JOBS )); [ "$threads" -ge 1 ] || threads=1
export OMP_NUM_THREADS=$threads RUNS
# one log per run under $RUNS/logs; a failed run is reported and the others go on (rerun to retry it)
xargs -r -a "$queue" -d '\n' -P "$JOBS" -n 1 bash -c \
  'log=$(mktemp "$RUNS/logs/gpu.XXXXXX"); echo "$(date +%T) start $log $0"; bash -c "$0" > "$log" 2>&1 \
   && echo "$(date +%T) done $log" || echo "$(date +%T) FAILED $log"'
rm -f "$queue"
