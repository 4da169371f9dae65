"""The CoLLM ML-1M CTR table of docs/results.md: baselines (chosen on validation AUC among the runs of
experiments/ctr_ml1m/baselines.py) on the full test split AND on the test subset the LM runs were scored on, then the
LM runs of experiments/ctr_ml1m/lm.sh.

    python experiments/ctr_ml1m/table.py [--baselines runs/ctr/baselines] [--lm runs/ctr/lm] [--test-rows 1024]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from semcollab.tasks.ctr import evaluate_ctr_run

# the run folders of experiments/ctr_ml1m/lm.sh, in table order, with what each row is
LM_ROWS = {
    "tallrec": "TALLRec (LoRA, text prompt only)",
    "collm": "CoLLM (MF -> MLP -> <User_ID>, <Item_ID>)",
    "sellarec-train-mf": "SeLLa-Rec, paper setting (MF tables trained in step 3)",
    "sellarec-train-mf-no-warm": "  same, no <Warm_ID>",
    "sellarec": "SeLLa-Rec, budget setting (MF frozen in step 3, identity-start <Warm_ID> map)",
    "sellarec-no-warm": "  ablation: no <Warm_ID>",
    "sellarec-no-align": "  ablation: no contrastive alignment (align_weight=0)",
    "sellarec-random-proj": "  ablation: projection not initialised from step 2",
}


def finished(folder: Path) -> list[Path]:
    return sorted(d for d in folder.glob("*/*") if (d / "metrics.json").exists())


def best(runs: list[Path], pick) -> Path:
    return max((r for r in runs if pick(r)), key=lambda r: json.loads((r / "metrics.json").read_text())["valid"]["all"]["auc"])


def row(name: str, res: dict, rows: str) -> str:
    def f(v):
        return "-" if v is None else f"{v:.4f}"

    a, w, c = res["all"], res["warm"], res["cold"]
    return (f"| {name} | {rows} | {f(a.get('auc'))} | {f(a.get('uauc'))} | {f(w.get('auc'))} | {f(w.get('uauc'))} | "
            f"{f(c.get('auc'))} | {f(c.get('uauc'))} | {f(a.get('logloss'))} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baselines", default="runs/ctr/baselines")
    ap.add_argument("--lm", default="runs/ctr/lm")
    ap.add_argument("--test-rows", type=int, default=1024)
    ap.add_argument("--out", default="docs/tables/ctr_ml1m.md")
    a = ap.parse_args()
    base = Path(a.baselines)

    def params(r):
        return yaml.safe_load((r / "config.yaml").read_text())["model_params"]

    chosen = {"MF (CoLLM's: no bias)": best(finished(base / "mf"), lambda r: not params(r).get("bias")),
              "MF + bias terms": best(finished(base / "mf"), lambda r: params(r).get("bias")),
              "SASRec-CTR": best(finished(base / "sasrec-ctr"), lambda r: True)}
    head = ["| model | test rows | AUC | UAUC | warm AUC | warm UAUC | cold AUC | cold UAUC | log-loss |",
            "|---|---|---|---|---|---|---|---|---|"]
    full, sub = [], []
    for name, run in chosen.items():
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        tag = f"{name} (lr {cfg['train']['lr']}, wd {cfg['train']['weight_decay']})"
        full.append(row(tag, json.loads((run / "metrics.json").read_text())["test"], "all 7,331"))
        sub.append(row(tag, evaluate_ctr_run(run, "test", max_rows=a.test_rows), f"{a.test_rows} (LM subset)"))
    lm = []
    order = {name: i for i, name in enumerate(LM_ROWS)}
    for run in sorted(finished(Path(a.lm)), key=lambda r: order.get(r.parent.name, len(order))):
        res = json.loads((run / "metrics.json").read_text())["test"]
        lm.append(row(LM_ROWS.get(run.parent.name, run.parent.name), res, f"{res['all']['n']} (LM subset)"))
    text = "\n".join(head + full + sub + lm) + "\n"
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
