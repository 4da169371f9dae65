#!/usr/bin/env bash
# semcollab's hybrid model (issue 33) vs tuned SASRec on the S3-Rec files, and its ablations. Every run uses
# configs/s3rec_converge.yaml (hidden 64, 2 layers, 2 heads, dropout 0.5, len 50, sampled softmax over 1,024
# negatives, length buckets, validation every epoch, patience 20): the hybrid shares SASRec's encoder settings and
# training loop; only its item side and heads differ. Full ranking, history masked, test = all users.
# 1. the item text of each dataset is encoded once (MiniLM; mpnet and smollm2-135m too when ablating encoders) into the user cache,
#    before the queue, so two jobs never encode the same dataset at once;
# 2. MAIN: hybrid (defaults = the full model) and sasrec on DATASETS x SEEDS;
# 3. ABLATE: on ABLATE_DATASETS x SEEDS, one component removed per setting (below) and the text encoder swapped
#    (mpnet; smollm2-135m hidden states; an LM item table when LM_TABLE_<dataset> names one, e.g. a `semcollab reaemb table` output);
# 4. tables: mean ± std per setting and Welch p of each setting against sasrec (experiments/seed_table.py).
# Env: DATASETS, ABLATE_DATASETS, SEEDS, JOBS (parallel runs, one thread each), OUT, MODELS (the MAIN settings to
# queue, default all), EXTRA (overrides added to every run, e.g. --train.max_minutes=60), ABLATE_VIEW (gated |
# null_space: which hybrid the ablations take apart; ABLATIONS, which of them, default all), TABLE (default docs/tables/hybrid_s3rec.md; the popularity
# table goes beside it, *_pop.md), MODEL_ROW and PEERS (the Welch tests of semcollab's model against each peer). A rerun into the same OUT
# skips finished runs (metrics.json written), so the script is resumable; STAGES="main ablate" picks what to queue
# (add "pop" for the popularity-correction sweeps of finished runs, below; POP_SETTINGS, POP_BETAS).
# ITEM_TABLES (a folder of <dataset>-minilm.npy, e.g. .gpu33/tables from experiments/gpu/prepare_issue33.py): every
# setting that reads text takes its MiniLM vectors from there (model_params.item_table) instead of the encoder cache,
# nothing is encoded, and the encoder ablations (which need their own encoder) are left out, saying so: a machine
# without the encoder packages (the GPU run, experiments/gpu/gpu_issue33.sh) runs the rest. SEMCOLLAB and PY name
# the command line and the interpreter (defaults: semcollab, python).
set -euo pipefail
DATASETS=${DATASETS:-"Beauty Toys_and_Games Sports_and_Outdoors Yelp"}
ABLATE_DATASETS=${ABLATE_DATASETS:-"Beauty Toys_and_Games"}
SEEDS=${SEEDS:-"1 2 3"}
JOBS=${JOBS:-2}
STAGES=${STAGES-"main ablate"}  # set but empty (STAGES=""): queue nothing, only rewrite the tables
out=${OUT:-runs/hybrid-s3rec}
EXTRA=${EXTRA:-}
ITEM_TABLES=${ITEM_TABLES:-}
SEMCOLLAB=${SEMCOLLAB:-semcollab}
PY=${PY:-python}
TABLE=${TABLE:-docs/tables/hybrid_s3rec.md}  # a side experiment (another OUT) names its own table files
POP_TABLE=${POP_TABLE:-${TABLE%.md}_pop.md}
# MAIN setting name -> model and overrides (on top of configs/s3rec_converge.yaml). sasrec-128 and sasrec-cos are
# the controls of AlphaFuse's width (128) and of its cosine / temperature scoring. The config file sets hidden 64,
# so a 128-wide setting says so.
declare -A MAIN=(
  [sasrec]="--model sasrec"
  [sasrec-128]="--model sasrec --model_params.hidden=128"
  [sasrec-cos]="--model sasrec --model_params.similarity=cosine"
  [alphafuse]="--model alphafuse --model_params.hidden=128 --model_params.null_dim=64"  # the authors' widths
  [alphafuse-64]="--model alphafuse --model_params.hidden=64 --model_params.null_dim=32"
  [llm-esr]="--model llm-esr"
  [llm-esr-epoch]="--model llm-esr --model_params.distill_targets=epoch"  # ~9x cheaper epoch (results 22c)
  [hybrid]="--model hybrid"
  [hybrid-cos]="--model hybrid --model_params.similarity=cosine"
  [hybrid-ns]="--model hybrid --model_params.item_view=null_space --model_params.similarity=cosine"
  [hybrid-ns-128]="--model hybrid --model_params.item_view=null_space --model_params.similarity=cosine --model_params.hidden=128 --model_params.null_dim=64"
)
MODEL_ROW=${MODEL_ROW:-hybrid-ns-128}  # semcollab's model in the tables: Welch-tested against sasrec and each of PEERS
PEERS=${PEERS:-"alphafuse llm-esr-epoch"}
ABLATE_VIEW=${ABLATE_VIEW:-gated}  # gated: ablate the default hybrid; null_space: ablate hybrid-ns-128
MODELS=${MODELS:-"sasrec sasrec-128 sasrec-cos alphafuse alphafuse-64 llm-esr llm-esr-epoch hybrid hybrid-cos hybrid-ns hybrid-ns-128"}
mkdir -p "$out" "$(dirname "$TABLE")" "$(dirname "$POP_TABLE")"
source "$(dirname "$0")/../run_finished.sh"
export OMP_NUM_THREADS=1 COLUMNS=120

