"""Inference sharded over torchrun's ranks, written so that a killed rank costs only its own shard.

An LM pass over many rows (item texts to embed, CTR rows to score) is split into its length-sorted batches; each
rank computes whole batches (:func:`plan_shards`, balanced by cost), so every row is computed in the very batch one
process puts it in and the merged result is bit-equal to the single-process one. Rank r writes
``shard-<r>-of-<N>.npy`` (``allow_pickle=False``) and then its manifest ``shard-<r>-of-<N>.json`` (content key,
rows digest, sha256 of the ``.npy``), each via a temporary file and ``os.replace``; after a barrier rank 0 checks
every shard, merges them in row order into ``merged.npy`` (atomically), removes the shards, and every rank reads
the merged rows. The folder is named by the content key (model, dtype, texts, settings), so the same command run
again finds the shards a killed launch left: a shard whose manifest matches the key, its rows and its sha256 is
kept, a missing or partial one is computed again by its rank.

Without torchrun (one process) nothing is written: :func:`compute_sharded` is the plain loop, as before.

Callers that cannot pass a :class:`ShardSite` down to the loop (it runs inside another module's function) open
:func:`inference_shards` around the call; :func:`active_site` is what the loop asks."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.distributed as dist

from .. import distributed as ddp
from ..errors import DistributedError
from .files import write_file_atomic

MERGED = "merged.npy"


def content_key(*parts) -> str:
    """sha256 of ``parts`` as canonical JSON (what is computed: model, dtype, texts, settings)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def texts_digest(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


@dataclass(frozen=True)
class ShardSite:
    """Where a sharded pass keeps its shards (``root / key[:32]``) and the content key they must carry."""

    root: Path
    key: str

    def child(self, *parts) -> ShardSite:
        """The same root with ``parts`` (more of what is computed) hashed into the key."""
        return ShardSite(self.root, content_key(self.key, *parts))

    @property
    def folder(self) -> Path:
        return Path(self.root) / self.key[:32]


_SITE: contextvars.ContextVar[ShardSite | None] = contextvars.ContextVar("semcollab_shard_site", default=None)


@contextlib.contextmanager
def inference_shards(root: str | Path, key: str) -> Iterator[ShardSite]:
    """Within the block, LM inference loops that take no site of their own shard under ``root`` with ``key``."""
    site = ShardSite(Path(root), key)
    token = _SITE.set(site)
    try:
        yield site
    finally:
        _SITE.reset(token)


def active_site() -> ShardSite | None:
    return _SITE.get()


def plan_shards(costs: Sequence[float], world: int) -> list[list[int]]:
    """Batch indices per rank, each rank's in ascending order: the costliest batch goes to the least loaded rank
    (ties: the lower rank), so shards of length-sorted batches take about the same time."""
    loads = [0.0] * world
    plan: list[list[int]] = [[] for _ in range(world)]
    for b in sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i)):
        r = min(range(world), key=lambda k: (loads[k], k))
        plan[r].append(b)
        loads[r] += float(costs[b])
    return [sorted(p) for p in plan]


