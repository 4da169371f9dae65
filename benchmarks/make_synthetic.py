"""Synthetic interaction tables of ML-20M to Amazon-Books shape, generated locally (numpy, seeded; no download),
for the cost-growth study of issue 31 (benchmarks/bench_scale.py).

The shape is realistic where cost depends on it, not in its preferences (timing only: the data has none):

* item popularity is Zipf-like (p ~ 1 / rank^zipf over a random permutation of the item ids), and every item has at
  least ``min_per_item`` events, so the 5-core filter of ``data prepare`` keeps the requested number of items;
* per-user history lengths are heavy-tailed (lognormal weights, ``min_per_user`` at least), summing exactly to the
  requested number of interactions;
* timestamps increase strictly per user (exponential gaps of about a day), so no (user, item, timestamp) repeats.

Output: one Parquet file with integer columns ``user``, ``item``, ``timestamp`` in user then time order (as ML-20M's
ratings.csv), which ``semcollab data prepare table --data.path=FILE`` reads (data.user_col / item_col / time_col
are the defaults), plus ``FILE.meta.json`` (the parameters: a later call with the same ones reuses the file) and
``FILE.yaml`` (the data config). All three are written atomically.

Usage: python benchmarks/make_synthetic.py OUT.parquet --interactions 1000000 --items 10000 --users 10000
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 1


def history_lengths(rng: np.random.Generator, n_users: int, n_interactions: int, min_per_user: int,
                    sigma: float) -> np.ndarray:
    """Per-user event counts: ``min_per_user`` each, the rest spread by lognormal weights (a heavy tail)."""
    spare = n_interactions - min_per_user * n_users
    weights = rng.lognormal(0.0, sigma, n_users)
    return min_per_user + rng.multinomial(spare, weights / weights.sum())


def item_column(rng: np.random.Generator, n_items: int, n_interactions: int, min_per_item: int,
                zipf: float) -> np.ndarray:
    """``n_interactions`` item ids in 0..n_items-1, shuffled: each item ``min_per_item`` times, the rest Zipf."""
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    cdf = np.cumsum(ranks ** -zipf)
    cdf /= cdf[-1]
    extra = np.searchsorted(cdf, rng.random(n_interactions - min_per_item * n_items), side="right")
    by_rank = np.concatenate([np.repeat(np.arange(n_items), min_per_item), np.minimum(extra, n_items - 1)])
    item_of_rank = rng.permutation(n_items)  # the most popular item is not item 0
    return item_of_rank[by_rank[rng.permutation(n_interactions)]]


def timestamps(rng: np.random.Generator, lengths: np.ndarray) -> np.ndarray:
    """Strictly increasing seconds within each user (users' rows contiguous, in ``lengths`` order)."""
    n_users, n = len(lengths), int(lengths.sum())
    gaps = 1 + rng.exponential(86_400.0, n).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    csum = np.cumsum(gaps)
    before = np.repeat(csum[starts] - gaps[starts], lengths)  # the running sum up to each user's first row
    first = rng.integers(1_300_000_000, 1_600_000_000, n_users)
    return np.repeat(first, lengths) + csum - before


def check_shape(n_interactions: int, n_items: int, n_users: int, min_per_user: int, min_per_item: int) -> None:
    if min(n_interactions, n_items, n_users) < 1:
        raise SystemExit("--interactions, --items and --users must be >= 1")
    if n_interactions < min_per_user * n_users:
        raise SystemExit(f"--interactions {n_interactions} < {min_per_user} x --users {n_users}: every user needs "
                         f"{min_per_user} events to pass the 5-core filter")
    if n_interactions < min_per_item * n_items:
        raise SystemExit(f"--interactions {n_interactions} < {min_per_item} x --items {n_items}: every item needs "
                         f"{min_per_item} events to pass the 5-core filter")


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def make_synthetic(path: str | Path, n_interactions: int, n_items: int, n_users: int, seed: int = 0,
                   zipf: float = 0.8, sigma: float = 1.0, min_per_user: int = 5, min_per_item: int = 5,
                   log=print) -> dict:
    """Write the table to ``path`` (Parquet) unless a file made with the same parameters is there; return its
    meta (parameters, file size, seconds, whether it was reused)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_shape(n_interactions, n_items, n_users, min_per_user, min_per_item)
    path = Path(path)
    params = {"version": GENERATOR_VERSION, "interactions": n_interactions, "items": n_items, "users": n_users,
              "seed": seed, "zipf": zipf, "lognormal_sigma": sigma, "min_per_user": min_per_user,
              "min_per_item": min_per_item}
    meta_path = path.with_name(path.name + ".meta.json")
    if path.is_file() and meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if old.get("params") == params and old.get("bytes") == path.stat().st_size:
            if log:
                log(f"reusing {path} ({old['bytes'] / 1e6:.1f} MB)")
            return {**old, "reused": True}
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    lengths = history_lengths(rng, n_users, n_interactions, min_per_user, sigma)
    users = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    items = item_column(rng, n_items, n_interactions, min_per_item, zipf).astype(np.int64)
    ts = timestamps(rng, lengths)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    pq.write_table(pa.table({"user": users, "item": items, "timestamp": ts}), tmp)
    os.replace(tmp, path)
    meta = {"params": params, "bytes": path.stat().st_size, "seconds": round(time.perf_counter() - t0, 2),
            "max_history": int(lengths.max()), "median_history": float(np.median(lengths)),
            "top_item_share": float(np.bincount(items).max() / n_interactions)}
    _write_text_atomic(meta_path, json.dumps(meta, indent=1))
    _write_text_atomic(path.with_name(path.name + ".yaml"),
                       f"data:\n  name: table\n  path: {path.resolve()}\n  user_col: user\n  item_col: item\n"
                       "  time_col: timestamp\n")
    if log:
        log(f"wrote {path}: {n_interactions} interactions, {n_users} users, {n_items} items, "
            f"{meta['bytes'] / 1e6:.1f} MB in {meta['seconds']} s")
    return {**meta, "reused": False}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the Parquet file to write")
    ap.add_argument("--interactions", type=int, required=True)
    ap.add_argument("--items", type=int, required=True)
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--zipf", type=float, default=0.8, help="popularity exponent (p ~ 1/rank^zipf)")
    ap.add_argument("--sigma", type=float, default=1.0, help="lognormal sigma of the history-length weights")
    a = ap.parse_args(argv)
    make_synthetic(a.out, a.interactions, a.items, a.users, a.seed, a.zipf, a.sigma)


if __name__ == "__main__":
    main()