# setting name -> model_params overrides (each removes one component of the full model)
declare -A ABLATION=(
  [no-gates]="--model_params.gate=none"                       # fixed 0.5 mixes (item and score)
  [no-user-gate]="--model_params.gate=item"                   # item gate by popularity; constant score mix
  [random-ids]="--model_params.id_init=random"                # random ID start: not text-PCA (gated view), not zeros (null space)
  [no-semantic-head]="--model_params.semantic_head=false --model_params.gate=item --model_params.semantic_loss=0 --model_params.tail_distill=0"
  [no-semantic-loss]="--model_params.semantic_loss=0"         # head trained only through the fused score
  [no-tail-distill]="--model_params.tail_distill=0"
  [linear-adapter]="--model_params.adapter=linear"
  [mpnet]="--model_params.encoder=mpnet"
  [smollm2]="--model_params.encoder=smollm2-135m"            # an LM's hidden states (last token) as the text table
)
# ABLATIONS: the ablation settings to queue (default all); an unknown name, or linear-adapter with the null-space view
# (it has no adapter), is refused before anything is queued
for name in ${ABLATIONS:-}; do
  [ -n "${ABLATION[$name]+x}" ] || { echo "unknown ABLATIONS entry $name (one of ${!ABLATION[*]})" >&2; exit 2; }
  if [ "$ABLATE_VIEW" = null_space ] && [ "$name" = linear-adapter ]; then
    echo "ABLATIONS: linear-adapter needs ABLATE_VIEW=gated (the null-space view has no adapter)" >&2; exit 2
  fi
done
ABLATIONS=${ABLATIONS:-$(printf '%s\n' "${!ABLATION[@]}" | sort | tr '\n' ' ')}

table_args() {  # table_args DS SETTING-ARGS...: the item_table override when ITEM_TABLES is set and the setting reads text
  local ds=$1; shift
  [ -n "$ITEM_TABLES" ] || return 0
  [ "${2:-}" = sasrec ] && return 0  # "--model sasrec ...": ID-only
  [ -f "$ITEM_TABLES/$ds-minilm.npy" ] || { echo "ITEM_TABLES: no $ITEM_TABLES/$ds-minilm.npy" >&2; return 1; }
  echo "--model_params.item_table=$ITEM_TABLES/$ds-minilm.npy"
}
embed_stages=$STAGES
[ -z "$ITEM_TABLES" ] || embed_stages=""  # the vectors come from the tables: nothing to encode
for stage in $embed_stages; do case $stage in
  main) for ds in $DATASETS; do $SEMCOLLAB embed --dataset "s3rec:$ds" --out "$out/embed/$ds-minilm" > /dev/null; done ;;
  ablate) encoders=""  # only those of the queued encoder ablations (ABLATIONS)
    for name in $ABLATIONS; do [[ "${ABLATION[$name]}" == *encoder=* ]] && encoders="$encoders ${ABLATION[$name]#*encoder=}"; done
    for ds in $ABLATE_DATASETS; do for enc in $encoders; do
    $SEMCOLLAB embed --dataset "s3rec:$ds" --encoder "$enc" --out "$out/embed/$ds-$enc" > /dev/null; done; done ;;
esac; done

