"""What is saved with every run so that any figure can be traced and rerun."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import yaml

from .config import RunConfig, to_dict


def git_hash() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("semcollab", "torch", "numpy", "pandas", "scikit-learn", "transformers", "sentence-transformers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def new_run_dir(base: str | Path, model: str, dataset: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = dataset.replace(":", "-").replace("/", "-")
    d = Path(base) / f"{stamp}-{model}-{safe}"
    i = 1
    while d.exists():  # never overwrite an earlier run
        d = Path(base) / f"{stamp}-{model}-{safe}-{i}"
        i += 1
    d.mkdir(parents=True)
    return d


def save_run_record(run_dir: Path, cfg: RunConfig, extra: dict) -> None:
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    meta = {"seed": cfg.train.seed, "git": git_hash(), "versions": library_versions(), "hardware": hardware(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2, default=str))
