"""Serving speed of `semcollab serve` for one run: HTTP load from a second process (wrk) on loopback.

    PYTHONPATH=src python benchmarks/bench_serve.py RUN_DIR [--seconds 10] [--levels 1,8,32] [--out x.json]

1. starts ``semcollab serve RUN_DIR`` on a free 127.0.0.1 port (stopped at the end, whatever happens);
2. ``wrk --latency`` on ``POST /v1/recommend`` (a Lua script cycles real user ids, k=10) for ``--seconds`` at
   each concurrency level: p50 / p99 latency and requests/s, and any non-2xx response or socket error;
3. ``POST /v1/recommend/batch`` with ``--batch`` users per request for ``--seconds``: users/s;
4. the server stopped, the same recommendations computed in-process (the served code path without HTTP:
   ``RankRun.recommend``), one user per call and in batches: what HTTP costs.

Writes one JSON (``--out``, default benchmarks/results/serve_<run>.json) and prints a markdown table.
Everything is bounded: every wrk run by ``--seconds`` (+ wrk's own timeout), the server start by
``--start-timeout``, the whole script by ``--max-minutes``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LUA = r"""
local bodies = {%s}
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/v1/recommend", {["Content-Type"] = "application/json"}, bodies[(n %% #bodies) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format("WRKJSON {\"requests\": %%d, \"duration_us\": %%d, \"p50_us\": %%d, \"p90_us\": %%d, " ..
    "\"p99_us\": %%d, \"max_us\": %%d, \"mean_us\": %%.1f, \"non2xx\": %%d, \"socket_errors\": %%d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: str, port: int, max_batch: int, timeout: float, threads: int) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-c", "from semcollab.cli import app; app()", "serve", run_dir, "--port", str(port),
           "--max-batch", str(max_batch), "--torch-threads", str(threads), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"semcollab serve exited ({proc.returncode}):\n{proc.stdout.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    stop(proc)
    raise SystemExit(f"semcollab serve did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and nothing else
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def run_wrk(url: str, lua: Path, conc: int, seconds: int) -> dict:
    threads = min(conc, 2)
    cmd = ["wrk", "-t", str(threads), "-c", str(conc), "-d", f"{seconds}s", "--timeout", "5s", "--latency",
           "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no summary:\n{out.stdout}\n{out.stderr}")
    res = json.loads(line[len("WRKJSON "):])
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    res["requests_per_s"] = float(rps.group(1)) if rps else res["requests"] / (res["duration_us"] / 1e6)
    res.update(concurrency=conc, wrk_threads=threads, seconds=seconds)
    return res


def bench_batch_http(base: str, model: str, users: list[str], size: int, seconds: float) -> dict:
    import httpx

    bodies = [{"model": model, "user_ids": [users[(s + j) % len(users)] for j in range(size)], "k": 10}
              for s in range(0, max(len(users), size), size)]
    n_users = calls = 0
    lat = []
    with httpx.Client(base_url=base, timeout=60) as c:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            t = time.perf_counter()
            r = c.post("/v1/recommend/batch", json=bodies[calls % len(bodies)])
            lat.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise SystemExit(f"batch request failed: {r.status_code} {r.text[:300]}")
            n_users += size
            calls += 1
        wall = time.perf_counter() - t0
    return {"batch_size": size, "calls": calls, "users_per_s": n_users / wall, "p50_ms": 1e3 * sorted(lat)[len(lat) // 2]}


def bench_in_process(run_dir: str, users: list[str], size: int, seconds: float, threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)  # as the server
    from semcollab.serve.ranker import load_serving_run

    run = load_serving_run(run_dir)
    idx = [run.split.user_vocab.encode(u) for u in users]

    def q(u):
        return {"user": u, "history": None, "k": 10, "exclude_seen": True, "allow": None, "deny": []}

    lat = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        t = time.perf_counter()
        run.recommend([q(idx[len(lat) % len(idx)])])
        lat.append(time.perf_counter() - t)
    single_wall = time.perf_counter() - t0
    n_users = calls = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s = (calls * size) % len(idx)
        run.recommend([q(idx[(s + j) % len(idx)]) for j in range(size)])
        n_users += size
        calls += 1
    batch_wall = time.perf_counter() - t0
    lat_ms = np.asarray(lat) * 1e3
    return {"factored": run.factored, "n_items": run.n_items, "single": {
        "calls": len(lat), "p50_ms": float(np.percentile(lat_ms, 50)), "p99_ms": float(np.percentile(lat_ms, 99)),
        "per_s": len(lat) / single_wall}, "batch": {"batch_size": size, "users_per_s": n_users / batch_wall}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--seconds", type=int, default=10, help="per concurrency level (and per batch measurement)")
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--batch", type=int, default=1000, help="users per batch request")
    ap.add_argument("--users", type=int, default=1000, help="distinct real users cycled through")
    ap.add_argument("--start-timeout", type=float, default=600)
    ap.add_argument("--max-minutes", type=float, default=30, help="the whole script stops after this")
    ap.add_argument("--torch-threads", type=int, default=1, help="the server's (and in-process) torch threads")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(SystemExit("--max-minutes reached")))
    signal.alarm(int(args.max_minutes * 60))
    run_dir = str(Path(args.run_dir).resolve())
    levels = [int(x) for x in args.levels.split(",")]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    report = {"run": run_dir, "host": platform.node(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": args.seconds,
              "torch_threads": args.torch_threads, "load_average_before": os.getloadavg()}
    t_start = time.perf_counter()
    proc = start_server(run_dir, port, max(args.batch, 1024), args.start_timeout, args.torch_threads)
    report["server_start_s"] = round(time.perf_counter() - t_start, 1)
    try:
        import httpx

        info = httpx.get(base + "/v1/models").json()["models"][0]
        model = info["name"]
        users = httpx.get(base + "/v1/users", params={"model": model, "limit": args.users}).json()["users"]
        report.update(model=info["model"], dataset=info["dataset"], n_items=info["n_items"], factored=info["factored"])
        with tempfile.TemporaryDirectory() as tmp:
            lua = Path(tmp) / "recommend.lua"
            bodies = ",".join("[[" + json.dumps({"model": model, "user_id": u, "k": 10}) + "]]" for u in users)
            lua.write_text(LUA % bodies)
            report["http"] = [run_wrk(base + "/v1/recommend", lua, c, args.seconds) for c in levels]
        report["http_batch"] = bench_batch_http(base, model, users, args.batch, args.seconds)
    finally:
        stop(proc)
    report["in_process"] = bench_in_process(run_dir, users, args.batch, args.seconds, args.torch_threads)
    out = args.out or Path("benchmarks/results") / f"serve_{Path(run_dir).name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    ip = report["in_process"]
    print(f"\n{report['model']} on {report['dataset']} ({report['n_items']} items, factored={report['factored']}), "
          f"{report['cpu_count']} CPUs, {args.seconds} s per row; JSON: {out}\n")
    print("| what | concurrency | p50 ms | p99 ms | requests/s | users/s | errors |")
    print("|---|---|---|---|---|---|---|")
    for h in report["http"]:
        print(f"| HTTP /v1/recommend (wrk) | {h['concurrency']} | {h['p50_us'] / 1e3:.2f} | {h['p99_us'] / 1e3:.2f} | "
              f"{h['requests_per_s']:.0f} | | {h['non2xx'] + h['socket_errors']} |")
    b = report["http_batch"]
    print(f"| HTTP /v1/recommend/batch ({b['batch_size']} users) | 1 | {b['p50_ms']:.1f} | | | {b['users_per_s']:.0f} | 0 |")
    s = ip["single"]
    print(f"| in-process, one user per call | 1 | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['per_s']:.0f} | | |")
    print(f"| in-process, {ip['batch']['batch_size']} users per call | 1 | | | | {ip['batch']['users_per_s']:.0f} | |")


if __name__ == "__main__":
    main()
