#!/usr/bin/env bash
# SASRec on the four S3-Rec benchmark files (issue: foundation "must show").
# Usage: experiments/s3rec_sasrec/run.sh [extra --key=value overrides, e.g. --train.max_minutes=28]
set -euo pipefail
for ds in Beauty Toys_and_Games Sports_and_Outdoors Yelp; do
  semcollab train --model sasrec --dataset "s3rec:$ds" --config configs/s3rec_sasrec.yaml --output_dir=runs/s3rec "$@"
done
