"""How cost grows with data (issue 31): time and peak memory of ``data prepare``, one SASRec epoch (sampled
softmax) and full-ranking evaluation of 10,000 users, single process, on synthetic data of ML-20M to Amazon-Books
shape made locally by benchmarks/make_synthetic.py.

Each stage runs in a fresh child process (benchmarks/scale_stages.py), so its peak RSS (the child's own
``ru_maxrss``, read with ``os.wait4``) is that stage's alone; ``floor`` is what a child holds after its imports. One
JSON holds everything and is written after every stage: a stage already in it is skipped, so the same command
continues where a killed one stopped (``--redo`` measures the selected stages again; a failed stage is retried).
``--max-minutes`` caps each stage: the epoch and the evaluation then stop early and their time is *extrapolated*
(marked so in the JSON and the plot); ``prepare`` and anything else past 1.5x the cap (+ 2 min) is killed and
recorded as ``capped`` with only a lower bound. Plot: benchmarks/plot_scale.py.

Usage: python benchmarks/bench_scale.py [--shapes 1m,10m,30m] [--out JSON] [--work DIR] [--max-minutes 30]
       (a shape is a name below or INTERACTIONS:ITEMS:USERS, e.g. 20000:500:200)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pandas

from semcollab.hub.wheels import default_cache_dir
from semcollab.runs.record import cpu_model

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STAGES = ("prepare", "epoch", "eval")
# name -> (interactions, items, users). ~100 events per user, like ML-20M (~145) and longer than Amazon-Books
# (~10-20): an epoch's cost follows the events (each is a target once), the user count mostly the per-user
# Python work of prepare and of building histories, so this keeps one epoch affordable on 2 cores.
SHAPES = {"1m": (1_000_000, 10_000, 10_000), "10m": (10_000_000, 100_000, 100_000),
          "30m": (30_000_000, 1_000_000, 300_000)}
SETTINGS = ("batch_size", "neg_samples", "max_len", "eval_users", "threads", "seed", "item_chunk_size",
            "eval_chunk_users")


def shape_of(name: str) -> tuple[int, int, int]:
    if name in SHAPES:
        return SHAPES[name]
    try:
        n, items, users = (int(x) for x in name.split(":"))
    except ValueError:
        raise SystemExit(f"--shapes: {name!r} is neither one of {', '.join(SHAPES)} nor INTERACTIONS:ITEMS:USERS") from None
    return n, items, users




def machine_info(threads: int) -> dict:
    import torch  # heavy: only where the machine is described

    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "numpy": numpy.__version__, "pandas": pandas.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def child_env(threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    src = REPO / "src"
    if src.is_dir():  # this checkout's semcollab, whatever is installed
        env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_child(cmd: list[str], log: Path, timeout_s: float | None, threads: int) -> dict:
    """Run ``cmd`` in its own process group; its wall seconds, exit code, peak RSS (MB) and whether it was killed
    at ``timeout_s``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=child_env(threads),
                                start_new_session=True)
        killed = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if timeout_s is not None and time.perf_counter() - t0 > timeout_s and not killed:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    peak = usage.ru_maxrss / (1 << 20) if sys.platform == "darwin" else usage.ru_maxrss / 1024
    return {"wall_seconds": round(time.perf_counter() - t0, 2), "exit_code": proc.returncode,
            "process_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_mb": round(peak, 1),
            "killed_at_cap": killed}


def stage_command(stage: str, data: Path, cache: Path, result: Path, a) -> list[str]:
    cmd = [sys.executable, str(HERE / "scale_stages.py"), stage, "--data", str(data), "--cache-dir", str(cache),
           "--result", str(result), "--batch-size", str(a.batch_size), "--neg-samples", str(a.neg_samples),
           "--max-len", str(a.max_len), "--eval-users", str(a.eval_users), "--threads", str(a.threads),
           "--seed", str(a.seed), "--max-minutes", str(a.max_minutes)]
    if a.item_chunk_size is not None:
        cmd += ["--item-chunk-size", str(a.item_chunk_size)]
    if a.eval_chunk_users is not None:
        cmd += ["--eval-chunk-users", str(a.eval_chunk_users)]
    return cmd


