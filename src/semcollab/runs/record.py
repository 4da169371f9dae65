"""What is saved with every run so that any figure can be traced and rerun."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import yaml

from ..config import RunConfig, to_dict


def git_hash() -> str | None:
    try:
        root = Path(__file__).resolve().parents[3]  # the repository (src/semcollab/runs/record.py)
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


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; elsewhere what ``platform`` knows): benchmark files name the
    CPU their figures come from."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> str:
    """The device a run trained on, as run.json records it: the GPU's name, else the CPU's model name (not only
    ``x86_64``: one hybrid run's seconds per epoch differ by 10-30% between two 2-core x86_64 CPUs, and tables
    that quote s/epoch must say which CPU gave it), its architecture and torch's thread count."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    arch = platform.machine()
    model = cpu_model()
    name = model if model == arch else f"{model}, {arch}"
    return f"CPU ({name}, {torch.get_num_threads()} threads)"


def write_run_dir(base: str | Path, model: str, dataset: str, write) -> Path:
    """Write a run folder atomically: ``write(tmp)`` fills a hidden temporary folder, renamed when complete.

    A full disk or a crash leaves no half-written run (the temporary folder is removed); an earlier run
    is never overwritten (a numeric suffix is added)."""
    from .files import write_dir_atomic

    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = dataset.replace(":", "-").replace("/", "-")
    base = Path(base)
    d = base / f"{stamp}-{model}-{safe}"
    i = 1
    while d.exists():  # never overwrite an earlier run
        d = base / f"{stamp}-{model}-{safe}-{i}"
        i += 1
    try:
        if not write_dir_atomic(d, write, what="run folder", required=True):
            raise FileExistsError(d)
    except FileExistsError:  # another process took the name between the check and the rename
        return write_run_dir(base, model, dataset, write)
    except OSError as exc:
        raise OSError(f"could not save the run under {base} ({exc.strerror or exc}); nothing was left behind. "
                      "The metrics above were not saved.") from None
    return d


def save_run_record(run_dir: Path, cfg: RunConfig, extra: dict) -> None:
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    meta = {"seed": cfg.train.seed, "git": git_hash(), "versions": library_versions(), "hardware": hardware(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2, default=str))
