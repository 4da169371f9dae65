"""The timed stages of the issue-31 cost study, one per process (benchmarks/bench_scale.py starts each in a fresh
child, so the child's peak RSS is that stage's alone; experiments/gpu/gpu_issue31.py runs ``epoch`` under torchrun).

* ``prepare``: what ``semcollab data prepare table --config FILE.yaml`` does (``load_config`` + ``load_split``:
  read, check, 5-core filter, remap, leave-one-out split, write the Parquet cache);
* ``epoch``: one SASRec epoch (train.loss=sampled_ce) with the ranking trainer's own epoch loop and batches, on the
  split read back from that cache; validation is switched off for the timed epoch (it is not part of an epoch's
  cost), and ``--max-minutes`` stops the epoch early: the epoch time is then *extrapolated* from the steps done;
* ``eval``: full-ranking evaluation (history masked, head/tail and short/long breakdowns, as a run's test
  evaluation) of ``--eval-users`` test users drawn at random (seeded) from the test set, with a seeded untrained
  SASRec (the cost does not depend on the weights); users are evaluated in blocks so that ``--max-minutes`` can
  stop it, the time then *extrapolated* to all the requested users;
* ``floor``: imports only, the memory every stage pays before it reads anything.

Usage: python benchmarks/scale_stages.py STAGE --data FILE.parquet --cache-dir DIR --result OUT.json [options]
The result is one JSON object (written atomically; under torchrun by rank 0 only)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from semcollab import distributed as ddp
from semcollab.config import DataConfig, EvalConfig, TrainConfig, resolve_device
from semcollab.data import load_split
from semcollab.data.dataset import EvalSet
from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.models.sasrec import SASRec, SASRecConfig
from semcollab.train.loop import train_epochs
from semcollab.train.trainer import RankingTask, seed_everything

STAGES = ("floor", "prepare", "epoch", "eval")
EVAL_SCORE_BYTES = 256 << 20  # without eval.item_chunk_size: users per chunk so a chunk's float32 scores fit this


def self_peak_mb() -> float:
    """This process's peak resident memory in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20) if sys.platform == "darwin" else peak / 1024, 1)


def data_config(args) -> DataConfig:
    return DataConfig(name="table", path=str(Path(args.data).resolve()), cache_dir=str(Path(args.cache_dir)))


def cached_split(args):
    """The split from the cache the prepare stage wrote; ``(split, seconds, from_cache)``."""
    said: list[str] = []
    t0 = time.perf_counter()
    split = load_split(data_config(args), log=said.append)
    return split, time.perf_counter() - t0, any("using cached prepared data" in s for s in said)


def run_prepare(args) -> dict:
    """``data prepare``; ``from_cache`` says whether the cache already held it (bench_scale empties it first)."""
    c0 = time.process_time()
    split, seconds, from_cache = cached_split(args)
    return {"status": "done", "seconds": seconds, "cpu_seconds": time.process_time() - c0, "from_cache": from_cache,
            "stats": split.stats}


class CappedEpoch(RankingTask):
    """The ranking trainer's epoch, without validation, stopping after ``cap_seconds`` (decided by rank 0 every
    ``check_every`` steps, so every rank stops at the same step)."""

    def __init__(self, *a, cap_seconds: float | None = None, check_every: int = 20, **kw):
        super().__init__(*a, **kw)
        self.cap_seconds, self.check_every, self.steps = cap_seconds, check_every, 0

    def batches(self, epoch, rng):
        t0 = time.perf_counter()
        for batch in super().batches(epoch, rng):
            if self.cap_seconds is not None and self.steps and self.steps % self.check_every == 0:
                if ddp.from_main(time.perf_counter() - t0 > self.cap_seconds):
                    return
            self.steps += 1
            yield batch

    def validate(self, epoch):
        return None


