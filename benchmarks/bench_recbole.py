"""Time one SASRec training epoch and one full-ranking test evaluation with RecBole.

Runs inside a separate venv that has recbole (see run_sasrec_benchmark.sh); semcollab is not imported.
RecBole trains on every prefix of every sequence as its own sample (about 1M length-50 samples for
ML-1M), so on a 2-core CPU one epoch takes over an hour: by default the first ``--max-batches``
batches are timed and the epoch time is extrapolated linearly (said so in the output)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


class FirstBatches:
    """The first ``n`` batches of a RecBole train loader, with the attributes its trainer reads."""

    def __init__(self, loader, n: int):
        self.loader, self.n = loader, n
        self.shuffle, self.sampler = loader.shuffle, getattr(loader, "sampler", None)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i == self.n:
                return
            yield batch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--max-batches", type=int, default=40, help="0 = time the whole epoch")
    a = ap.parse_args()
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    cfg = {
        "data_path": str(a.data_dir.parent), "dataset": a.data_dir.name,
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 50, "hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2,
        "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "loss_type": "CE", "train_neg_sample_args": None,
        "train_batch_size": a.batch_size, "eval_batch_size": 4096, "epochs": 1, "eval_step": 10**9,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "show_progress": False,
        "use_gpu": False, "device": "cpu", "checkpoint_dir": "/tmp/recbole-ckpt", "save_dataset": False,
        "log_wandb": False, "state": "WARNING",
    }
    config = Config(model="SASRec", config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = SASRec(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)
    n_batches = len(train_data)
    timed = n_batches if a.max_batches <= 0 else min(a.max_batches, n_batches)
    t0 = time.perf_counter()
    trainer._train_epoch(FirstBatches(train_data, timed), epoch_idx=0, show_progress=False)
    epoch_s = (time.perf_counter() - t0) * n_batches / timed
    t0 = time.perf_counter()
    res = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    eval_s = time.perf_counter() - t0
    print(json.dumps({"tool": "recbole", "epoch_seconds": epoch_s, "epoch_batches": n_batches,
                      "epoch_batches_timed": timed, "epoch_extrapolated": timed < n_batches, "eval_seconds": eval_s,
                      "train_samples_per_epoch": len(train_data.dataset), "ndcg@10": float(res["ndcg@10"]),
                      "threads": torch.get_num_threads(), "batch_size": a.batch_size}))


if __name__ == "__main__":
    main()
