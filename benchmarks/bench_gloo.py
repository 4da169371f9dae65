"""What gloo costs per training step: a ranking model's DDP step with and without the gradient all-reduce.

Run under torchrun on one machine (2 local ranks, 1 thread each):

    OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node=2 benchmarks/bench_gloo.py \
        --dataset s3rec:Beauty --model sasrec --steps 40 --out gloo.json

Each rank builds the model of ``semcollab train`` (same defaults) on the dataset's real training batches and times,
interleaved, ``--steps`` optimiser steps of its half of a ``--batch`` global batch:
  * ``sync``: DistributedDataParallel as ``semcollab train --nproc`` uses it (gradients all-reduced by gloo);
  * ``no_sync``: the same step under ``DDP.no_sync()`` (no all-reduce: what the step would cost for free);
  * ``static``: the same step on an identical copy of the model wrapped with ``find_unused_parameters=False``
    (what ``semcollab train --nproc`` gives up to train models that leave parameters out of a loss);
  * ``allreduce``: one ``all_reduce`` of a flat float32 tensor the size of all gradients (the exchange alone).
The difference sync - no_sync is what gloo adds to a step (with DDP's bucketing and overlap), sync - static what the
unused-parameter search costs; rank 0 writes the medians to ``--out`` with the CPU model, thread count and gradient
bytes."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist

from semcollab import distributed as ddp
from semcollab.config import DataConfig
from semcollab.data import load_split
from semcollab.models import build_model
from semcollab.runs.record import cpu_model
from semcollab.train.trainer import seed_everything


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="s3rec:Beauty")
    ap.add_argument("--model", default="sasrec")
    ap.add_argument("--batch", type=int, default=256, help="global batch (each rank trains on its half)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--out", default="gloo.json")
    args = ap.parse_args()
    if not ddp.setup():
        raise SystemExit("run me under torchrun with --nproc-per-node=2 or more (see the docstring)")
    with ddp.main_first():
        split = load_split(DataConfig(name=args.dataset))

    def built():
        seed_everything(0)
        m = build_model(args.model, {}, split)
        m.set_loss("auto", 1)
        return m.train()

    model, twin = built(), built()  # twin: the same weights, its own DDP (hooks) and optimiser
    rng = seed_everything(0)
    wrapped = ddp.wrap(model, torch.device("cpu"))
    static = ddp.wrap(twin, torch.device("cpu"), find_unused_parameters=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt_twin = torch.optim.Adam(twin.parameters(), lr=1e-3)
    builder = model.training_batches(split.train_sequences(), split.n_items, length_buckets=False)
    batches = []
    for b in builder.epoch(args.batch, rng, torch.device("cpu")):
        rows = ddp.shard_rows(len(next(iter(b.values()))))
        batches.append({k: v[rows] for k, v in b.items()})
        if len(batches) == args.steps:
            break
    n_grad = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flat = torch.zeros(n_grad)

    def step(batch, sync: bool, net=wrapped, optimiser=opt) -> float:
        dist.barrier()
        t = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        if sync:
            net(batch).backward()
        else:
            with net.no_sync():
                net(batch).backward()
        optimiser.step()
        return time.perf_counter() - t

    def allreduce() -> float:
        dist.barrier()
        t = time.perf_counter()
        dist.all_reduce(flat)
        return time.perf_counter() - t

    step(batches[0], True)  # warm-up: DDP builds its buckets on the first synchronised step
    step(batches[0], True, static, opt_twin)
    times = {"sync": [], "no_sync": [], "static": [], "allreduce": []}
    for b in batches:
        times["sync"].append(step(b, True))
        times["no_sync"].append(step(b, False))
        times["static"].append(step(b, True, static, opt_twin))
        times["allreduce"].append(allreduce())
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    # the slowest rank sets the pace: take each median's maximum over ranks
    t = torch.tensor([med["sync"], med["no_sync"], med["allreduce"], med["static"]], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if ddp.is_main():
        res = {"dataset": args.dataset, "model": args.model, "world_size": ddp.world_size(),
               "global_batch": args.batch, "steps": len(batches), "gradient_values": n_grad,
               "gradient_mb": round(n_grad * 4 / 2**20, 2),
               "median_ms": {"ddp_step": round(float(t[0]), 2), "step_without_allreduce": round(float(t[1]), 2),
                             "allreduce_alone": round(float(t[2]), 2),
                             "ddp_step_find_unused_false": round(float(t[3]), 2)},
               "gloo_share_of_step": round(float((t[0] - t[1]) / t[0]), 3),
               "find_unused_share_of_step": round(float((t[0] - t[3]) / t[0]), 3),
               "cpu": cpu_model(), "threads_per_rank": torch.get_num_threads(), "torch": torch.__version__}
        Path(args.out).write_text(json.dumps(res, indent=2))
        print(json.dumps(res, indent=2))
    ddp.close()


if __name__ == "__main__":
    main()
