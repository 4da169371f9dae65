"""Time one SASRec training epoch and one full-ranking test evaluation with semcollab."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from semcollab.config import DataConfig, EvalConfig, TrainConfig
from semcollab.data import load_split
from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.models import build_model
from semcollab.train.trainer import fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    a = ap.parse_args()
    split = load_split(DataConfig(name=f"atomic:{a.data_dir.name}", path=str(a.data_dir), cache=False, user_k=1, item_k=1))
    model = build_model("sasrec", {"hidden": 64, "layers": 2, "heads": 2, "max_len": 50, "dropout": 0.5,
                                   "attn_dropout": 0.5}, split)
    ev = EvalConfig(ks=[10])
    # eval_every beyond epochs: no validation pass inside the timed epoch
    r = fit(model, split, TrainConfig(epochs=a.epochs, batch_size=a.batch_size, progress=False,
                                      eval_every=10**9, patience=10**9), ev, log=None)
    test = split.eval_set("test")
    t0 = time.perf_counter()
    res = evaluate_ranking(model, test, split.n_items, split.item_popularity(), ev, breakdowns=False)
    eval_s = time.perf_counter() - t0
    targets = int(sum(max(len(s) - 1, 0) for s in split.train_sequences()))
    print(json.dumps({"tool": "semcollab", "epoch_seconds": r.seconds_per_epoch, "eval_seconds": eval_s,
                      "train_targets_per_epoch": targets, "ndcg@10": res["overall"]["ndcg@10"],
                      "threads": torch.get_num_threads(), "batch_size": a.batch_size}))


if __name__ == "__main__":
    main()
