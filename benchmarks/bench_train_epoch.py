"""Seconds of one training epoch of a ranking model (no validation), one thread, on a prepared dataset; with
``--validate``, the seconds of one full-ranking validation (what the loop runs after every epoch) and of one test
evaluation with breakdowns, after that epoch.

The same batches (``--seed``) and the same initial weights each call, so two code versions or two settings are
compared by running this twice, interleaved, on the same machine (``PYTHONPATH=<other clone>/src`` for another
version). Prints the epoch's seconds and its mean loss (the loss must agree between versions that claim the same math):

    python benchmarks/bench_train_epoch.py --model hybrid --dataset s3rec:Beauty \\
        --set model_params.item_view=null_space --set model_params.similarity=cosine \\
        --set model_params.hidden=128 --set model_params.null_dim=64 [--set train.bf16=true]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import numpy as np
import torch

import semcollab
from semcollab.data import load_split
from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.models import build_model
from semcollab.tasks.ranking import _as_config
from semcollab.train.trainer import RankingTask, seed_everything


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="sasrec")
    ap.add_argument("--dataset", default="s3rec:Beauty")
    ap.add_argument("--config", default="configs/s3rec_converge.yaml")
    ap.add_argument("--set", action="append", default=[], help="a config override key=value (repeatable)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="also print torch.profiler's top operators (self CPU)")
    ap.add_argument("--validate", action="store_true",
                    help="also time one validation and one test evaluation with breakdowns (their metrics printed)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = _as_config(args.config, args.model, args.dataset, args.set)
    split = load_split(cfg.data)
    seed_everything(args.seed)
    net = build_model(cfg.model, cfg.model_params, split)
    net.set_loss(cfg.train.loss, cfg.train.neg_samples)
    task = RankingTask(net, split, cfg.train, cfg.eval, torch.device("cpu"))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.train.lr)
    net.train()
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if args.profile else None
    t0, total, n = time.perf_counter(), 0.0, 0
    with profiler or contextlib.nullcontext():
        for batch in task.batches(1, np.random.default_rng(args.seed)):
            loss, _ = task.batch_loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + float(loss), n + 1
    if profiler is not None:
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    out = {"semcollab": semcollab.__file__, "model": cfg.model, "dataset": args.dataset, "overrides": args.set,
           "threads": args.threads, "batches": n, "epoch_seconds": round(time.perf_counter() - t0, 2),
           "mean_loss": round(total / max(n, 1), 6)}
    if args.validate:  # the same trained weights in every version compared: the metrics must agree to the bit
        t0 = time.perf_counter()
        out["valid_" + cfg.train.metric] = task.validate(1)
        out["validate_seconds"] = float(f"{time.perf_counter() - t0:.3g}")  # 3 significant digits: tiny data too
        t0 = time.perf_counter()
        test = evaluate_ranking(net, split.eval_set("test"), split.n_items, split.item_popularity(), cfg.eval)
        out["test_breakdowns_seconds"] = float(f"{time.perf_counter() - t0:.3g}")
        out["test"] = {g: test[g].get(cfg.train.metric) for g in ("overall", "head", "tail", "short_users")}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
