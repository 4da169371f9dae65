"""Two cheap probes behind the issue-31 cost estimates, without preparing a big dataset:

* ``step``: seconds (wall and CPU) of one SASRec sampled_ce training step (batch x max_len, Adam) against the catalogue
  size: past ~100k items the dense gradient and Adam update of the whole item table dominate a step;
* ``eval``: peak RSS and seconds of full-ranking evaluation (history masked, breakdowns) of a few hundred users at a
  given catalogue size, with the chunking bench_scale uses: the evaluation's working set alone (no split held).

Usage: python benchmarks/bench_scale_probes.py step [--items 10000,100000,1000000]
       python benchmarks/bench_scale_probes.py eval [--items 1000000] [--users 201]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scale_stages import eval_config, self_peak_mb

from semcollab.data.dataset import EvalSet
from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.models.sasrec import SASRec, SASRecConfig


def step_seconds(n_items: int, batch: int = 256, max_len: int = 50, neg: int = 512, repeats: int = 6) -> dict:
    """Median wall / CPU seconds of a training step (the first, warm-up, step left out)."""
    torch.manual_seed(0)
    model = SASRec(1000, n_items, SASRecConfig(max_len=max_len))
    model.set_loss("sampled_ce", neg)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    seqs = torch.randint(1, n_items + 1, (batch, max_len + 1))
    data = {"seqs": seqs[:, :-1], "targets": seqs[:, 1:]}
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        loss = model.loss(data)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"items": n_items, "wall_s": float(np.median(wall[1:])), "cpu_s": float(np.median(cpu[1:]))}


@torch.no_grad()
def eval_probe(n_items: int, n_users: int, history: int = 100) -> dict:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = SASRec(n_users, n_items, SASRecConfig()).eval()
    users = np.arange(n_users)
    ev = EvalSet(users, [rng.integers(1, n_items + 1, history) for _ in users],
                 [rng.integers(1, n_items + 1, 1) for _ in users])
    pop = np.bincount(rng.integers(1, n_items + 1, 5 * n_items), minlength=n_items + 1)
    cfg, how = eval_config(n_items, None, None)
    before = self_peak_mb()
    t, c = time.perf_counter(), time.process_time()
    evaluate_ranking(model, ev, n_items, pop, cfg, "cpu", breakdowns=True)
    return {"items": n_items, "users": n_users, "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
            "peak_rss_mb_before": before, "peak_rss_mb": self_peak_mb(), **how}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("probe", choices=("step", "eval"))
    ap.add_argument("--items", default=None)
    ap.add_argument("--users", type=int, default=201)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.probe == "step":
        for n in (a.items or "10000,100000,1000000").split(","):
            print(json.dumps(step_seconds(int(n))), flush=True)
    else:
        print(json.dumps(eval_probe(int(a.items or 1_000_000), a.users)))


if __name__ == "__main__":
    main()
