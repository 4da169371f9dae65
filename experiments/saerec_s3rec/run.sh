#!/usr/bin/env bash
# SAERec vs SASRec on the four S3-Rec benchmark files: same settings (configs/s3rec_fast.yaml), same seeds.
# 1. every (dataset, seed, model) training run through a 2-worker queue, one thread per run; the first
#    SAERec run of a dataset embeds its item text (MiniLM) and trains the SAE, later ones reuse both from
#    the content-hash caches (seed-major order keeps two runs from training one SAE at once);
# 2. per dataset, the intent library printed from that same cached SAE;
# 3. a mean ± std table per dataset and five verbatim explanations on Beauty.
# Both models train for the same fixed number of epochs (EPOCHS, default 30), validated every 5 epochs;
# the best validation checkpoint is tested. A wall-clock cap would favour the model with cheaper epochs
# (SASRec ~5 s vs SAERec ~9 s per Beauty epoch on one thread), so the budget is epochs, not minutes.
# Env: DATASETS, SEEDS, EPOCHS, OUT (rerunning into an existing OUT only adds missing runs), JOBS.
set -euo pipefail
DATASETS=${DATASETS:-"Beauty Toys_and_Games Sports_and_Outdoors Yelp"}
SEEDS=${SEEDS:-"1 2 3"}
EPOCHS=${EPOCHS:-30}
JOBS=${JOBS:-2}
out=${OUT:-runs/saerec-s3rec/$(date +%Y%m%d-%H%M%S)}
T="{attributes}"  # the files carry attribute ids only (no titles): "attributes a12 a345 ..."
mkdir -p "$out" docs/saerec docs/tables
jobs_file="$out/jobs.txt"
: > "$jobs_file"
# a rerun into the same OUT skips (dataset, model, seed) runs that already finished (metrics.json written)
source "$(dirname "$0")/../run_finished.sh"
for seed in $SEEDS; do for ds in $DATASETS; do  # seed-major: a cut-short queue still covers every dataset
  common="--dataset s3rec:$ds --config configs/s3rec_fast.yaml --train.seed=$seed --train.epochs=$EPOCHS --train.eval_every=5 --train.patience=1000"
  run_finished "$out/$ds/saerec" "$seed" || \
    echo "semcollab train --model saerec $common --output_dir=$out/$ds/saerec --model_params.template=$T" >> "$jobs_file"
  run_finished "$out/$ds/sasrec" "$seed" || \
    echo "semcollab train --model sasrec $common --output_dir=$out/$ds/sasrec" >> "$jobs_file"
done; done
export OMP_NUM_THREADS=1
export COLUMNS=120  # rich wraps captured output at this width
# each job's log goes next to the runs; a failed job fails the script after the queue drains
xargs -P "$JOBS" -I{} -d '\n' bash -c '{} > "$(mktemp '"$out"'/log.XXXXXX)" 2>&1' < "$jobs_file"
for ds in $DATASETS; do
  # writes docs/saerec/<split name>/{intents.json,sae_quality.json}; reuses the runs' cached SAE (same inputs+settings)
  semcollab intents --dataset "s3rec:$ds" "--template=$T" --out docs/saerec --top 15 > "docs/saerec/${ds}_intents.txt"
done
for ds in $DATASETS; do
  echo "### $ds"
  python experiments/seed_table.py "$out/$ds/sasrec" "$out/$ds/saerec"
  echo
done > docs/tables/saerec_s3rec.md
run=$(ls -d "$out"/Beauty/saerec/* 2>/dev/null | head -n 1 || true)
if [ -n "$run" ]; then
  : > docs/saerec/beauty_explanations.txt
  for u in 1 100 1000 5000 20000; do
    semcollab recommend "$run" --user "$u" --k 3 --explain --stage test >> docs/saerec/beauty_explanations.txt
  done
fi
echo "runs in $out; table in docs/tables/saerec_s3rec.md"
