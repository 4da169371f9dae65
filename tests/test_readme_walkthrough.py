"""README's "Your own data" walkthrough, run command by command with the real CLI on a tiny generated dataset.

The block between ``<!-- walkthrough -->`` and ``<!-- /walkthrough -->`` in README.md holds: ``csv`` blocks
showing the two input files (their header rows name the columns the generated files use), one ``yaml`` block
(the data config file, written as given) and ``bash`` blocks whose lines are run in order in a temporary folder.
Substitutions, and only these: ``semcollab`` runs as ``python -m semcollab`` (this checkout's sources), a line
ending in ``&`` (``semcollab serve``) starts a server on a free port instead of 8000 that the following ``curl``
lines query; the server is stopped at the end. The README's commands are cheap on tiny data as written (training
stops early), so no setting is changed."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
PORT_IN_README = "8000"


def walkthrough_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block inside the walkthrough markers, in order."""
    m = re.search(r"<!-- walkthrough -->(.*?)<!-- /walkthrough -->", text, re.S)
    assert m, "README.md has no <!-- walkthrough --> ... <!-- /walkthrough --> block"
    return re.findall(r"```(\w*)\n(.*?)```", m.group(1), re.S)


def commands(bash: str) -> list[str]:
    """Shell lines of a bash block: comments and blank lines dropped, backslash continuations joined."""
    out, pending = [], ""
    for line in bash.splitlines():
        line = line.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    return out


def _config_yaml_name(text: str) -> str:
    m = re.search(r"<!-- walkthrough -->.*?\(`([\w.-]+\.ya?ml)`\)", text, re.S)
    assert m, "the walkthrough names no data config file such as (`mydata.yaml`)"
    return m.group(1)


def write_data(folder: Path, event_cols: list[str], item_cols: list[str]) -> None:
    """Events and items with the README's column names: 40 users x 8 events over 30 items (ids B000..B029;
    B001 and B017 carry the README's example titles), every user and item above the default 5-core."""
    rng = random.Random(0)
    items = [f"B{j:03d}" for j in range(30)]
    titles = {"B001": "Garden hose 20 m", "B017": "Hose reel"}
    with open(folder / "events.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(event_cols)
        t = 1_700_000_000
        for u in range(1, 41):
            for item in rng.sample(items, 8):
                t += 60
                w.writerow([f"u{u}", item, t])
    with open(folder / "items.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(item_cols)
        for j, item in enumerate(items):
            extra = [f"A {['red', 'blue', 'green'][j % 3]} thing for the {['kitchen', 'garden'][j % 2]}"]
            w.writerow([item, titles.get(item, f"Product {j}")] + extra * (len(item_cols) - 2))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(line: str) -> str:
    return re.sub(r"(?<![\w./-])semcollab(?= )", f"{sys.executable} -m semcollab", line)


def wait_healthy(port: int, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            out = server.stdout.read() if server.stdout else ""
            raise AssertionError(f"semcollab serve exited with {server.returncode}:\n{out}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"semcollab serve did not answer /healthz on port {port} within {timeout} s")


def test_readme_walkthrough_runs(tmp_path):
    text = README.read_text(encoding="utf-8")
    blocks = walkthrough_blocks(text)
    csvs = [body for lang, body in blocks if lang == "csv"]
    yamls = [body for lang, body in blocks if lang == "yaml"]
    lines = [c for lang, body in blocks if lang == "bash" for c in commands(body)]
    assert len(csvs) == 2 and len(yamls) == 1 and lines, "walkthrough: two csv blocks, one yaml, bash commands"
    event_cols, item_cols = (body.splitlines()[0].split(",") for body in csvs)
    assert len(event_cols) == 3 and len(item_cols) >= 2 and item_cols[0] == event_cols[1]
    write_data(tmp_path, event_cols, item_cols)
    (tmp_path / _config_yaml_name(text)).write_text(yamls[0])

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(README.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("SEMCOLLAB_API_KEY", None)  # the walkthrough's curl lines send no key
    server, port, answers = None, None, []
    try:
        for line in lines:
            if line.endswith("&"):
                assert " serve " in f" {line} ", f"only `semcollab serve` runs in the background: {line}"
                port = free_port()
                cmd = cli(line[:-1].strip()).replace(f"--port {PORT_IN_README}", f"--port {port}")
                assert f"--port {port}" in cmd, f"the serve line must say --port {PORT_IN_README}: {line}"
                server = subprocess.Popen(["bash", "-c", "exec " + cmd], cwd=tmp_path, env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
                wait_healthy(port, server)
                continue
            if line.startswith("curl "):
                assert server is not None, f"curl before any server was started: {line}"
                cmd = line.replace(f"localhost:{PORT_IN_README}", f"127.0.0.1:{port}")
                r = subprocess.run(["bash", "-c", cmd + " --fail-with-body"], cwd=tmp_path, env=env,
                                   capture_output=True, text=True, timeout=60)
                assert r.returncode == 0, f"{line}\n{r.stdout}\n{r.stderr}"
                answer = json.loads(r.stdout)
                assert isinstance(answer.get("items"), list) and answer["items"], f"{line}: {answer}"
                answers.append(answer)
                continue
            r = subprocess.run(["bash", "-c", cli(line)], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=600)
            assert r.returncode == 0, f"README walkthrough line failed: {line}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    assert answers, "the walkthrough queries the server with curl"
    assert (tmp_path / "table.md").exists() and (tmp_path / "report.html").exists()
