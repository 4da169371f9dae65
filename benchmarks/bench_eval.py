"""Full-ranking evaluation speed of saved runs: length-sorted chunks (+ SAERec's last-position intents) vs the
former path (eval-set order, every chunk padded to its longest history, intents at every position).

Usage: python benchmarks/bench_eval.py RUN_DIR [RUN_DIR ...] [--stage valid] [--repeats 2] [--json OUT]
Both modes run in this process, one after the other, best of ``repeats``; the metrics must agree."""

import argparse
import json
import time

import torch

from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.tasks.ranking import load_ranking_run


def timed(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_one(run: str, stage: str, repeats: int) -> dict:
    cfg, net, split = load_ranking_run(run)
    ev, pop = split.eval_set(stage), split.item_popularity()

    def evaluate():
        return evaluate_ranking(net, ev, split.n_items, pop, cfg.eval, "cpu", breakdowns=False)

    t_new, new = timed(evaluate, repeats)
    net.padding_invariant = False  # instance attribute: this model only
    if hasattr(net, "_branches"):  # SAERec: intents at every position, as before
        net.score = lambda users, seqs: net._branches(seqs)[0][:, -1] @ net.item_table().T
    t_old, old = timed(evaluate, repeats)
    diff = max(abs(new["overall"][k] - old["overall"][k]) for k in new["overall"])
    row = {"run": run, "model": cfg.model, "stage": stage, "users": len(ev), "threads": torch.get_num_threads(),
           "seconds_former": round(t_old, 2), "seconds_now": round(t_new, 2), "speedup": round(t_old / t_new, 2),
           "max_metric_diff": diff}
    print(row)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--stage", default="valid")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    rows = [bench_one(run, a.stage, a.repeats) for run in a.runs]
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
