#!/usr/bin/env bash
# ReaEmb on the S3-Rec files with real item text: per dataset, stage 1 + stage 2 on a stated budget, the item
# tables (plain LM = LLMEmb-style baseline, after stage 1, after stages 1+2), then SASRec / GRU4Rec / BERT4Rec
# with ID embeddings and with each table (frozen PCA + adapter replacing the ID embedding), trained to
# convergence (configs/s3rec_converge*.yaml), evaluated with full ranking and re-evaluated under the paper's
# protocol (100 random negatives, named "sampled-uniform-100"); tail items = the evaluator's tail group: the
# 80% least popular items in training (eval.head_frac=0.2), a cut stated in each metrics.json as
# tail_max_train_interactions (the paper uses a fixed threshold of ~16-20 interactions).
#   DATASETS="Beauty Toys_and_Games Yelp" LM=smollm2-135m S1_STEPS=150 S2_STEPS=60 experiments/reaemb_s3rec/run.sh
# Every step is skipped when its output exists; a stage stopped by its time cap exits with code 3 and the same
# command continues it. DRY=1 prints the commands instead of running them. LM_ONLY=1 stops after the tables;
# QUEUE=FILE appends each unfinished downstream run (train, then the sampled re-evaluation) to FILE as one line
# instead of running it, for a pool of one-thread workers; datasets whose tables are missing are skipped.
# DTYPE (default bfloat16): the LM's weights in training and table generation; on a CPU with AVX512-BF16 a
# forward pass is ~3.7x faster than float32 (measured on this machine), LoRA and the thought module stay float32.
# Env: DATASETS, LM, DTYPE, S1_STEPS, S1_BATCH, S2_STEPS, S2_ANCHORS, S2_SIGMA (stage-2 rollout noise, relative to the
#      thought vector's RMS; default 0.1, the paper's sigma), MAX_MINUTES (per stage and call), MODELS,
#      EPOCHS (default 300, the authors' bound; early stopping ends most runs well before it), SEEDS (SASRec),
#      EMBS (default "id plain stage1 stage2"), OUT, LM_ONLY, QUEUE. EMBS=id QUEUE=FILE lists the ID-embedding
#      runs of datasets whose tables are not made yet (they need no LM). ARCHIVE (default benchmarks/runs/<basename
#      of OUT>; empty = off): after each run, scripts/archive_runs.py copies its metrics.json, run.json and
#      sampled-*.json there, to be committed: the table script reads that copy once runs/ is gone.
set -euo pipefail
DATASETS=${DATASETS:-"Beauty Toys_and_Games Yelp"}
LM=${LM:-smollm2-135m}
DTYPE=${DTYPE:-bfloat16}
S1_STEPS=${S1_STEPS:-150}
S1_BATCH=${S1_BATCH:-16}
S2_STEPS=${S2_STEPS:-60}
S2_ANCHORS=${S2_ANCHORS:-2000}
S2_SIGMA=${S2_SIGMA:-0.1}
MAX_MINUTES=${MAX_MINUTES:-60}
MODELS=${MODELS:-"sasrec gru4rec bert4rec"}
EPOCHS=${EPOCHS:-300}
SEEDS=${SEEDS:-"1 2 3"}
EMBS=${EMBS:-"id plain stage1 stage2"}
OUT=${OUT:-runs/reaemb-s3rec}
ARCHIVE=${ARCHIVE-benchmarks/runs/$(basename "$OUT")}
run() { if [ -n "${DRY:-}" ]; then echo "$*"; else "$@"; fi; }
done_in() { ls "$1"/*/metrics.json >/dev/null 2>&1; }
for ds in $DATASETS; do
  r="$OUT/$ds-$LM"
  if [ "$EMBS" = id ]; then
    :  # ID runs need no LM and no table
  elif [ -n "${QUEUE:-}" ]; then
    for t in $EMBS; do [ "$t" = id ] || [ -f "$r/tables/$t.npy" ] || { echo "$ds: $r/tables/$t.npy missing, not queued" >&2; continue 2; }; done
  else
    [ -f "$r/stage2/final/state.json" ] || run semcollab reaemb train --dataset "s3rec:$ds" --lm "$LM" --out "$r" \
      --dtype="$DTYPE" --stage1.max_steps="$S1_STEPS" --stage1.batch_size="$S1_BATCH" \
      --stage1.max_minutes="$MAX_MINUTES" --stage2.max_steps="$S2_STEPS" --stage2.max_anchors="$S2_ANCHORS" \
      --stage2.noise_sigma="$S2_SIGMA" --stage2.max_minutes="$MAX_MINUTES"
    mkdir -p "$r/tables"
    [ -f "$r/tables/plain.npy" ] || run semcollab reaemb table --plain --dataset "s3rec:$ds" --lm "$LM" \
      --dtype="$DTYPE" --out "$r/tables/plain.npy"
    for st in stage1 stage2; do
      [ -f "$r/tables/$st.npy" ] || run semcollab reaemb table "$r" --stage "$st" --out "$r/tables/$st.npy"
    done
  fi
  [ -n "${LM_ONLY:-}" ] && continue
  for model in $MODELS; do
    cfg=configs/s3rec_converge.yaml
    [ "$model" = gru4rec ] && cfg=configs/s3rec_converge_gru4rec.yaml
    seeds=$SEEDS
    [ "$model" = sasrec ] || seeds=${SEEDS%% *}  # 3 seeds for SASRec, one for the others (CPU budget)
    for emb in $EMBS; do
      extra=()
      [ "$emb" = id ] || extra=(--model_params.item_table="$r/tables/$emb.npy" --model_params.table_mode=replace)
      for seed in $seeds; do
        d="$OUT/$ds/$model/$emb/seed$seed"
        train=(semcollab train --model "$model" --dataset "s3rec:$ds" --config "$cfg" --train.seed="$seed"
               --train.epochs="$EPOCHS" --output_dir="$d" "${extra[@]}")
        # the paper's protocol on the same trained model (writes sampled-uniform-100.json beside metrics.json),
        # then 100 negatives drawn by popularity (sampled-popularity-100.json); each skipped when its file exists
        sampled="python experiments/reaemb_s3rec/evaluate_sampled.py $d/*/ && python experiments/reaemb_s3rec/evaluate_sampled.py $d/*/ --negatives popularity"
        # then the run's result files into the committed archive (runs/ does not outlive its machine)
        [ -z "$ARCHIVE" ] || sampled="$sampled && python scripts/archive_runs.py $OUT $ARCHIVE"
        if [ -n "${QUEUE:-}" ]; then
          if done_in "$d"; then
            if ls "$d"/*/sampled-uniform-100.json "$d"/*/sampled-popularity-100.json >/dev/null 2>&1; then
              # finished and re-evaluated: only the archive copy may be missing (runs made before ARCHIVE existed)
              [ -z "$ARCHIVE" ] && continue
              ls "$ARCHIVE/${d#"$OUT"/}"/*/sampled-popularity-100.json >/dev/null 2>&1 && continue
              line="python scripts/archive_runs.py $OUT $ARCHIVE"
            else
              line=$sampled
            fi
          else
            line="${train[*]} && $sampled"
          fi
          touch "$QUEUE"; grep -qxF -- "$line" "$QUEUE" || echo "$line" >> "$QUEUE"  # a re-listing never doubles a run
          continue
        fi
        done_in "$d" || run "${train[@]}"
        if done_in "$d" || [ -n "${DRY:-}" ]; then run bash -c "$sampled"; fi
      done
    done
  done
done
