#!/usr/bin/env bash
# SASRec: one training epoch + one full test evaluation, semcollab vs RecBole, same data and machine.
# RecBole goes into its own venv (never a semcollab dependency). Writes benchmarks/results/sasrec_vs_recbole.json
set -euo pipefail
cd "$(dirname "$0")"
VENV=${RECBOLE_VENV:-/tmp/recbole-venv}
DATA=${BENCH_DATA:-/tmp/bench-data/bench-ml1m}
if [ ! -x "$VENV/bin/python" ]; then
  python -m venv "$VENV"
  "$VENV/bin/pip" install -q "torch==2.13.0" "numpy<2" scipy "pandas<2.2" tqdm colorlog==4.7.2 colorama==0.4.4 \
      scikit-learn pyyaml tensorboard thop tabulate plotly texttable psutil
  "$VENV/bin/pip" install -q --no-deps recbole==1.2.1   # its ray pin is only for hyper-parameter search
fi
[ -f "$DATA/$(basename "$DATA").inter" ] || python make_ml1m_sized.py "$DATA"
mkdir -p results
sem=$(python bench_semcollab.py "$DATA" | tail -1)
rb=$("$VENV/bin/python" bench_recbole.py "$DATA" | tail -1)
python - "$sem" "$rb" <<'PY'
import json, platform, sys
s, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {"semcollab": s, "recbole": r, "machine": platform.processor() or platform.machine(),
       "epoch_speedup": r["epoch_seconds"] / s["epoch_seconds"], "eval_speedup": r["eval_seconds"] / s["eval_seconds"]}
open("results/sasrec_vs_recbole.json", "w").write(json.dumps(out, indent=2))
print(json.dumps(out, indent=2))
PY
