"""Alignment probes: how well can semantic item vectors be mapped onto collaborative ones?

Three maps X -> Y are fitted on one set of items and scored on another:

* ``linear``   — ridge regression;
* ``lowrank``  — reduced-rank ridge (the ridge solution projected onto its top-r output directions);
* ``mlp``      — a one-hidden-layer MLP (scikit-learn).

Scores on the held-out items: R^2 (variance-weighted), linear CKA between predicted and true
vectors, and k-NN neighbourhood overlap (mean Jaccard of each item's k nearest neighbours under
the predicted vs the true vectors). Splits: ``in_distribution`` (random items), ``head_to_tail``
(fit on popular items, test on the long tail) and ``old_to_new`` (fit on items first seen earlier,
test on items first seen later). A gap between in-distribution and shifted scores says that an
alignment learned where data is plentiful does not transfer to where it is needed."""

from __future__ import annotations

import numpy as np


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al., 2019) between two representations of the same rows."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    hsic = np.linalg.norm(x.T @ y, "fro") ** 2
    den = np.linalg.norm(x.T @ x, "fro") * np.linalg.norm(y.T @ y, "fro")
    return float(hsic / den) if den > 0 else 0.0


def knn_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean Jaccard of cosine k-NN sets computed in ``a`` and in ``b`` (same rows, self excluded)."""
    k = min(k, len(a) - 1)
    if k < 1:
        return float("nan")

    def knn(m):
        m = m / np.linalg.norm(m, axis=1, keepdims=True).clip(min=1e-12)
        s = m @ m.T
        np.fill_diagonal(s, -np.inf)
        return np.argpartition(-s, k, axis=1)[:, :k]

    na, nb = knn(a), knn(b)
    inter = np.array([len(set(r1) & set(r2)) for r1, r2 in zip(na, nb)])
    return float(np.mean(inter / (2 * k - inter)))


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    ss_res = ((y - pred) ** 2).sum()
    ss_tot = ((y - y.mean(0)) ** 2).sum()
    return float(1 - ss_res / ss_tot) if ss_tot > 0 else float("nan")


def fit_probe(kind: str, x: np.ndarray, y: np.ndarray, alpha: float = 1.0, rank: int = 8, seed: int = 0):
    """Return a function mapping X -> predicted Y, fitted on (x, y)."""
    from sklearn.linear_model import Ridge

    if kind == "linear":
        m = Ridge(alpha=alpha).fit(x, y)
        return m.predict
    if kind == "lowrank":
        m = Ridge(alpha=alpha).fit(x, y)
        fitted = m.predict(x)
        mu = fitted.mean(0)
        _, _, vt = np.linalg.svd(fitted - mu, full_matrices=False)
        proj = vt[:rank].T @ vt[:rank]
        return lambda z: (m.predict(z) - mu) @ proj + mu
    if kind == "mlp":
        from sklearn.neural_network import MLPRegressor

        # early stopping holds out 10% of the fit items, which needs enough of them
        m = MLPRegressor(hidden_layer_sizes=(256,), alpha=1e-3, max_iter=300, early_stopping=len(x) >= 100,
                         random_state=seed).fit(x, y)
        return m.predict
    raise ValueError(f"unknown probe {kind!r}; use linear, lowrank or mlp")


def item_splits(items: np.ndarray, popularity: np.ndarray, first_seen: np.ndarray, head_frac: float = 0.2,
                seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(fit items, test items) for each shift; ``items`` are indices with both vectors available."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(items)
    cut = int(0.8 * len(perm))
    by_pop = items[np.argsort(-popularity[items], kind="stable")]
    n_head = max(2, int(round(head_frac * len(items))))
    by_time = items[np.argsort(first_seen[items], kind="stable")]
    t_cut = int(0.8 * len(by_time))
    return {"in_distribution": (perm[:cut], perm[cut:]), "head_to_tail": (by_pop[:n_head], by_pop[n_head:]),
            "old_to_new": (by_time[:t_cut], by_time[t_cut:])}


def run_probes(semantic: np.ndarray, collaborative: np.ndarray, split, probes=("linear", "lowrank", "mlp"),
               k: int = 10, rank: int = 8, max_test: int = 3000, seed: int = 0) -> dict:
    """Fit every probe on every split; ``semantic``/``collaborative`` are (n_items + 1, d) tables."""
    pop = split.item_popularity()
    items = np.flatnonzero(pop > 0)  # items with a trained collaborative vector
    items = items[items > 0]
    first = split.train.groupby("item")["timestamp"].min()
    first_seen = np.full(split.n_items + 1, np.inf)
    first_seen[first.index.to_numpy()] = first.to_numpy()
    x_all = semantic / np.linalg.norm(semantic, axis=1, keepdims=True).clip(min=1e-12)
    y_all = collaborative
    rng = np.random.default_rng(seed)
    out = {"n_items": len(items), "k": k, "rank": rank, "splits": {}}
    for sname, (fit_idx, test_idx) in item_splits(items, pop, first_seen, seed=seed).items():
        if len(test_idx) > max_test:
            test_idx = rng.choice(test_idx, max_test, replace=False)
        res = {"n_fit": len(fit_idx), "n_test": len(test_idx),
               "cka_raw": linear_cka(x_all[test_idx], y_all[test_idx]),
               "knn_overlap_raw": knn_overlap(x_all[test_idx], y_all[test_idx], k)}
        for p in probes:
            f = fit_probe(p, x_all[fit_idx], y_all[fit_idx], rank=rank, seed=seed)
            pred = f(x_all[test_idx])
            res[p] = {"r2": r2_score(y_all[test_idx], pred), "cka": linear_cka(pred, y_all[test_idx]),
                      "knn_overlap": knn_overlap(pred, y_all[test_idx], k),
                      "r2_fit": r2_score(y_all[fit_idx], f(x_all[fit_idx]))}
        out["splits"][sname] = res
    return out


def item_table(model) -> np.ndarray:
    """The (n_items + 1, d) item vectors of a model: ID embeddings or text vectors."""
    import torch

    for attr in ("item_table", "item_vectors", "item_emb"):
        v = getattr(model, attr, None)
        if v is None:
            continue
        if callable(v) and not isinstance(v, torch.nn.Module):
            v = v()
        if isinstance(v, torch.nn.Embedding):
            v = v.weight
        return v.detach().float().cpu().numpy()[: model.n_items + 1]
    raise TypeError(f"{type(model).__name__} exposes no item vectors (item_table/item_vectors/item_emb)")