def measure(stage: str, data: Path, cache: Path, work: Path, a) -> dict:
    """One stage in a fresh child: the child's own JSON plus wall time, peak RSS and the load when it began."""
    result = work / f"{stage}.result.json"
    result.unlink(missing_ok=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cap = a.max_minutes * 60 * 1.5 + 120 if a.max_minutes else None
    proc = run_child(stage_command(stage, data, cache, result, a), work / f"{stage}.log", cap, a.threads)
    out = {"load_average_1min_before": load, **proc}
    if proc["killed_at_cap"]:
        return {**out, "status": "capped", "seconds": None, "at_least_seconds": proc["wall_seconds"],
                "note": f"killed after {proc['wall_seconds']} s (cap {cap:.0f} s); no extrapolation"}
    if proc["exit_code"] != 0 or not result.is_file():
        tail = (work / f"{stage}.log").read_text(errors="replace").splitlines()[-8:]
        return {**out, "status": "failed", "seconds": None, "error": "\n".join(tail)}
    return {**json.loads(result.read_text()), **out}


def synthesize(name: str, work: Path, a) -> tuple[Path, dict]:
    """The shape's Parquet file (made in a child process, or reused when its parameters match)."""
    n, items, users = shape_of(name)
    data = work / f"synthetic_{name.replace(':', '_')}.parquet"
    cmd = [sys.executable, str(HERE / "make_synthetic.py"), str(data), "--interactions", str(n), "--items",
           str(items), "--users", str(users), "--seed", str(a.seed)]
    proc = run_child(cmd, work / "synthetic.log", None, a.threads)
    if proc["exit_code"] != 0:
        raise SystemExit(f"make_synthetic failed for {name}: see {work / 'synthetic.log'}")
    meta = json.loads(data.with_name(data.name + ".meta.json").read_text())
    return data, {"file": str(data), "bytes": meta["bytes"], "generate_seconds": meta["seconds"],
                  "reused": "reusing" in (work / "synthetic.log").read_text(), "peak_rss_mb": proc["peak_rss_mb"],
                  "max_history": meta["max_history"], "median_history": meta["median_history"],
                  "top_item_share": meta["top_item_share"]}


def settings_of(a) -> dict:
    return {k: getattr(a, k) for k in SETTINGS}


def open_results(path: Path, a) -> dict:
    if not path.is_file():
        return {"benchmark": "issue31-scale", "machine": machine_info(a.threads), "settings": settings_of(a),
                "shapes": {}}
    data = json.loads(path.read_text())
    if data.get("settings") != settings_of(a):
        raise SystemExit(f"{path} was made with settings {data.get('settings')}, this call has {settings_of(a)}; "
                         "use the same options to continue it, or another --out")
    return data


def run(a) -> dict:
    out, work_root = Path(a.out), Path(a.work).expanduser()
    results = open_results(out, a)
    if "import_floor_rss_mb" not in results["machine"]:
        floor = measure("floor", Path("-"), work_root, work_root / "floor", a)
        results["machine"]["import_floor_rss_mb"] = floor.get("peak_rss_mb")
        write_json(out, results)
    for name in a.shapes.split(","):
        n, items, users = shape_of(name)
        rec = results["shapes"].setdefault(name, {"shape": {"interactions": n, "items": items, "users": users}})
        for stage in a.stages.split(","):
            if stage in a.redo.split(","):
                rec.pop(stage, None)
        todo = [s for s in a.stages.split(",") if rec.get(s, {}).get("status") in (None, "failed")]
        if not todo:
            print(f"{name}: every stage already measured in {out}")
            continue
        work = work_root / name.replace(":", "_")
        data, rec["synthetic"] = synthesize(name, work_root, a)
        write_json(out, results)
        for stage in todo:
            cache = work / "cache"
            if stage == "prepare":
                shutil.rmtree(cache, ignore_errors=True)  # a fresh prepare, never a cache hit
            print(f"{name}: {stage} ...", flush=True)
            rec[stage] = measure(stage, data, cache, work, a)
            r = rec[stage]
            print(f"{name}: {stage} {r['status']} {r.get('seconds')} s, peak {r['peak_rss_mb']} MB", flush=True)
            write_json(out, results)
    return results


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="1m,10m,30m", help=f"comma-separated: {', '.join(SHAPES)} or I:N:U")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--redo", default="", help="stages to measure again (comma-separated)")
    ap.add_argument("--out", default=str(HERE / "results" / "scale" / "scale_cpu.json"))
    ap.add_argument("--work", default=str(default_cache_dir() / "bench_scale"), help="synthetic files and caches")
    ap.add_argument("--max-minutes", type=float, default=30.0, help="cap per stage (see above)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--neg-samples", type=int, default=512)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--eval-users", type=int, default=10_000)
    ap.add_argument("--eval-chunk-users", type=int, default=None, help="eval.chunk_size (default: see scale_stages)")
    ap.add_argument("--item-chunk-size", type=int, default=None,
                    help="eval.item_chunk_size, passed only where EvalConfig has it (default: its auto)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    bad = [s for s in a.stages.split(",") + [r for r in a.redo.split(",") if r] if s not in STAGES]
    if bad:
        raise SystemExit(f"--stages / --redo: unknown stage(s) {bad}; use {', '.join(STAGES)}")
    for name in a.shapes.split(","):
        shape_of(name)
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    run(a)
    print(f"results: {a.out}")


if __name__ == "__main__":
    main()
