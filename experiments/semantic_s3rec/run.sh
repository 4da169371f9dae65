#!/usr/bin/env bash
# Semantic-only recommender and complementarity diagnostics on the S3-Rec files with their REAL item text
# (titles / brands / categories; each dataset's default template), for MiniLM and mpnet, next to the old
# attribute-id text; SASRec trained once per dataset with configs/s3rec_converge.yaml.
#   DATASETS="Beauty Toys_and_Games Yelp" ENCODERS="minilm mpnet" OUT=runs/semantic-s3rec experiments/semantic_s3rec/run.sh
# Reports: docs/diagnostics/<dataset>-<encoder>/report.{json,png}; table docs/tables/semantic_s3rec.md.
# Rerunning into the same OUT skips finished runs.
set -euo pipefail
OUT=${OUT:-runs/semantic-s3rec}
DATASETS=${DATASETS:-"Beauty Toys_and_Games Yelp"}
ENCODERS=${ENCODERS:-"minilm mpnet"}
done_in() { ls "$1"/*/metrics.json >/dev/null 2>&1; }
for ds in $DATASETS; do
  d="$OUT/$ds"
  done_in "$d/sasrec" || semcollab train --model sasrec --dataset "s3rec:$ds" --config configs/s3rec_converge.yaml \
    --output_dir="$d/sasrec"
  done_in "$d/semantic-attribute-ids" || semcollab train --model semantic --dataset "s3rec:$ds" \
    --output_dir="$d/semantic-attribute-ids" --model_params.recency_decay=0.9 \
    "--model_params.template=attributes: attributes {attribute_ids}"
  for enc in $ENCODERS; do
    done_in "$d/semantic-$enc" || semcollab train --model semantic --dataset "s3rec:$ds" \
      --output_dir="$d/semantic-$enc" --model_params.recency_decay=0.9 --model_params.encoder="$enc"
    [ -f "docs/diagnostics/$ds-$enc/report.json" ] || semcollab diagnose "$d/semantic-$enc"/* "$d/sasrec"/* \
      --out "docs/diagnostics/$ds-$enc"
  done
done
semcollab table "$OUT"/*/*/* --out docs/tables/semantic_s3rec.md
