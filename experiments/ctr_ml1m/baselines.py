"""MF and SASRec-CTR on the CoLLM ML-1M split: a small grid per model, chosen on validation AUC.

    python experiments/ctr_ml1m/baselines.py [--out runs/ctr/baselines] [--table docs/tables/ctr_baselines.md]

The grids and the overrides every run gets: experiments/ctr_ml1m/baselines.yaml. Every grid point is a saved run (`semcollab ctr train` with the same overrides); a rerun skips grid
points whose run folder already exists. Whole training set, whole valid and test parts."""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import yaml

from semcollab.tasks.ctr import run_ctr

STUDY = yaml.safe_load((Path(__file__).with_name("baselines.yaml")).read_text(encoding="utf-8"))
GRID: dict[str, dict[str, list]] = STUDY["grid"]
COMMON: list[str] = STUDY["common"]


def overrides(model: str, point: dict) -> list[str]:
    common = [c for c in COMMON if model == "mf" or not c.startswith("model_params.dim")]
    return common + [f"{k}={v}" for k, v in point.items()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/ctr/baselines")
    ap.add_argument("--table", default="docs/tables/ctr_baselines.md")
    ap.add_argument("--models", default="mf,sasrec-ctr")
    args = ap.parse_args()
    rows = []
    for model in args.models.split(","):
        keys = list(GRID[model])
        best = None
        for values in itertools.product(*(GRID[model][k] for k in keys)):
            point = dict(zip(keys, values))
            tag = "-".join(f"{k.split('.')[-1]}{v}" for k, v in point.items())
            out = Path(args.out) / model / tag
            done = [d for d in out.glob("*") if (d / "metrics.json").exists()] if out.exists() else []
            if done:
                metrics = json.loads((done[0] / "metrics.json").read_text())
            else:
                res = run_ctr(model, "collm-ml-1m", overrides=overrides(model, point) + [f"output_dir={out}"], log=None)
                metrics = {"valid": res.valid, "test": res.test}
            v = metrics["valid"]["all"]["auc"]
            print(f"{model} {tag}: valid AUC {v:.4f} test AUC {metrics['test']['all']['auc']:.4f}", flush=True)
            if best is None or v > best[0]:
                best = (v, tag, metrics)
        v, tag, m = best
        t = m["test"]
        rows.append(f"| {model} | {tag} | {v:.4f} | {t['all']['auc']:.4f} | {t['all']['uauc']:.4f} | "
                    f"{t['warm']['auc']:.4f} | {t['warm']['uauc']:.4f} | {t['cold']['auc']:.4f} | "
                    f"{t['cold']['uauc']:.4f} |")
    table = ["| model | chosen setting (valid AUC) | valid AUC | test AUC | test UAUC | warm AUC | warm UAUC | "
             "cold AUC | cold UAUC |", "|---|---|---|---|---|---|---|---|---|", *rows]
    Path(args.table).parent.mkdir(parents=True, exist_ok=True)
    Path(args.table).write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
