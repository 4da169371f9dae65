#!/usr/bin/env bash
# Popularity, MF-BPR, SASRec, GRU4Rec, BERT4Rec on ML-100K in one table (docs/results.md).
set -euo pipefail
mkdir -p docs/tables
semcollab compare --models pop,mf-bpr,sasrec,gru4rec,bert4rec --dataset ml-100k --config configs/ml100k.yaml \
  --out docs/tables/ml100k_baselines.md --output_dir=runs/ml100k "$@"