def run_epoch(args) -> dict:
    ddp.setup()
    device = resolve_device(args.device)
    split, load_s, from_cache = cached_split(args)
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, loss="sampled_ce", neg_samples=args.neg_samples,
                      progress=False, device=args.device, seed=args.seed, checkpoint_minutes=None,
                      bf16=args.bf16)
    rng = seed_everything(cfg.seed)
    model = SASRec.from_split(split, SASRecConfig(max_len=args.max_len)).to(device)
    model.set_loss(cfg.loss, cfg.neg_samples)
    t0 = time.perf_counter()
    cap = args.max_minutes * 60 if args.max_minutes else None
    task = CappedEpoch(model, split, cfg, EvalConfig(), device, cap_seconds=cap)
    setup_s = time.perf_counter() - t0
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    c0 = time.process_time()
    fit = train_epochs(task, model, opt, rng, cfg, log=None)
    if device.type == "cuda":
        torch.cuda.synchronize()
    cpu_s = time.process_time() - c0
    rec = fit.history[-1]
    n_batches, steps = task.n_batches(), task.steps
    out = {"seconds": rec["epoch_seconds"], "cpu_seconds": cpu_s, "loss": rec["loss"], "steps": steps,
           "n_batches": n_batches,
           "windows": len(task.builder), "split_load_seconds": load_s, "split_from_cache": from_cache,
           "setup_seconds": setup_s, "parameters": sum(p.numel() for p in model.parameters()),
           "world_size": ddp.world_size(), "device": str(device), "bf16": args.bf16}
    if steps < n_batches:
        out.update(status="extrapolated", measured_seconds=rec["epoch_seconds"],
                   seconds=rec["epoch_seconds"] * n_batches / max(steps, 1),
                   note=f"stopped at the {args.max_minutes}-minute cap after {steps} of {n_batches} steps; seconds "
                        "is extrapolated linearly from those steps")
    else:
        out["status"] = "done"
    if device.type == "cuda":
        out["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / (1 << 20), 1)
    return out


def eval_users(split, n_users: int, seed: int) -> EvalSet:
    """The test eval set of ``n_users`` test users drawn at random (seeded), in user order; the protocol is the
    run's own (their full histories, full ranking over every item). Only those users' rows are gathered into
    histories, so the stage's memory is the evaluation's, not a copy of every user's events."""
    users = np.unique(split.test["user"].to_numpy())
    pick = np.sort(np.random.default_rng(seed).choice(users, min(n_users, len(users)), replace=False))
    parts = {p: getattr(split, p)[getattr(split, p)["user"].isin(pick)] for p in ("train", "valid", "test")}
    return dataclasses.replace(split, **parts).eval_set("test")


def eval_config(n_items: int, item_chunk_size: int | None, chunk_users: int | None) -> tuple[EvalConfig, dict]:
    """The evaluation settings and how memory is bounded: ``eval.item_chunk_size`` where this version has it,
    else (or with ``chunk_users``) fewer users per chunk, the same metrics either way."""
    ecfg = EvalConfig()
    has_items_field = "item_chunk_size" in {f.name for f in dataclasses.fields(EvalConfig)}
    how: dict = {"eval_has_item_chunk_size": has_items_field}
    if has_items_field and item_chunk_size is not None:
        ecfg.item_chunk_size = item_chunk_size
    if chunk_users is not None:
        ecfg.chunk_size = chunk_users
    elif not has_items_field:
        ecfg.chunk_size = max(1, min(ecfg.chunk_size, EVAL_SCORE_BYTES // (4 * (n_items + 1))))
    how["eval.chunk_size"] = ecfg.chunk_size
    if has_items_field:
        how["eval.item_chunk_size"] = ecfg.item_chunk_size
    elif item_chunk_size is not None:
        how["note"] = "eval.item_chunk_size is not in this version's EvalConfig: ignored"
    return ecfg, how


@torch.no_grad()
def run_eval(args) -> dict:
    device = resolve_device(args.device)
    split, load_s, from_cache = cached_split(args)
    t0 = time.perf_counter()
    ev = eval_users(split, args.eval_users, args.seed)
    pop = split.item_popularity()
    select_s = time.perf_counter() - t0
    torch.manual_seed(args.seed)
    model = SASRec.from_split(split, SASRecConfig(max_len=args.max_len)).to(device).eval()
    ecfg, how = eval_config(split.n_items, args.item_chunk_size, args.eval_chunk_users)
    cap = args.max_minutes * 60 if args.max_minutes else None
    block = max(args.eval_block_users, ecfg.chunk_size)
    t0, c0 = time.perf_counter(), time.process_time()
    done, hits = 0, 0.0
    for start in range(0, len(ev), block):
        idx = np.arange(start, min(start + block, len(ev)))
        part = EvalSet(ev.users[idx], [ev.histories[i] for i in idx], [ev.targets[i] for i in idx])
        res = evaluate_ranking(model, part, split.n_items, pop, ecfg, device, breakdowns=True)
        done += len(part)
        hits += res["overall"]["hr@10"] * len(part)
        if cap is not None and time.perf_counter() - t0 > cap and done < len(ev):
            break
    seconds = time.perf_counter() - t0
    out = {"seconds": seconds, "cpu_seconds": time.process_time() - c0, "users": len(ev), "users_evaluated": done, "items": split.n_items,
           "hr@10_untrained": hits / max(done, 1), "block_users": block, "select_seconds": select_s,
           "split_load_seconds": load_s, "split_from_cache": from_cache, "device": str(device), **how}
    if done < len(ev):
        out.update(status="extrapolated", measured_seconds=seconds, seconds=seconds * len(ev) / done,
                   note=f"stopped at the {args.max_minutes}-minute cap after {done} of {len(ev)} users; seconds is "
                        "extrapolated linearly to all of them")
    else:
        out["status"] = "done"
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=STAGES)
    ap.add_argument("--data", help="the synthetic Parquet file")
    ap.add_argument("--cache-dir", help="the prepared-data cache folder of this shape")
    ap.add_argument("--result", required=True, help="where the stage's JSON goes")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--neg-samples", type=int, default=512)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--eval-users", type=int, default=10_000)
    ap.add_argument("--eval-block-users", type=int, default=2_000)
    ap.add_argument("--eval-chunk-users", type=int, default=None)
    ap.add_argument("--item-chunk-size", type=int, default=None)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    run = {"floor": lambda a: {"status": "done", "seconds": 0.0}, "prepare": run_prepare, "epoch": run_epoch,
           "eval": run_eval}[args.stage]
    out = run(args)
    out.update(stage=args.stage, process_seconds=time.perf_counter() - t0, self_peak_rss_mb=self_peak_mb(),
               torch_threads=torch.get_num_threads())
    if ddp.is_main():
        path = Path(args.result)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(out, indent=1))
        os.replace(tmp, path)
    ddp.close()


if __name__ == "__main__":
    main()
