#!/usr/bin/env bash
# Real-data check that training resumes exactly: one unbroken run; the same run SIGKILLed after KILL_AFTER
# seconds, then the same command again; the two saved runs must agree on every test metric and on the per-epoch
# history. Prints one JSON line; exit 1 if they differ.
#   scripts/resume_check.sh [OUT]                      # `semcollab train`, ML-100K SASRec (default)
#   TASK=ctr scripts/resume_check.sh runs/resume-ctr    # `semcollab ctr train`, CoLLM ML-1M SASRec-CTR
set -euo pipefail
OUT=${1:-runs/resume-check}
TASK=${TASK:-rank}; EPOCHS=${EPOCHS:-15}; KILL_AFTER=${KILL_AFTER:-45}
if [ -e "$OUT" ]; then echo "$OUT exists; give another folder (nothing is overwritten)" >&2; exit 2; fi
if [ "$TASK" = ctr ]; then
  CMD=(semcollab ctr train --model "${MODEL:-sasrec-ctr}")
  [ -n "${DATASET:-}" ] && CMD+=(--dataset "$DATASET")
else
  CMD=(semcollab train --model "${MODEL:-sasrec}" --dataset "${DATASET:-ml-100k}")
fi
ARGS=(--train.epochs="$EPOCHS" --train.patience=1000 --train.seed=1 --train.checkpoint_minutes=0
      --train.progress=false)
"${CMD[@]}" "${ARGS[@]}" --output_dir="$OUT/unbroken" > "$OUT.unbroken.log" 2>&1
set +e
timeout -s KILL "$KILL_AFTER" "${CMD[@]}" "${ARGS[@]}" --output_dir="$OUT/killed" > "$OUT.killed-1.log" 2>&1
rc=$?
set -e
[ "$rc" -eq 137 ] || { echo "the run was not killed (rc=$rc); lower KILL_AFTER" >&2; exit 1; }
"${CMD[@]}" "${ARGS[@]}" --output_dir="$OUT/killed" > "$OUT.killed-2.log" 2>&1
python - "$OUT" "$EPOCHS" "$TASK" <<'PY'
import json, re, sys
from pathlib import Path
out, epochs, task = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def run(d):
    (r,) = [p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")]
    m, meta = json.loads((r / "metrics.json").read_text()), json.loads((r / "run.json").read_text())
    hist = [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in meta["fit"]["history"]]
    return m["test"], hist, meta["fit"]
a, ha, fa = run(out / "unbroken")
b, hb, fb = run(out / "killed")
first = Path(f"{out}.killed-1.log").read_text()
done_before_kill = max((int(x) for x in re.findall(r"^epoch=(\d+) ", first, re.M)), default=0)
name, pick = ("test_auc", lambda t: t["all"]["auc"]) if task == "ctr" else ("test_ndcg@10", lambda t: t["overall"]["ndcg@10"])
print(json.dumps({"task": task, "epochs": epochs, "epochs_logged_before_kill": done_before_kill,
                  "resumed_from_epoch": fb["resumed_from_epoch"], "same_test_metrics": a == b,
                  "same_history": ha == hb, name: [pick(a), pick(b)],
                  "resume_left_behind": (out / "killed" / ".resume").exists()}))
sys.exit(0 if a == b and ha == hb and fb["resumed_from_epoch"] else 1)
PY