jobs_file="$out/jobs.$$.txt"  # per invocation: a second queue into the same OUT must not truncate a running one's
: > "$jobs_file"
queue() {  # queue DIR SEED ARGS...: one training run unless DIR already holds a finished run of SEED
  local dir=$1 seed=$2; shift 2
  run_finished "$dir" "$seed" || echo "$SEMCOLLAB train $* --train.seed=$seed --output_dir=$dir" >> "$jobs_file"
}
for seed in $SEEDS; do  # seed-major: a queue cut short still covers every dataset and setting once
  for stage in $STAGES; do
    if [ "$stage" = main ]; then for ds in $DATASETS; do
      common="--dataset s3rec:$ds --config configs/s3rec_converge.yaml"
      for name in $MODELS; do
        [ -n "${MAIN[$name]+x}" ] || { echo "unknown MODELS entry $name (one of ${!MAIN[*]})" >&2; exit 2; }
        # shellcheck disable=SC2086
        tab=$(table_args "$ds" ${MAIN[$name]})
        # shellcheck disable=SC2086
        queue "$out/$ds/$name" "$seed" ${MAIN[$name]} $common $tab $EXTRA
      done
    done; fi
    if [ "$stage" = ablate ]; then for ds in $ABLATE_DATASETS; do
      common="--model hybrid --dataset s3rec:$ds --config configs/s3rec_converge.yaml"
      prefix=hybrid
      if [ "$ABLATE_VIEW" = null_space ]; then common="$common ${MAIN[hybrid-ns-128]#--model hybrid }"; prefix=hybrid-ns-128; fi
      for name in $ABLATIONS; do
        # the null-space view has no adapter to make linear
        [ "$ABLATE_VIEW" = null_space ] && [ "$name" = linear-adapter ] && continue
        if [ -n "$ITEM_TABLES" ] && [[ "${ABLATION[$name]}" == *encoder=* ]]; then
          echo "ITEM_TABLES: $ds/$prefix-$name left out (it needs its own encoder, not the MiniLM table)" >&2; continue
        fi
        # shellcheck disable=SC2086
        tab=$(table_args "$ds" $common)
        # shellcheck disable=SC2086
        queue "$out/$ds/$prefix-$name" "$seed" $common ${ABLATION[$name]} $tab $EXTRA
      done
      table_var="LM_TABLE_$ds"
      # shellcheck disable=SC2086
      if [ -n "${!table_var:-}" ]; then queue "$out/$ds/$prefix-lm-table" "$seed" $common "--model_params.item_table=${!table_var}" $EXTRA; fi
    done; fi
  done
done
echo "$(wc -l < "$jobs_file") runs queued in $jobs_file"
# each job's log goes next to the runs; a failed job fails the script after the queue drains
xargs -P "$JOBS" -I{} -d '\n' bash -c '{} > "$(mktemp '"$out"'/log.XXXXXX)" 2>&1' < "$jobs_file"

# the table covers every dataset folder in OUT (not only this invocation's DATASETS), rows named by setting folder
for ds in Beauty Toys_and_Games Sports_and_Outdoors Yelp; do
  groups=$(find "$out/$ds" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | sort || true)
  [ -n "$groups" ] || continue
  echo "### $ds"
  # shellcheck disable=SC2086
  $PY experiments/seed_table.py --folder-names --more $groups
  echo
  pairs=""
  for g in $groups; do  # settings with two or more finished seeds (a t-test needs them)
    [ "$g" != "$out/$ds/sasrec" ] && [ "$(find "$g" -mindepth 2 -maxdepth 2 -name metrics.json | wc -l)" -ge 2 ] \
      && pairs="$pairs $out/$ds/sasrec $g"
  done
  seeds() { find "$1" -mindepth 2 -maxdepth 2 -name metrics.json 2>/dev/null | wc -l; }
  for peer in $PEERS; do  # semcollab's model against each peer ("ahead of every peer row")
    [ "$(seeds "$out/$ds/$peer")" -ge 2 ] && [ "$(seeds "$out/$ds/$MODEL_ROW")" -ge 2 ] \
      && pairs="$pairs $out/$ds/$peer $out/$ds/$MODEL_ROW"
  done
  # shellcheck disable=SC2086
  [ -z "$pairs" ] || $PY experiments/seed_table.py --welch $pairs 2>&1 \
    || echo "(no Welch table yet: it needs two or more seeds in sasrec and in each other setting)"
  echo
done > "$TABLE"
echo "runs in $out; table in $TABLE"

# pop: the ranking-time popularity correction (eval.pop_correction, any model) swept on each finished run of
# POP_SETTINGS, beta chosen on validation (experiments/hybrid_s3rec/pop_adjust.py; ~1 min per beta and run here);
# each sweep is kept beside its run (pop_adjust.json, written once), the table covers every sweep in OUT
if [[ " $STAGES " == *" pop "* ]]; then
  POP_SETTINGS=${POP_SETTINGS:-"sasrec alphafuse hybrid-ns-128"}
  POP_BETAS=${POP_BETAS:-"0 0.05 0.1 0.2 0.3 0.5"}
  find "$out" -mindepth 4 -maxdepth 4 -name metrics.json | sort | while read -r m; do
    dir=$(dirname "$m"); setting=$(basename "$(dirname "$dir")")
    case " $POP_SETTINGS " in *" $setting "*) ;; *) continue ;; esac
    # shellcheck disable=SC2086
    [ -s "$dir/pop_adjust.json" ] || $PY experiments/hybrid_s3rec/pop_adjust.py "$dir" --betas $POP_BETAS \
      --out "$dir/pop_adjust.json" > /dev/null
  done
  sweeps=$(find "$out" -mindepth 4 -maxdepth 4 -name pop_adjust.json | sort)
  # shellcheck disable=SC2086
  [ -z "$sweeps" ] || $PY experiments/hybrid_s3rec/pop_adjust.py --table $sweeps > "$POP_TABLE"
  echo "popularity-correction table in $POP_TABLE"
fi
