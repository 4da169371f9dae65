"""Pieces every resumable loop shares: RNG capture, atomic checkpoint writes and safe reads, the resume-file
lock, the mismatch error.

Kept outside ``train/`` and ``lm/`` so the ID-model trainer and the LM loop use one implementation.

A checkpoint holds only tensors and plain containers of numbers and strings (:func:`plain`), written with
``torch.save`` and read with ``torch.load(weights_only=True)``, which builds tensors and those containers
and nothing else: a planted or foreign file can fail to load but never runs code."""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import random
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointInUseError, CheckpointMismatchError  # noqa: F401  (defined in errors.py)


def rng_state() -> dict:
    """Every global RNG a training step may draw from (torch, CUDA, NumPy's legacy one, Python's), as tensors
    and plain lists / numbers (see :func:`plain`)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)],
             "python": [int(version), list(internal), gauss_next]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def plain(obj, where: str = "checkpoint"):
    """``obj`` with NumPy scalars and arrays turned into Python numbers and tensors, so that
    ``torch.load(weights_only=True)`` reads it back; anything else but tensors, str / int / float / bool / None
    and dicts, lists, tuples of them is a TypeError (a checkpoint that could not be resumed)."""
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (str, bool, int, float)):
        return obj.item() if isinstance(obj, np.generic) else obj  # np.float64 is a float subclass
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, dict):  # dict or OrderedDict (a state_dict)
        return type(obj)((k, plain(v, f"{where}[{k!r}]")) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise TypeError(f"{where} holds a {type(obj).__name__}, which a checkpoint cannot store")


def load_checkpoint(path: Path, what: str = "resume checkpoint") -> dict:
    """Read a checkpoint written by :func:`save_atomic` with ``weights_only=True`` (no code runs); a file that
    does not load that way (truncated, from an older semcollab, not a checkpoint at all) is refused by name."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign or unsafe file: say which, never guess
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        why = ("it holds objects other than tensors and plain data, which are not loaded"
               if type(exc).__name__ == "UnpicklingError" else f"{type(exc).__name__}: {text}")
        raise CheckpointMismatchError(f"{what} {path} cannot be read safely ({why}); it is damaged, from an older "
                                      "semcollab or not a semcollab checkpoint: delete it to start over") from None
    if not isinstance(state, dict) or "key" not in state:
        raise CheckpointMismatchError(f"{what} {path} is not a semcollab checkpoint (no key); delete it to start over")
    return state


def remove_stale_temporaries(path: Path) -> None:
    """Temporary siblings of ``path`` left by a process killed while writing it (its cleanup never ran)."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` through a temporary sibling: a run killed mid-write leaves the previous checkpoint (and
    a temporary file, removed by the next save)."""
    path = Path(path)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    obj = plain(obj)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# settings that change how long or how visibly a run trains, or how it is evaluated in chunks, but not its weights
NOT_TRAJECTORY = frozenset({"progress", "max_minutes", "checkpoint_minutes", "chunk_size", "item_chunk_size"})


def trajectory_settings(cfg) -> dict:
    """The fields of a train / eval config dataclass that the weights depend on (a resumed run must match them)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_TRAJECTORY}


def key_diff(old: dict, new: dict) -> list[str]:
    """The top-level keys on which two checkpoint keys differ (for the error message)."""
    return sorted(k for k in {**old, **new} if old.get(k) != new.get(k))


@cache
def code_fingerprint() -> str:
    """SHA-256 of semcollab's own source files plus the torch and NumPy versions: a checkpoint written by other
    code is refused rather than continued as a mix of two versions (a docs-only commit leaves it unchanged)."""
    root = Path(__file__).resolve().parents[1]  # the whole package, not only runs/
    h = hashlib.sha256(f"torch {torch.__version__} numpy {np.__version__}".encode())
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def mismatch_hint(diff: list[str]) -> str:
    return " (semcollab's source or the torch / NumPy version changed since it was written)" if "code" in diff else ""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def named_file_hashes(params) -> dict[str, str]:
    """SHA-256 of every file a (nested) settings value names; a named folder (an item_table folder, a local
    encoder) counts by every file in it. A resumed run must see the same contents, not just the same paths."""
    def named(v):
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, (list, tuple)):
            return [f for x in v for f in named(x)]
        if not isinstance(v, str) or not v:
            return []
        p = Path(v).expanduser()
        if p.is_dir():  # resume checkpoints inside it (a folder holding output_dir) would change the key each save
            return [str(f) for f in sorted(p.rglob("*")) if f.is_file() and ".resume" not in f.parts]
        return [str(p)] if p.is_file() else []

    return {f: file_sha256(Path(f)) for f in named(params)}


def resume_file(output_dir, model: str, dataset: str, identity: dict) -> Path:
    """``output_dir/.resume/<model>-<dataset>-<hash of identity>.pt``: rerunning the same command finds its own
    checkpoint, while a sweep sharing ``output_dir`` gives each setting its own file."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    safe = dataset.replace(":", "-").replace("/", "-")
    return Path(output_dir) / ".resume" / f"{model}-{safe}-{digest}.pt"


