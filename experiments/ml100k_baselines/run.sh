#!/usr/bin/env bash
# Popularity, MF-BPR, SASRec, GRU4Rec, BERT4Rec on ML-100K in one table (docs/results.md).
# Shared settings in configs/ml100k.yaml; the models and their own flags in experiments/ml100k_baselines/config.yaml
# (BERT4Rec gets longer patience: its cloze training converges slowly).
# Usage: experiments/ml100k_baselines/run.sh [extra --key=value overrides for every model]
set -euo pipefail
models=$(python "$(dirname "$0")/../study_config.py" "$(dirname "$0")/config.yaml" models)
out=runs/ml100k/$(date +%Y%m%d-%H%M%S)
mkdir -p docs/tables
while IFS=$'\t' read -r -u 3 m flags; do
  # shellcheck disable=SC2086  # flags: words from the config
  semcollab train --model $m --dataset ml-100k --config configs/ml100k.yaml --output_dir=$out $flags "$@"
done 3<<< "$models"
semcollab table $out/* --out docs/tables/ml100k_baselines.md
