#!/usr/bin/env bash
# SAERec ablations on an S3-Rec file, 3 seeds, the settings and epoch budget of experiments/saerec_s3rec/run.sh:
# without personal intents, without public intents, random (untrained) latents in place of the SAE's.
# The full SAERec and SASRec rows come from that script's runs in the same OUT, so run it first (or after:
# the table step reads whatever finished). Finished (variant, seed) runs are skipped on a rerun.
# The variants (folder -> flags): experiments/saerec_s3rec/ablation.yaml.
# Env: DATASET (default Beauty), SEEDS, EPOCHS, OUT, JOBS (default 1: meant to run beside the main queue).
set -euo pipefail
DATASET=${DATASET:-Beauty}
SEEDS=${SEEDS:-"1 2 3"}
EPOCHS=${EPOCHS:-30}
JOBS=${JOBS:-1}
out=${OUT:-runs/saerec-s3rec/main}
T="{attributes}"
base="$out/$DATASET/ablation"
mkdir -p "$base" docs/tables
source "$(dirname "$0")/../run_finished.sh"
jobs_file="$base/jobs.txt"
: > "$jobs_file"
variants=$(python "$(dirname "$0")/../study_config.py" "$(dirname "$0")/ablation.yaml" variants)
declare -A VARIANT=()
declare -a NAMES=()
while IFS=$'\t' read -r v flags; do VARIANT[$v]=$flags; NAMES+=("$v"); done <<< "$variants"
for seed in $SEEDS; do for v in "${NAMES[@]}"; do
  run_finished "$base/$v" "$seed" && continue
  echo "semcollab train --model saerec --dataset s3rec:$DATASET --config configs/s3rec_fast.yaml --train.seed=$seed" \
       "--train.epochs=$EPOCHS --train.eval_every=5 --train.patience=1000 --output_dir=$base/$v" \
       "--model_params.template=$T ${VARIANT[$v]}" >> "$jobs_file"
done; done
export OMP_NUM_THREADS=1
xargs -P "$JOBS" -I{} -d '\n' bash -c '{} > "$(mktemp '"$base"'/log.XXXXXX)" 2>&1' < "$jobs_file"
python experiments/seed_table.py "$out/$DATASET/sasrec" "$out/$DATASET/saerec" "${NAMES[@]/#/$base/}" \
  > "docs/tables/saerec_ablation_${DATASET}.md"
echo "table in docs/tables/saerec_ablation_${DATASET}.md"
