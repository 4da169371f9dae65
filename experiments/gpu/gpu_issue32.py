"""Issue 32, item 4: the CoLLM ML-1M LM CTR rows on one CUDA GPU in bf16, under one total time cap.

    python experiments/gpu/gpu_issue32.py --out runs/gpu_issue32 [--minutes 10] [--lm gemma3-270m]

TALLRec, CoLLM, SeLLa-Rec (the paper's setting, and the setting that trains: MF frozen, identity warm map) and
SAILRec (default schedule), gemma3-270m, ``model_params.dtype=bfloat16``, all training / validation / test rows,
history 10 (as CoLLM uses). The runs go one after another through ``semcollab.tasks.ctr.run_ctr``; each gets
the time left of the total cap as ``model_params.max_minutes`` (per training step), so a run that does not
finish stops at its checkpoint and the same command continues it. Writes ``<out>/gpu_issue32.json`` (AUC /
UAUC on all, warm and cold test rows per model, seconds, the GPU's name). Without CUDA it exits with status 2
and "no GPU: not run"."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

RUNS = [  # (row name, model, extra overrides)
    ("tallrec", "tallrec", []),
    ("collm", "collm", []),
    ("sellarec-paper", "sellarec", []),
    ("sellarec", "sellarec", ["model_params.train_mf=false", "model_params.warm_init=identity"]),
    ("sailrec", "sailrec", []),
]


def _metrics(part: dict) -> dict:
    return {group: {k: part[group].get(k) for k in ("auc", "uauc", "logloss", "n") if k in part[group]}
            for group in ("all", "warm", "cold") if group in part}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/gpu_issue32")
    ap.add_argument("--minutes", type=float, default=10.0, help="total time cap, all runs together")
    ap.add_argument("--lm", default="gemma3-270m")
    ap.add_argument("--history", type=int, default=10)
    ap.add_argument("--only", default=None, help="comma-separated row names (default: all)")
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no GPU: not run (experiments/gpu/gpu_issue32.py needs one CUDA device)", file=sys.stderr)
        return 2
    from semcollab.errors import TrainingIncomplete
    from semcollab.tasks.ctr import run_ctr

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + 60 * a.minutes
    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "lm": a.lm, "dtype": "bfloat16",
              "history_len": a.history, "minutes_cap": a.minutes, "rows": {}}
    wanted = set(a.only.split(",")) if a.only else None
    for name, model, extra in RUNS:
        if wanted is not None and name not in wanted:
            continue
        left = (deadline - time.monotonic()) / 60
        if left <= 0.1:
            report["rows"][name] = {"status": "not started (time cap)"}
            continue
        overrides = [f"data.history_len={a.history}", f"model_params.lm={a.lm}", "model_params.dtype=bfloat16",
                     f"model_params.max_minutes={left:.2f}", "train.device=cuda", "train.progress=false",
                     f"output_dir={out / name}", *extra]
        t0 = time.monotonic()
        try:
            res = run_ctr(model, "collm-ml-1m", overrides=overrides, log=print)
        except TrainingIncomplete as exc:
            report["rows"][name] = {"status": "incomplete", "message": str(exc),
                                    "seconds": round(time.monotonic() - t0, 1)}
        else:
            report["rows"][name] = {"status": "finished", "seconds": round(time.monotonic() - t0, 1),
                                    "run_dir": str(res.run_dir), "valid": _metrics(res.metrics["valid"]),
                                    "test": _metrics(res.metrics["test"]),
                                    "fit_dtype": getattr(res.fit, "dtype", None)}
        print(json.dumps({name: report["rows"][name]}), flush=True)
    report["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    tmp = out / "gpu_issue32.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out / "gpu_issue32.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
