"""Interaction filters."""

from __future__ import annotations

import pandas as pd

from ..errors import DataError


def k_core(df: pd.DataFrame, user_k: int = 5, item_k: int = 5, max_iter: int = 100) -> pd.DataFrame:
    """Iteratively drop users with < ``user_k`` and items with < ``item_k`` interactions until stable.

    One pass is not enough: removing a sparse item can push a user below the threshold again."""
    if user_k <= 1 and item_k <= 1:
        return df
    out = df
    for _ in range(max_iter):
        ic = out["item"].map(out["item"].value_counts())
        uc = out["user"].map(out["user"].value_counts())
        keep = (ic >= item_k) & (uc >= user_k)
        if keep.all():
            break
        out = out[keep]
    else:
        raise DataError(f"k-core filtering did not converge in {max_iter} passes")
    if len(out) == 0:
        raise DataError(f"k-core filtering (user_k={user_k}, item_k={item_k}) removed every interaction")
    return out.reset_index(drop=True)


def min_rating(df: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """Keep interactions with rating >= threshold (implicit feedback from explicit ratings)."""
    if threshold is None:
        return df
    if "rating" not in df.columns:
        raise DataError(f"data.min_rating={threshold} was set but the dataset has no 'rating' column")
    return df[df["rating"] >= threshold].reset_index(drop=True)
