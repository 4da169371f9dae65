#!/usr/bin/env bash
# The same four real-data runs before and after a change that must not change behaviour (issue 29's layout
# redesign): the quickstart, the CTR MF + bias run (test AUC 0.7214), an ML-100K SAERec run at seed 0, and the
# ReaEmb downstream table regenerated from benchmarks/runs. Compare two output folders with
#   python scripts/behaviour_diff.py BEFORE AFTER
# usage: bash scripts/behaviour_check.sh OUTDIR    (from the repo root; about 30 min on 2 cores, most of it SAERec)
set -euo pipefail
OUT=$(realpath -m "$1"); mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
semcollab quickstart --output_dir="$OUT/quickstart" > "$OUT/quickstart.txt" 2>&1
semcollab ctr train --model mf --model_params.bias=true --train.lr=1e-2 --train.weight_decay=1e-4 \
   --output_dir="$OUT/ctr_mf_bias" > "$OUT/ctr_mf.txt" 2>&1
semcollab train --model saerec --dataset ml-100k --train.seed=0 --output_dir="$OUT/saerec" > "$OUT/saerec.txt" 2>&1
table=experiments/reaemb_s3rec/downstream_table.py
[ -f "$table" ] || table=scripts/reaemb_downstream_table.py   # where it was before the layout change
python "$table" benchmarks/runs/reaemb-s3rec \
    --earlier benchmarks/results/reaemb_downstream_until_4552e59.md > "$OUT/reaemb_downstream.md"
cmp "$OUT/reaemb_downstream.md" docs/tables/reaemb_downstream.md && echo "reaemb table byte-identical"