def _rows_digest(rows: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()


def _npy_bytes(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(values), allow_pickle=False)
    return buf.getvalue()


def write_shard(folder: Path, name: str, values: np.ndarray, manifest: dict) -> None:
    """``<name>.npy`` then ``<name>.json`` (with the sha256 of the ``.npy``), each atomically: a manifest exists
    only beside a complete shard."""
    blob = _npy_bytes(values)
    write_file_atomic(folder / f"{name}.npy", blob)
    meta = {**manifest, "sha256": hashlib.sha256(blob).hexdigest(), "shape": list(values.shape),
            "dtype": str(values.dtype)}
    write_file_atomic(folder / f"{name}.json", (json.dumps(meta, indent=1) + "\n").encode())


def read_shard(folder: Path, name: str, manifest: dict) -> np.ndarray | None:
    """The shard's values when its manifest carries ``manifest`` (key, rows, ...) and its bytes their sha256;
    None when it is missing, partial, stale or damaged."""
    try:
        meta = json.loads((folder / f"{name}.json").read_text())
        if any(meta.get(k) != v for k, v in manifest.items()):
            return None
        blob = (folder / f"{name}.npy").read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
            return None
        values = np.load(io.BytesIO(blob), allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return values if list(values.shape) == meta.get("shape") else None


def _scatter(n: int, rows: np.ndarray, values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        out = np.zeros((n, *values.shape[1:]), dtype=values.dtype)
    out[rows] = values
    return out


class ShardLayout:
    """The shards of one pass: which batches rank r computes (:func:`plan_shards`), their files and manifests.
    :func:`compute_sharded` runs its steps between barriers; tests drive them rank by rank."""

    def __init__(self, site: ShardSite, n: int, batches: Sequence[np.ndarray], world: int,
                 costs: Sequence[float] | None = None, what: str = "inference"):
        self.site, self.n, self.world, self.what = site, n, world, what
        self.batches = [np.asarray(b, dtype=np.int64) for b in batches]
        self.plan = plan_shards([len(b) for b in self.batches] if costs is None else costs, world)
        # the batches themselves are part of what is computed (padding within a batch may change the last bits)
        sizes = np.asarray([len(b) for b in self.batches], dtype=np.int64)
        self.base = {"key": site.key, "world_size": world, "n": n, "batches": len(self.batches),
                     "batches_sha256": _rows_digest(np.concatenate([sizes, *self.batches]))}

    @property
    def folder(self) -> Path:
        return self.site.folder

    def name(self, r: int) -> str:
        return f"shard-{r}-of-{self.world}"

    def rows(self, r: int) -> np.ndarray:
        own = [self.batches[i] for i in self.plan[r]]
        return np.concatenate(own) if own else np.zeros(0, dtype=np.int64)

    def manifest(self, r: int) -> dict:
        rows = self.rows(r)
        return {**self.base, "rank": r, "rows": int(len(rows)), "rows_sha256": _rows_digest(rows)}

    def merged_manifest(self) -> dict:
        return {**self.base, "rank": "merged", "rows": self.n, "rows_sha256": _rows_digest(np.arange(self.n))}

    def ensure(self, r: int, compute: Callable[[list[np.ndarray]], np.ndarray]) -> bool:
        """Rank ``r``'s shard on disk: kept when its manifest and sha256 match, else computed and written.
        True when it was computed."""
        m = self.manifest(r)
        if read_shard(self.folder, self.name(r), m) is not None:
            return False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DistributedError(f"rank {r}: cannot create the shard folder {self.folder} for {self.what} "
                                   f"({exc.strerror or exc})") from None
        own = [self.batches[i] for i in self.plan[r]]
        values = np.asarray(compute(own)) if own else np.zeros(0, dtype=np.float32)
        if len(values) != m["rows"]:
            raise DistributedError(f"rank {r}: {self.what} returned {len(values)} rows for its shard of {m['rows']}")
        write_shard(self.folder, self.name(r), values, m)
        return True

    def merged(self) -> np.ndarray | None:
        return read_shard(self.folder, MERGED[:-4], self.merged_manifest())

    def merge(self) -> np.ndarray:
        """Rank 0: every shard checked and put in row order into ``merged.npy`` (atomically); the shards (of any
        world size) and temporary files removed."""
        out = None
        for r in range(self.world):
            values = read_shard(self.folder, self.name(r), self.manifest(r))
            if values is None:
                raise DistributedError(f"the {self.what} shard of rank {r} ({self.folder / self.name(r)}.npy) is "
                                       "missing or does not match its manifest after every rank wrote its own")
            if len(values):
                out = _scatter(self.n, self.rows(r), values, out)
        if out is None:
            raise DistributedError(f"no rows to merge for {self.what}")  # n == 0: compute_sharded returns early
        write_shard(self.folder, MERGED[:-4], out, self.merged_manifest())
        for f in self.folder.iterdir():
            if f.name.startswith(("shard-", ".tmp-")):
                f.unlink(missing_ok=True)
        return out


def compute_sharded(site: ShardSite | None, n: int, batches: Sequence[np.ndarray],
                    compute: Callable[[list[np.ndarray]], np.ndarray], costs: Sequence[float] | None = None,
                    what: str = "inference") -> np.ndarray:
    """Rows ``0..n-1`` of ``compute``, on every rank. ``compute(bs)`` returns the rows of the batches ``bs`` in the
    order of ``np.concatenate(bs)``. ``costs``: one per batch (default: its row count).

    One process, or ``site`` None: ``compute(batches)`` scattered into row order; no file is written. Under torchrun
    with ``site``: each rank computes (or keeps, see the module's docstring) its shard, rank 0 merges."""
    batches = [np.asarray(b, dtype=np.int64) for b in batches]
    if site is None or not ddp.active() or not batches:
        if not batches:
            return compute([])
        return _scatter(n, np.concatenate(batches), compute(batches))
    rank = ddp.rank()
    layout = ShardLayout(site, n, batches, ddp.world_size(), costs, what)
    if not ddp.from_main(layout.merged() is not None):  # a launch killed after its merge left it whole
        layout.ensure(rank, compute)
        dist.barrier()
        if ddp.is_main():
            layout.merge()
        dist.barrier()
    merged = layout.merged()
    if merged is None:
        raise DistributedError(f"rank {rank}: the merged {what} {layout.folder / MERGED} is missing or damaged")
    dist.barrier()  # every rank has read it: the folder goes
    if ddp.is_main():
        shutil.rmtree(layout.folder, ignore_errors=True)
    return merged


__all__ = ["ShardLayout", "ShardSite", "active_site", "compute_sharded", "content_key", "inference_shards", "plan_shards",
           "read_shard", "texts_digest", "write_shard"]
