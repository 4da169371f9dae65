#!/usr/bin/env bash
# Complementarity diagnostics (semantic-only vs SASRec) on ML-100K and Beauty, and aligned vs
# complementarity-aware fusion on ML-100K. Results: docs/diagnostics/<dataset>/report.{json,png}.
set -euo pipefail
ML_TEMPLATE="{title} ({year}). Genres: {genres}"
out=runs/diagnostics/$(date +%Y%m%d-%H%M%S)
mkdir -p docs/diagnostics docs/tables

# ML-100K
semcollab train --model semantic --dataset ml-100k --config configs/ml100k.yaml --output_dir=$out/ml100k \
  "--model_params.template=$ML_TEMPLATE" --model_params.recency_decay=0.9
semcollab train --model sasrec --dataset ml-100k --config configs/ml100k.yaml --output_dir=$out/ml100k
semcollab diagnose $out/ml100k/*-semantic-* $out/ml100k/*-sasrec-* --out docs/diagnostics/ml100k
for mode in aligned complementary; do
  semcollab train --model fusion --dataset ml-100k --config configs/ml100k.yaml --output_dir=$out/ml100k-fusion \
    "--model_params.template=$ML_TEMPLATE" --model_params.mode=$mode
done
semcollab table $out/ml100k/*-sasrec-* $out/ml100k/*-semantic-* $out/ml100k-fusion/* --out docs/tables/ml100k_fusion.md

# Beauty: item text = the S3-Rec attribute ids (no titles are published with these files)
BEAUTY_SASREC=${BEAUTY_SASREC:-$(ls -d runs/s3rec/*-sasrec-s3rec-Beauty | tail -n 1)}
semcollab train --model semantic --dataset s3rec:Beauty --output_dir=$out/beauty --model_params.recency_decay=0.9
semcollab diagnose $out/beauty/*-semantic-* "$BEAUTY_SASREC" --out docs/diagnostics/beauty
