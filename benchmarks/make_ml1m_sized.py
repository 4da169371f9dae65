"""Write a synthetic dataset with MovieLens-1M's shape (6,040 users, 3,706 items, ~1M events) as
RecBole atomic files, so semcollab and RecBole time the same data. Item popularity is Zipf-like and
each user's events are time ordered. Timing only: the data has no real preferences."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--users", type=int, default=6040)
    ap.add_argument("--items", type=int, default=3706)
    ap.add_argument("--events", type=int, default=1_000_209)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    # per-user history lengths: ML-1M-like heavy tail, at least 20
    lens = np.maximum(20, rng.lognormal(4.6, 1.0, a.users)).astype(int)
    lens = np.maximum(20, (lens * a.events / lens.sum()).astype(int))
    pop = 1.0 / np.arange(1, a.items + 1) ** 0.9
    pop /= pop.sum()
    users, items, ts = [], [], []
    for u, n in enumerate(lens, start=1):
        n = min(n, a.items)
        chosen = rng.choice(a.items, size=n, replace=False, p=pop) + 1
        users.append(np.full(n, u))
        items.append(chosen)
        ts.append(np.sort(rng.integers(956_703_932, 1_046_454_590, n)))
    df = pd.DataFrame({"user_id:token": np.concatenate(users), "item_id:token": np.concatenate(items),
                       "timestamp:float": np.concatenate(ts)})
    a.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out / f"{a.out.name}.inter", sep="\t", index=False)
    print(f"wrote {len(df)} events, {df['user_id:token'].nunique()} users, {df['item_id:token'].nunique()} items to {a.out}")


if __name__ == "__main__":
    main()
