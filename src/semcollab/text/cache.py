"""On-disk embedding cache keyed by encoder identity and text content.

Each encoder configuration (model id + weights fingerprint + pooling + prompt + max length) gets its
own folder; inside, every vector is stored under the SHA-256 of its text. A changed template changes
the texts and so the keys; a changed model changes the folder: stale vectors are never reused.
Shards are written atomically and carry a checksum. A damaged shard is never read: it is reported,
removed and its texts are encoded again. A cache that cannot be written (read-only, full disk) is a
warning; the vectors are still returned.

Only usable vectors are ever stored: a vector that is all zero or holds a NaN/inf is never written, and a
shard holding one (an older semcollab cached the zeros of ``embed --batch-size -1``) counts as damaged:
it is reported, removed and re-encoded, so a cache poisoned that way heals itself on the next run."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def unusable_rows(vectors: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of a 2-D array that are all zero or hold a non-finite value."""
    v = np.asarray(vectors)
    return ~np.isfinite(v).all(axis=1) | ~(v != 0).any(axis=1)


class EmbeddingCache:
    def __init__(self, root: Path, encoder_key: str):
        self.dir = Path(root) / "embeddings" / encoder_key
        self._store: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._store is not None:
            return self._store
        store: dict[str, np.ndarray] = {}
        for shard in sorted(self.dir.glob("shard-*.npz")):
            meta = shard.with_suffix(".json")
            try:
                expected = json.loads(meta.read_text())["sha256"]
                blob = shard.read_bytes()
                if hashlib.sha256(blob).hexdigest() != expected:
                    raise ValueError("checksum mismatch")
                with np.load(shard, allow_pickle=False) as z:
                    keys, vecs = z["keys"], z["vectors"]
                if keys.ndim != 1 or vecs.ndim != 2 or len(keys) != len(vecs):
                    raise ValueError(f"{len(keys)} keys for vectors of shape {vecs.shape}")
                bad = unusable_rows(vecs)
                if bad.any():
                    raise ValueError(f"{int(bad.sum())} of its {len(vecs)} vectors are all zero or not finite")
            except (OSError, ValueError, KeyError, EOFError, TypeError) as exc:
                warnings.warn(f"embedding cache shard {shard} is damaged ({exc}); removed, its texts will be "
                              "encoded again", stacklevel=2)
                for f in (shard, meta):
                    try:
                        f.unlink(missing_ok=True)
                    except OSError:
                        pass
                continue
            store.update(zip(keys.tolist(), vecs))
        self._store = store
        return store

    def get(self, hashes: list[str]) -> tuple[dict[int, np.ndarray], list[int]]:
        """Vectors found (by position) and the positions still to encode."""
        store = self._load()
        found, missing = {}, []
        for i, h in enumerate(hashes):
            v = store.get(h)
            if v is None:
                missing.append(i)
            else:
                found[i] = v
        return found, missing

    def put(self, hashes: list[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` under ``hashes``; rows that are all zero or not finite are left out (a warning)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        bad = unusable_rows(vectors) if vectors.ndim == 2 else np.ones(len(hashes), dtype=bool)
        if bad.any():
            warnings.warn(f"{int(bad.sum())} of {len(hashes)} embedding vectors are all zero or not finite; "
                          f"they are not cached in {self.dir}", stacklevel=2)
            keep = np.flatnonzero(~bad)
            hashes, vectors = [hashes[i] for i in keep], vectors[keep]
        self._load().update(zip(hashes, vectors))
        if not hashes:
            return
        tmp = None
        written: list[Path] = []
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".npz")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, keys=np.array(hashes), vectors=vectors)
            digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
            name = f"shard-{digest[:16]}"
            # checksum first, data second: a shard is only visible once its checksum exists
            meta = self.dir / f"{name}.json"
            meta.write_text(json.dumps({"sha256": digest, "n": len(hashes)}))
            written.append(meta)
            Path(tmp).replace(self.dir / f"{name}.npz")
            tmp = None
        except OSError as exc:
            for f in written + ([Path(tmp)] if tmp else []):
                try:
                    f.unlink(missing_ok=True)
                except OSError:
                    pass
            warnings.warn(f"could not write the embedding cache in {self.dir} ({exc.strerror or exc}); "
                          "continuing without it", stacklevel=2)