def run_resume_target(output_dir, model: str, dataset: str, model_params: dict, data: dict, data_fingerprint: str,
                      settings: dict) -> tuple[Path, dict]:
    """The resume file of a saved run (``semcollab train``, ``semcollab ctr train``) and the identity its checkpoint
    must carry: the model, its parameters and the content of any file they name, the data settings and content.
    The file name also hashes ``settings`` (the trajectory settings, e.g. ``{"train": ..., "eval": ...}``), which
    the loop checks itself."""
    params = dict(model_params)
    ident = {"run_model": model, "model_params": params, "files": named_file_hashes(params), "data": data,
             "data_fingerprint": data_fingerprint}
    return resume_file(output_dir, model, dataset, {**ident, **settings}), ident


def other_resume_files(path: Path) -> list[Path]:
    """Checkpoints beside ``path`` of the same model and dataset under other settings: abandoned runs, or a
    rerun whose settings changed (then the old file is what the user meant to continue)."""
    stem = path.stem.rsplit("-", 1)[0]
    return sorted(p for p in path.parent.glob(f"{stem}-*.pt") if p != path)


def note_other_resume_files(path: Path | None, log) -> None:
    if path is None or not log:
        return
    others = other_resume_files(path)
    if others:
        log(f"note: {len(others)} resume checkpoint(s) of other settings for this model and dataset in {path.parent} "
            f"({', '.join(p.name for p in others[:3])}{', ...' if len(others) > 3 else ''}); this run does not use "
            "them: rerun with their settings to continue one, or delete them")


# resume files this process owns: {resolved path: open lock file}; the lock lasts until remove_resume_file,
# release_resume_lock or the process's end (the kernel drops a dead process's flock)
_LOCKS: dict[str, object] = {}


def lock_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".lock")


def lock_resume_file(path: Path) -> None:
    """Own ``path`` for this process: an exclusive, non-blocking ``flock`` on ``<path>.lock``. Another live
    process holding it is a :class:`CheckpointInUseError` naming the lock and its PID; a lock left by a dead
    process is free (the kernel released it). Calling it again in the owning process is a no-op."""
    path = Path(path)
    key = str(path.resolve())
    if key in _LOCKS:
        return
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fh = open(lock, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.seek(0)
            owner = fh.read().strip() or "unknown"
            fh.close()
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise CheckpointInUseError(f"another process (PID {owner}) is running the same run and owns its resume "
                                       f"checkpoint {path} (lock {lock}); wait for it to finish or stop it, or use "
                                       "another output_dir") from None
        try:  # the owner may have removed the lock file between our open and flock: lock the file now there
            same = os.fstat(fh.fileno()).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    _LOCKS[key] = fh


def release_resume_lock(path: Path | None, remove: bool = False) -> None:
    """Give up this process's lock of ``path`` (``remove``: delete the lock file too, while still holding it)."""
    if path is None:
        return
    fh = _LOCKS.pop(str(Path(path).resolve()), None)
    if fh is None:
        return
    if remove:
        lock_path(path).unlink(missing_ok=True)
    fh.close()  # closing the only descriptor releases the flock


def release_resume_locks_under(root: str | Path) -> int:
    """Give up every lock this process holds on a resume file under ``root`` (for callers that fit without saving a
    run, e.g. tests); returns how many were released. The lock files stay (as with :func:`release_resume_lock`)."""
    root = Path(root).resolve()
    held = [key for key in _LOCKS if Path(key).is_relative_to(root) and Path(key) != root]
    for key in held:
        _LOCKS.pop(key).close()  # closing the only descriptor releases the flock
    return len(held)


@contextmanager
def resume_lock(path: Path | None, remove: bool = False):
    """Hold ``path``'s lock for the block (nothing when ``path`` is None); given up when the block ends, also by
    an exception (``remove``: the lock file is deleted too)."""
    if path is not None:
        lock_resume_file(path)
    try:
        yield
    finally:
        release_resume_lock(path, remove=remove)


def remove_resume_file(path: Path | None) -> None:
    """Once the run is saved: its checkpoint (and any half-written copy) is no longer needed, nor its lock."""
    if path is None:
        return
    remove_stale_temporaries(path)
    path.unlink(missing_ok=True)
    release_resume_lock(path, remove=True)
    try:  # other runs' checkpoints (or a race with them) keep the folder
        path.parent.rmdir()
    except OSError:
        pass
