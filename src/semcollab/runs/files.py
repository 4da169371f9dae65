"""Writing results and caches so that a full disk or a read-only folder never leaves half a file behind.

Everything semcollab keeps (run folders, SAE caches, embedding shards, prepared splits) is written under
a temporary name beside its final place and renamed into place only when complete: a reader sees the
whole thing or nothing. Caches are a convenience, so failing to write one is a warning; a run folder is
the result, so its folder is checked *before* training (:func:`check_writable`)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

from ..errors import OutputError  # noqa: F401  (defined in errors.py)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(directory: str | Path, need_bytes: int = 0, what: str = "output_dir") -> Path:
    """Create ``directory`` if needed and prove it takes a file of ``need_bytes`` (plus 1 MiB of slack).

    Called before any epoch runs, so a read-only or full output folder costs seconds, not a training run."""
    directory = Path(directory)
    try:
        if directory.exists() and not directory.is_dir():
            raise OutputError(f"{what} {directory} exists and is not a folder")
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{uuid.uuid4().hex[:8]}"
        try:
            probe.write_bytes(b"ok")
        finally:
            probe.unlink(missing_ok=True)
        free = shutil.disk_usage(directory).free
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"{what} {directory} is not writable ({exc.strerror or exc}); choose another with "
                          f"--{what}=...") from None
    need = need_bytes + (1 << 20)
    if free < need:
        raise OutputError(f"{what} {directory} has {free / 2**20:.1f} MiB free; this run needs about "
                          f"{need / 2**20:.1f} MiB. Free some space or choose another --{what}=...")
    return directory


def write_dir_atomic(final: Path, write: Callable[[Path], None], what: str = "cache",
                     required: bool = False, replace: bool = False) -> bool:
    """Fill a temporary sibling folder with ``write(tmp)``, then rename it to ``final``.

    An existing ``final`` is kept (a concurrent writer with the same key wrote the same thing) unless
    ``replace``. On an OSError (full disk, read-only) the temporary folder is removed; ``required``
    re-raises, otherwise it is a warning and the caller carries on without the cache. Returns whether
    ``final`` now holds the new content."""
    final = Path(final)
    tmp = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it owner-only; a run folder should not be
        write(tmp)
        if final.exists():
            if not replace:
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        return True
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if required or not isinstance(exc, OSError):
            raise
        warnings.warn(f"could not write {what} {final} ({exc.strerror or exc}); continuing without it",
                      stacklevel=2)
        return False


def write_file_atomic(final: Path, data: bytes) -> None:
    """Write ``data`` to ``final`` via a temporary sibling and ``os.replace`` (no partial files)."""
    final = Path(final)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".tmp-{final.name}-")
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
