#!/usr/bin/env bash
# Popularity, MF-BPR, SASRec, GRU4Rec, BERT4Rec on ML-100K in one table (docs/results.md).
# Shared settings in configs/ml100k.yaml; BERT4Rec gets longer patience (its cloze training converges slowly).
set -euo pipefail
out=runs/ml100k/$(date +%Y%m%d-%H%M%S)
mkdir -p docs/tables
for m in pop mf-bpr sasrec gru4rec; do
  semcollab train --model $m --dataset ml-100k --config configs/ml100k.yaml --output_dir=$out "$@"
done
semcollab train --model bert4rec --dataset ml-100k --config configs/ml100k.yaml --output_dir=$out \
  --train.patience=40 --train.max_minutes=20 "$@"
semcollab table $out/* --out docs/tables/ml100k_baselines.md
