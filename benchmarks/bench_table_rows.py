"""Training-step cost of an LM item table: the adapter over the whole catalogue vs only the rows a sampled
loss reads (the batch's items and negatives), next to the ID-embedding model, in one process.

    OMP_NUM_THREADS=1 python benchmarks/bench_table_rows.py --dataset s3rec:Beauty --model sasrec \
        --table runs/reaemb-s3rec/Beauty-smollm2-135m/tables/stage1.npy --batches 40

The settings of configs/s3rec_converge.yaml (hidden 64, batch 256, sampled_ce over 1,024 shared negatives,
length buckets). The three variants take turns batch by batch, so a load change on the machine hits all
three alike; forward + backward + Adam step are timed. Prints JSON: seconds per step and the ratios."""

import argparse
import json
import time

import numpy as np
import torch

from semcollab.config import DataConfig, from_dict
from semcollab.data import load_split
from semcollab.data.batches import BatchBuilder
from semcollab.models import build_model
from semcollab.models.base import draw_negatives, next_item_loss

ap = argparse.ArgumentParser()
ap.add_argument("--dataset", default="s3rec:Beauty")
ap.add_argument("--model", default="sasrec", choices=["sasrec", "gru4rec", "bert4rec"])
ap.add_argument("--table", required=True)
ap.add_argument("--batches", type=int, default=40)
ap.add_argument("--batch_size", type=int, default=256)
ap.add_argument("--neg_samples", type=int, default=1024)
args = ap.parse_args()

split = load_split(from_dict(DataConfig, {"name": args.dataset}))
hidden = {"hidden": 64} if args.model == "gru4rec" else {"hidden": 64, "layers": 2, "heads": 2, "max_len": 50}
variants = {}
for name, extra in [("id", {}), ("table_all_rows", {"item_table": args.table}),
                    ("table_batch_rows", {"item_table": args.table})]:
    torch.manual_seed(0)
    m = build_model(args.model, {**hidden, **extra}, split).train()
    m.set_loss("sampled_ce", args.neg_samples)
    variants[name] = (m, torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3))


def all_rows_loss(m, batch):
    """The loss as it was before the row subset: the adapter over every row, the same negatives' law."""
    neg = draw_negatives("sampled_ce", batch["targets"], m.n_items, args.neg_samples)
    table = m.item_table()
    inputs = table if args.model == "gru4rec" else m.input_table(table)
    return next_item_loss(m.forward(batch["seqs"], inputs), batch["targets"], table, "sampled_ce",
                          args.neg_samples, negatives=neg)


ref = variants["id"][0]  # every variant reads the same batches
builder = BatchBuilder(ref.batch_kind, split.train_sequences(), split.n_items, 50, getattr(ref.cfg, "mask_prob", 0.2),
                       getattr(ref, "mask_token", None), length_buckets=True)
seconds = dict.fromkeys(variants, 0.0)
rows_read = []
for i, batch in enumerate(builder.epoch(args.batch_size, np.random.default_rng(0), "cpu")):
    if i >= args.batches + 2:
        break
    for name, (m, opt) in variants.items():
        t = time.perf_counter()
        loss = all_rows_loss(m, batch) if name == "table_all_rows" else m.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:  # two warm-up steps
            seconds[name] += time.perf_counter() - t
    rows_read.append(len(torch.unique(torch.cat([batch["seqs"].reshape(-1), batch["targets"].reshape(-1)]))))
out = {"dataset": args.dataset, "model": args.model, "n_items": split.n_items, "batches": args.batches,
       "threads": torch.get_num_threads(),
       "mean_batch_items": round(float(np.mean(rows_read)), 1),
       **{f"seconds_per_step_{k}": round(v / args.batches, 4) for k, v in seconds.items()}}
out["speedup_batch_rows_vs_all_rows"] = round(seconds["table_all_rows"] / seconds["table_batch_rows"], 2)
out["table_all_rows_vs_id"] = round(seconds["table_all_rows"] / seconds["id"], 2)
out["table_batch_rows_vs_id"] = round(seconds["table_batch_rows"] / seconds["id"], 2)
print(json.dumps(out))
