#!/usr/bin/env bash
# SAERec vs SASRec on the four S3-Rec files with their REAL item text (each dataset's default template,
# MiniLM), both trained to convergence with the same settings (configs/s3rec_converge.yaml: validation every
# epoch, patience 20, at most 200 epochs), seeds 1-3; ablations and the authors' variants on Beauty and Toys.
#
# One queue, two workers, one thread per run, in priority order (a cut-short queue leaves the later phases):
#   A. Beauty, Toys: sasrec + saerec            (seed-major)
#   B. Beauty: saerec with the authors' retrieval/public/fusion (cosine, low_idf, attention)
#   C. Beauty, Toys ablations: no personal, no public, random latents
#   D. Yelp, Sports: sasrec + saerec            (seed-major)
#   E. Toys: the authors' variant
#   F. Beauty: saerec with dropout on the intent branches (branch_dropout = the sequence path's 0.5)
#   G. Beauty, Toys: shuffled intents (the trained SAE, each item given another's activations: the null control)
# Rerunning into the same OUT only adds the runs that have not finished (metrics.json written); the first
# SAERec run of a dataset embeds its text and trains the SAE, later ones reuse both from the caches.
# Then: per-dataset tables (docs/tables/saerec_realtext.md), ablation tables, branch statistics.
# Variants, table rows and t-test pairs: experiments/saerec_realtext/config.yaml.
# Env: OUT (default runs/saerec-realtext), SEEDS, JOBS, PHASES (default "A B C D E F G"), TABLES_ONLY=1 (no training:
# rewrite the tables from the runs that finished), QUEUE_ONLY=1 (write the queue of missing runs, one command per
# line, to $OUT/jobs.txt and stop: for draining it with another worker pool).
set -euo pipefail
OUT=${OUT:-runs/saerec-realtext}
SEEDS=${SEEDS:-"1 2 3"}
JOBS=${JOBS:-2}
PHASES=${PHASES:-"A B C D E F G"}
mkdir -p "$OUT" docs/tables
source "$(dirname "$0")/../run_finished.sh"
jobs_file="$OUT/jobs.txt"
: > "$jobs_file"
CFG="--config configs/s3rec_converge.yaml"
study() { python "$(dirname "$0")/../study_config.py" "$(dirname "$0")/config.yaml" "$1"; }  # study KEY
variants=$(study variants); table_groups=$(study table_groups); welch_pairs=$(study welch_pairs)
declare -A ABL=()
while IFS=$'\t' read -r v flags; do ABL[$v]=$flags; done <<< "$variants"
add() {  # add DATASET GROUP SEED MODEL [FLAGS...]: queue one run unless it already finished
  local ds=$1 group=$2 seed=$3 model=$4; shift 4
  run_finished "$OUT/$ds/$group" "$seed" && return 0
  echo "semcollab train --model $model --dataset s3rec:$ds $CFG --train.seed=$seed --output_dir=$OUT/$ds/$group $*" \
    >> "$jobs_file"
}
main_runs() { for seed in $SEEDS; do for ds in "$@"; do
  add "$ds" saerec "$seed" saerec; add "$ds" sasrec "$seed" sasrec; done; done; }
variant_runs() { local v=$1; shift; for seed in $SEEDS; do for ds in "$@"; do
  add "$ds" "$v" "$seed" saerec ${ABL[$v]}; done; done; }
[ "${TABLES_ONLY:-0}" = 1 ] && PHASES=""
for phase in $PHASES; do case $phase in
  A) main_runs Beauty Toys_and_Games ;;
  B) variant_runs authors Beauty ;;
  C) for seed in $SEEDS; do for ds in Beauty Toys_and_Games; do for v in no_personal no_public random_latents; do
       add "$ds" "$v" "$seed" saerec ${ABL[$v]}; done; done; done ;;
  D) main_runs Yelp Sports_and_Outdoors ;;
  E) variant_runs authors Toys_and_Games ;;
  F) variant_runs branch_dropout Beauty ;;
  G) variant_runs shuffled Beauty Toys_and_Games ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
esac; done
echo "$(wc -l < "$jobs_file") runs to go (queue: $jobs_file)"
[ "${QUEUE_ONLY:-0}" = 1 ] && exit 0
export OMP_NUM_THREADS=1
export COLUMNS=120
mkdir -p "$OUT/logs"
# a failed run fails the script after the queue drains; its log names it
xargs -P "$JOBS" -I{} -d '\n' bash -c '{} > "$(mktemp '"$OUT"'/logs/log.XXXXXX)" 2>&1' < "$jobs_file"
{
  for ds in Beauty Toys_and_Games Yelp Sports_and_Outdoors; do
    [ -d "$OUT/$ds" ] || continue
    echo "### $ds"
    groups=()
    for g in $table_groups; do [ -d "$OUT/$ds/$g" ] && groups+=("$OUT/$ds/$g"); done
    python experiments/seed_table.py "${groups[@]}"
    echo
  done
} > docs/tables/saerec_realtext.md
echo "table in docs/tables/saerec_realtext.md"
# Welch t-tests (experiments/seed_table.py --welch) of each pair whose both groups have >= 2 finished runs
pairs=()
for ds in Beauty Toys_and_Games Yelp Sports_and_Outdoors; do
  while read -r pair; do
    set -- $pair
    ok=1
    for g in "$1" "$2"; do [ "$(ls "$OUT/$ds/$g"/*/metrics.json 2>/dev/null | wc -l)" -ge 2 ] || ok=0; done
    [ "$ok" = 1 ] && pairs+=("$ds/$1" "$ds/$2")
  done <<< "$welch_pairs"
done
if [ "${#pairs[@]}" -gt 0 ]; then
  (cd "$OUT" && python "$OLDPWD/experiments/seed_table.py" --welch "${pairs[@]}") > docs/tables/saerec_realtext_tests.md
  echo "t-tests in docs/tables/saerec_realtext_tests.md"
fi
