"""Stand-ins and the runner of tests/test_readme_commands.py: tiny files in the real assets' formats, the tiny LMs
placed where the model hub keeps ready models, a launcher that fakes one registry entry, and the subprocess runner
that runs a README command (placeholders filled, options added) and remembers the run folders it wrote."""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

from tests.test_readme_walkthrough import _config_yaml_name, free_port, wait_healthy, walkthrough_blocks, write_data

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


# ------------------------------------------------------------------------------------------------- stand-in data

def write_ml100k(folder: Path, n_users=60, n_items=40, per_user=10) -> Path:
    """RecBole-atomic ``ml-100k.inter`` / ``.item`` with the real files' columns; users walk the items in order."""
    rng = random.Random(0)
    folder.mkdir(parents=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(1, n_users + 1):
        start = rng.randrange(n_items)
        for t in range(per_user):
            lines.append(f"{u}\t{(start + t) % n_items + 1}\t{rng.randint(1, 5)}\t{880000000 + 1000 * u + t}")
    (folder / "ml-100k.inter").write_text("\n".join(lines) + "\n")
    genres = ["Animation Comedy", "Action Thriller", "Drama", "Romance Drama"]
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += [f"{i}\tMovie {i}\t{1990 + i % 9}\t{genres[i % 4]}" for i in range(1, n_items + 1)]
    (folder / "ml-100k.item").write_text("\n".join(items) + "\n")
    return folder


def write_s3rec_beauty(folder: Path, n_users=40, n_items=20, per_user=8) -> None:
    """``Beauty.txt`` (user item item ...), ``Beauty_items.csv`` (the real file's columns) and
    ``Beauty_item2attributes.json``; every user and item above the 5-core."""
    rng = random.Random(1)
    folder.mkdir(parents=True)
    lines = []
    for u in range(1, n_users + 1):
        start = rng.randrange(n_items)
        lines.append(" ".join(map(str, [u, *((start + t) % n_items + 1 for t in range(per_user))])))
    (folder / "Beauty.txt").write_text("\n".join(lines) + "\n")
    words = ["nail polish", "lip balm", "face cream", "hair spray", "eye shadow"]
    rows = ["item_id,source_id,title,brand,categories,attributes,keywords"]
    for i in range(1, n_items + 1):
        w = words[i % 5]
        rows.append(f'{i},B{i:09d},"The {w} {i}",Brand{i % 3},Beauty > {w.title()},"Brand{i % 3}, {w}",{w} {i}')
    (folder / "Beauty_items.csv").write_text("\n".join(rows) + "\n")
    (folder / "Beauty_item2attributes.json").write_text(json.dumps({str(i): [i % 4, 4 + i % 3]
                                                                    for i in range(1, n_items + 1)}))


def write_collm_zip(path: Path) -> None:
    """``ml-1m/{train,valid,test}_ood2.pkl`` as in the CoLLM zip, from tests/tasks/test_ctr_cli.py's writer."""
    from tests.tasks.test_ctr_cli import write_collm_folder

    folder = write_collm_folder(path.parent / "collm-pickles", rows=(96, 32, 32))
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for split in ("train", "valid", "test"):
            zf.write(folder / f"{split}_ood2.pkl", f"ml-1m/{split}_ood2.pkl")
    shutil.rmtree(folder)


def write_walkthrough_data(folder: Path) -> None:
    text = README.read_text(encoding="utf-8")
    blocks = walkthrough_blocks(text)
    csvs = [body for lang, body in blocks if lang == "csv"]
    event_cols, item_cols = (body.splitlines()[0].split(",") for body in csvs)
    write_data(folder, event_cols, item_cols)
    (folder / _config_yaml_name(text)).write_text(next(body for lang, body in blocks if lang == "yaml"))


def place_lm(cache: Path, name: str, folder: Path) -> None:
    """``folder`` as the ready copy of registry model ``name`` (what `semcollab models fetch` leaves behind)."""
    shutil.copytree(folder, cache / "models" / name / "dense")


FAKE_HUB = '''"""`python -m semcollab` with gemma3-270m's registry entry pointed at a fake part wheel in the cache."""
import dataclasses, hashlib, os, runpy, sys, zipfile

from semcollab.hub import files as hub_files, models as hub

name, payload = "gemma3-270m", b"GGUF" + bytes(range(256)) * 4
entry = hub.MODELS[name]
req = "fake-gemma-part1==1.0"
member = "fake_gemma_part1/data/model.gguf"
wheels = hub.model_root(name) / "wheels"
wheels.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(wheels / "fake_gemma_part1-1.0-py3-none-any.whl", "w") as zf:
    zf.writestr(member, payload)
hub.MODELS[name] = dataclasses.replace(entry, packages=(req,), parts=(hub.Part(req, member, len(payload)),),
                                       size=len(payload), sha256=hashlib.sha256(payload).hexdigest())


def tiny_loader(path, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = os.environ["TINY_LM"]
    return AutoModelForCausalLM.from_pretrained(src, dtype=dtype), AutoTokenizer.from_pretrained(src)


hub_files._default_gguf_loader = tiny_loader  # convert_gguf's default loader
sys.argv = ["semcollab", *sys.argv[1:]]
runpy.run_module("semcollab", run_name="__main__", alter_sys=True)
'''


# ---------------------------------------------------------------------------------------------------- the runner

class Runner:
    """Runs README commands in ``folder`` and remembers which run folders each one wrote."""

    def __init__(self, folder: Path, cache: Path, shared: Path, ml100k: Path):
        self.folder, self.runs = folder, {}
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
                    "SEMCOLLAB_CACHE": str(cache), "SEMCOLLAB_SHARED": str(shared), "SEMCOLLAB_ML100K": str(ml100k),
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PIP_NO_INDEX": "1", "OMP_NUM_THREADS": "1"}
        self.env.pop("SEMCOLLAB_API_KEY", None)

    def run_folders(self) -> set[Path]:
        return {p.parent for p in (self.folder / "runs").rglob("config.yaml")} if (self.folder / "runs").is_dir() else set()

    def command(self, line: str, row) -> str:
        line = re.sub(r" \[runs/<run> \.\.\.\]", "", line)
        for placeholder, label in row.runs.items():
            assert label in self.runs, f"{line}: no earlier row made run {label!r}"
            line = line.replace(placeholder, str(self.runs[label]))
        assert "<" not in line, f"a placeholder without a run in its row: {line}"
        return " ".join([line.removesuffix("&").strip(), *row.add])

    def check(self, r: subprocess.CompletedProcess, line: str) -> str:
        out = r.stdout + r.stderr
        assert r.returncode == 0 and "Traceback (most recent call last)" not in out, \
            f"README command failed (exit {r.returncode}): {line}\n{out[-4000:]}"
        return out

    def shell(self, cmd: str, timeout=300) -> subprocess.CompletedProcess:
        cmd = re.sub(r"^semcollab ", f"{sys.executable} -m semcollab ", cmd)
        return subprocess.run(["bash", "-c", cmd], cwd=self.folder, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def __call__(self, line: str, row, tiny_lm: Path | None = None) -> str:
        """Run README ``line`` as ``row`` (a Row of tests/test_readme_commands.py) says; returns its output."""
        before = self.run_folders()
        cmd = self.command(line, row)
        if row.how == "serve":
            out = self.serve(cmd, line, row.user)
        elif row.how == "fetch":
            (self.folder / "fake_hub.py").write_text(FAKE_HUB)
            self.env["TINY_LM"] = str(tiny_lm)
            out = self.check(self.shell(cmd.replace("semcollab ", f"{sys.executable} fake_hub.py ", 1)), line)
        else:
            out = self.check(self.shell(cmd), line)
        if row.makes:
            made = sorted(self.run_folders() - before)
            assert made, f"{line}: wrote no run folder under runs/"
            self.runs[row.makes] = made[0]
        return out

    def serve(self, cmd: str, line: str, user: str) -> str:
        port = free_port()
        cmd = re.sub(r" --port \d+", "", cmd) + f" --port {port}"
        cmd = re.sub(r"^semcollab ", f"exec {sys.executable} -m semcollab ", cmd)
        server = subprocess.Popen(["bash", "-c", cmd], cwd=self.folder, env=self.env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_healthy(port, server)
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/recommend", method="POST",
                                         data=json.dumps({"user_id": user, "k": 5}).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                answer = json.loads(r.read())
            assert answer.get("items"), f"{line}: /v1/recommend gave no items: {answer}"
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait()
        return json.dumps(answer)


def children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime
