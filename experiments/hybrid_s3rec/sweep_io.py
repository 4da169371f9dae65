"""What the scoring-time sweeps over trained runs (pop_adjust.py, head_mix.py) share: evaluating a run on the
validation and test splits, the NDCG@10 row they both record, and a loop over runs whose output file is rewritten
after each run, so a long sweep stopped part-way keeps every run that finished."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.runs.files import write_file_atomic

STAGES = ("valid", "test")
# row key suffix -> the evaluator's group
GROUPS = (("all", "overall"), ("tail", "tail"), ("short", "short_users"))


def evaluate_stages(net, split, pop, eval_cfg) -> dict:
    """The evaluator's metrics on the validation and test splits (full ranking, history masked)."""
    with torch.inference_mode():
        return {st: evaluate_ranking(net, split.eval_set(st), split.n_items, pop, eval_cfg) for st in STAGES}


def ndcg_row(metrics: dict, groups: tuple[tuple[str, str], ...] = GROUPS) -> dict:
    """``{"valid_all": ..., "test_tail": ...}``: NDCG@10 per stage and group (``groups``: (key suffix, the
    evaluator's group) pairs, in the row's order), from the evaluator's output or a run's metrics.json (one layout)."""
    return {f"{st}_{g}": float(metrics[st][key]["ndcg@10"]) for st in STAGES for g, key in groups}


def sweep_runs(runs: Iterable[Path], sweep_one: Callable[[Path], dict], out: Path | None) -> list[dict]:
    """``sweep_one(run)`` for each run; ``out`` (a JSON list) rewritten whole after each run, atomically, so a kill
    mid-write leaves the previous list rather than a broken file."""
    done = []
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
    for run in runs:
        done.append(sweep_one(run))
        if out:
            write_file_atomic(out, json.dumps(done, indent=1).encode())
    return done
