#!/usr/bin/env bash
# The CoLLM ML-1M CTR table (docs/results.md section 10) end to end, the three steps of its commands in order:
#   1. baselines.py  MF and SASRec-CTR grids (baselines.yaml) on the whole split, chosen on validation AUC
#   2. lm.sh         the LM rows on a CPU budget (env: OUT, LM, HIST, TRAIN_ROWS, ...; see lm.sh)
#   3. table.py      baselines + LM rows, one table (docs/tables/ctr_ml1m.md)
# The SAILRec rows and their attention diagnostic are a later study on the same budget: sailrec.sh.
# Each step skips what is finished, so rerunning continues.
set -euo pipefail
here=$(dirname "$0")
python "$here/baselines.py"
OUT=${OUT:-runs/ctr/lm} LM=${LM:-gemma3-270m} "$here/lm.sh"
python "$here/table.py" --lm "${OUT:-runs/ctr/lm}"
