#!/usr/bin/env bash
# SAERec vs SASRec on ML-100K (3 seeds, same settings), ablations (1 seed), intent library, explanations.
# Two runs at a time, one thread each, so SASRec and SAERec of a seed share the machine equally.
set -euo pipefail
T="{title} ({year}). Genres: {genres}"
out=runs/saerec/$(date +%Y%m%d-%H%M%S)
CAP=${CAP:-6}   # minutes per training run (the CPU budget of one session); raise for converged numbers
export OMP_NUM_THREADS=1
export COLUMNS=120  # rich wraps captured output at this width
common=(--dataset ml-100k --config configs/ml100k.yaml --train.max_minutes=$CAP)
mkdir -p docs/saerec docs/tables
semcollab intents --dataset ml-100k "--template=$T" --out docs/saerec --top 15 --lm-labels smollm2-135m --lm-top 50 | tee docs/saerec/ml100k_intents.txt
for seed in 1 2 3; do
  semcollab train --model sasrec "${common[@]}" --output_dir=$out/sasrec --train.seed=$seed &
  semcollab train --model saerec "${common[@]}" --output_dir=$out/saerec --train.seed=$seed "--model_params.template=$T" &
  wait
done
semcollab train --model saerec "${common[@]}" --output_dir=$out/ablation --train.seed=1 "--model_params.template=$T" \
  --model_params.use_personal=false &
semcollab train --model saerec "${common[@]}" --output_dir=$out/ablation --train.seed=1 "--model_params.template=$T" \
  --model_params.use_public=false &
wait
semcollab train --model saerec "${common[@]}" --output_dir=$out/ablation --train.seed=1 "--model_params.template=$T" \
  --model_params.intent_source=random
python experiments/seed_table.py $out/sasrec $out/saerec $out/ablation > docs/tables/saerec_ml100k.md
run=$(ls -d $out/saerec/* | head -n 1)
: > docs/saerec/ml100k_explanations.txt
for u in 1 50 200 500 900; do
  semcollab recommend "$run" --user $u --k 3 --explain --stage test --intents docs/saerec/ml-100k/intents.json \
    >> docs/saerec/ml100k_explanations.txt
done
