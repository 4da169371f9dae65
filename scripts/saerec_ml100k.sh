#!/usr/bin/env bash
# SAERec vs SASRec on ML-100K (3 seeds, same settings), ablations (1 seed), intent library, explanations.
set -euo pipefail
T="{title} ({year}). Genres: {genres}"
out=runs/saerec/$(date +%Y%m%d-%H%M%S)
CAP=${CAP:-6}   # minutes per training run (the CPU budget of one session); raise for converged numbers
mkdir -p docs/saerec
semcollab intents --dataset ml-100k "--template=$T" --out docs/saerec --top 15 | tee docs/saerec/ml100k_intents.txt
for seed in 1 2 3; do
  semcollab train --model sasrec --dataset ml-100k --config configs/ml100k.yaml --output_dir=$out/sasrec \
    --train.seed=$seed --train.max_minutes=$CAP
  semcollab train --model saerec --dataset ml-100k --config configs/ml100k.yaml --output_dir=$out/saerec \
    --train.seed=$seed --train.max_minutes=$CAP "--model_params.template=$T"
done
for ab in "--model_params.use_personal=false" "--model_params.use_public=false" "--model_params.intent_source=random"; do
  semcollab train --model saerec --dataset ml-100k --config configs/ml100k.yaml --output_dir=$out/ablation \
    --train.seed=1 --train.max_minutes=$CAP "--model_params.template=$T" "$ab"
done
python scripts/seed_table.py $out/sasrec $out/saerec $out/ablation > docs/tables/saerec_ml100k.md
run=$(ls -d $out/saerec/* | head -n 1)
: > docs/saerec/ml100k_explanations.txt
for u in 1 50 200 500 900; do
  semcollab recommend "$run" --user $u --k 3 --explain --stage test >> docs/saerec/ml100k_explanations.txt
done
