#!/usr/bin/env bash
# Issue 33 peer rows from RecTools itself: UniSRec (rectools.fast_transformers.UniSRecModel, RecTools' defaults
# unless EXTRA says otherwise) on semcollab's leave-one-out split, MiniLM item text from semcollab's cache, scored by
# semcollab's full-ranking evaluator. One run folder per dataset x seed under OUT (semcollab table / report read them).
#   experiments/peers/run.sh                      # Beauty Toys Sports Yelp x seeds 1 2 3, 10 epochs (RecTools' default)
#   DATASETS="Beauty" SEEDS="1" EPOCHS=2 EXTRA="--max-len 50" experiments/peers/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${RECTOOLS_VENV:-/work/venvs/rectools}
bash experiments/peers/install_rectools.sh >/dev/null
export PYTHONPATH=$PWD/src
OUT=${OUT:-runs/peers/rectools-unisrec}
for ds in ${DATASETS:-Beauty Toys_and_Games Sports_and_Outdoors Yelp}; do
  for seed in ${SEEDS:-1 2 3}; do
    # shellcheck disable=SC2086
    "$VENV/bin/python" experiments/peers/rectools_unisrec.py --dataset "s3rec:$ds" --seed "$seed" \
      --epochs "${EPOCHS:-10}" --out "$OUT/$ds" ${EXTRA:-}
  done
done
