"""On-disk embedding cache keyed by encoder identity and text content.

Each encoder configuration (model id + weights fingerprint + pooling + prompt + max length) gets its
own folder; inside, every vector is stored under the SHA-256 of its text. A changed template changes
the texts and so the keys; a changed model changes the folder: stale vectors are never reused.
Shards are written atomically and carry a checksum, so a damaged shard raises instead of being read."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np


class EmbeddingCacheError(RuntimeError):
    pass


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    def __init__(self, root: Path, encoder_key: str):
        self.dir = Path(root) / "embeddings" / encoder_key
        self.dir.mkdir(parents=True, exist_ok=True)
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
            except (OSError, ValueError, KeyError) as exc:
                raise EmbeddingCacheError(
                    f"embedding cache shard {shard} is damaged ({exc}); delete it (or {self.dir}) to re-encode"
                ) from None
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
        if not hashes:
            return
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".npz.tmp")
        os.close(fd)
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=np.array(hashes), vectors=np.asarray(vectors, dtype=np.float32))
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        name = f"shard-{digest[:16]}"
        # checksum first, data second: a shard is only visible once its checksum exists
        (self.dir / f"{name}.json").write_text(json.dumps({"sha256": digest, "n": len(hashes)}))
        Path(tmp).replace(self.dir / f"{name}.npz")
        store = self._load()
        store.update(zip(hashes, np.asarray(vectors, dtype=np.float32)))
