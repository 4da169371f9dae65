#!/usr/bin/env bash
# SASRec on the four S3-Rec benchmark files (issue: foundation "must show"); the datasets in
# experiments/s3rec_sasrec/config.yaml.
# Usage: experiments/s3rec_sasrec/run.sh [extra --key=value overrides, e.g. --train.max_minutes=28]
set -euo pipefail
datasets=$(python "$(dirname "$0")/../study_config.py" "$(dirname "$0")/config.yaml" datasets)
for ds in $datasets; do
  semcollab train --model sasrec --dataset "s3rec:$ds" --config configs/s3rec_sasrec.yaml --output_dir=runs/s3rec "$@"
done
