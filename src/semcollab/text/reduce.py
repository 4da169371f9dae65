"""PCA / whitening of item embeddings, fitted on training items only (as in LLMEmb and AlphaFuse).

Fitting on every item would let the projection see the text of items that only appear in the test
period; fitting on training items keeps the semantic side leakage-free too."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PCAReducer:
    mean: np.ndarray
    components: np.ndarray  # (dim, d_in)
    scale: np.ndarray  # 1/sqrt(eigenvalue) when whitening, else ones
    explained_variance_ratio: np.ndarray

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) @ self.components.T) * self.scale


def fit_pca(x: np.ndarray, fit_rows: np.ndarray, dim: int, whiten: bool = False, eps: float = 1e-6) -> PCAReducer:
    """Fit PCA (optionally whitening) on ``x[fit_rows]``."""
    sub = np.asarray(x[fit_rows], dtype=np.float64)
    if len(sub) < 2:
        raise ValueError("PCA needs at least two training items")
    if dim > min(sub.shape):
        raise ValueError(f"PCA dim {dim} exceeds min(n_train_items, d) = {min(sub.shape)}")
    mean = sub.mean(0)
    _, svals, vt = np.linalg.svd(sub - mean, full_matrices=False)
    var = svals ** 2 / (len(sub) - 1)
    if var.sum() <= 0:
        raise ValueError("PCA: every training item has the same vector (are all item texts identical?)")
    scale = 1.0 / np.sqrt(var[:dim] + eps) if whiten else np.ones(dim)
    return PCAReducer(mean.astype(np.float32), vt[:dim].astype(np.float32), scale.astype(np.float32),
                      (var[:dim] / var.sum()).astype(np.float32))
