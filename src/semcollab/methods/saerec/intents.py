"""SAE latents as named *intents*, and per-user intent retrieval (training data only).

* Each latent gets a label: the top TF-IDF terms of the texts of its most strongly activating items
  (weighted by activation), and a density: the share of items on which it fires.
* Personal intents of a user: latents most active over the user's recent items, each activation
  weighted by the latent's inverse item frequency (TF-IDF over latents), so a latent that fires on
  every item does not crowd out distinctive ones.
* Public intents: latents with the largest activation mass over all training interactions, or (the
  SAERec authors' rule) the latents with the lowest IDF.
* Keep-list: an ``intents.json`` whose records carry ``"keep"`` (an LM's verdict that the latent is a
  recommendation intent, :func:`~semcollab.methods.saerec.lm_labels.judge_library`) restricts which latents
  can be intents (:func:`load_keep`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...errors import IntentFileError  # noqa: F401  (defined in errors.py)
from .sae import SparseAutoencoder


@torch.no_grad()
def item_activations(sae: SparseAutoencoder, vectors: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sparse activation table: latent ids and values ``(n_rows, k)`` of each row's top-k latents."""
    k = k or sae.cfg.k
    z = sae.encode(torch.as_tensor(vectors, dtype=torch.float32))
    top = z.topk(k, dim=-1)
    return top.indices.numpy().astype(np.int64), top.values.numpy().astype(np.float32)


def latent_idf(act_idx: np.ndarray, act_val: np.ndarray, n_latents: int) -> np.ndarray:
    """log(N / (1 + df)) with df = number of items on which the latent fires (> 0)."""
    fired = act_val > 0
    df = np.bincount(act_idx[fired], minlength=n_latents)
    return np.log(len(act_idx) / (1.0 + df)).clip(min=0).astype(np.float32)


def public_intents(act_idx: np.ndarray, act_val: np.ndarray, train_items: np.ndarray, n_latents: int, n: int,
                   allowed: np.ndarray | None = None) -> np.ndarray:
    """Latents with the largest total activation over the training interactions (items repeated by count);
    only ids in ``allowed`` (e.g. a keep-list) when given."""
    mass = np.zeros(n_latents, dtype=np.float64)
    np.add.at(mass, act_idx[train_items].ravel(), act_val[train_items].ravel())
    order = np.argsort(-mass, kind="stable")
    if allowed is not None:
        order = order[np.isin(order, allowed)]
    return order[:n]


def low_idf_intents(idf: np.ndarray, n: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """The ``n`` latents with the lowest IDF (the most common; ties: lower id first), only ids in ``allowed``
    when given."""
    ids = np.arange(len(idf)) if allowed is None else np.sort(np.asarray(allowed, dtype=np.int64))
    return ids[np.argsort(np.asarray(idf)[ids], kind="stable")[:n]]


def personal_intents(history: np.ndarray, act_idx: np.ndarray, act_val: np.ndarray, idf: np.ndarray, n: int,
                     recent: int = 20) -> list[tuple[int, float]]:
    """Top-``n`` (latent, weight) of one user from the last ``recent`` items of their history."""
    h = np.asarray(history)[-recent:]
    h = h[h > 0]
    if len(h) == 0:
        raise ValueError("personal intents need a non-empty history")
    w = np.zeros(len(idf), dtype=np.float64)
    np.add.at(w, act_idx[h].ravel(), (act_val[h] * idf[act_idx[h]]).ravel())
    top = np.argsort(-w, kind="stable")[:n]
    return [(int(j), float(w[j])) for j in top if w[j] > 0]



@dataclass
class IntentLibrary:
    labels: list[str]
    keywords: list[list[str]]
    density: np.ndarray
    top_items: list[list[int]]  # item indices, strongest first
    lm_labels: dict[int, str] = field(default_factory=dict)  # optional names from a language model (lm_labels.py)
    keep: dict[int, bool] = field(default_factory=dict)  # optional LM verdict "is a recommendation intent"
    keep_scores: dict[int, float] = field(default_factory=dict)  # the verdict's logit margin, yes minus no

    def to_records(self, item_ids=None, item_texts=None, top_n_items: int = 5) -> list[dict]:
        recs = []
        for j, (lab, kw) in enumerate(zip(self.labels, self.keywords)):
            if self.density[j] == 0:
                continue
            items = self.top_items[j][:top_n_items]
            recs.append({"latent": j, "label": lab, **({"lm_label": self.lm_labels[j]} if j in self.lm_labels else {}),
                         **({"keep": bool(self.keep[j])} if j in self.keep else {}),
                         **({"keep_score": float(self.keep_scores[j])} if j in self.keep_scores else {}),
                         "keywords": kw, "density": float(self.density[j]),
                         "top_items": [item_ids[i - 1] if item_ids is not None else int(i) for i in items],
                         **({"top_item_texts": [item_texts[i - 1] for i in items]} if item_texts else {})})
        return recs

    def save(self, path: Path, item_ids=None, item_texts=None) -> None:
        Path(path).write_text(json.dumps(self.to_records(item_ids, item_texts), indent=2))

    def adopt_lm_labels(self, path: Path) -> int:
        """Take the LM labels of a saved ``intents.json`` (``semcollab intents --lm-labels``) into this library.

        The file must describe the same SAE: every latent it lists must carry this library's TF-IDF label,
        otherwise its names would be attached to different latents. Returns how many labels were taken."""
        saved = read_intent_records(path, self.labels)
        lm = {j: r["lm_label"] for j, r in saved.items() if r.get("lm_label")}
        self.lm_labels.update(lm)
        return len(lm)


def read_intent_records(path: Path, labels: list[str]) -> dict[int, dict]:
    """The records of a saved ``intents.json`` by latent, checked to describe the SAE whose TF-IDF labels
    are ``labels`` (every listed latent must carry its label), else :class:`IntentFileError`."""
    try:
        recs = json.loads(Path(path).read_text())
        saved = {int(r["latent"]): r for r in recs}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise IntentFileError(f"{path} is not an intents.json written by `semcollab intents`: {exc}") from None
    bad = [j for j, r in saved.items() if not 0 <= j < len(labels) or r.get("label") != labels[j]]
    if bad:
        raise IntentFileError(f"{path} was built from a different SAE than this model's (latent {bad[0]} "
                              "differs); rebuild it with the run's dataset, template and SAE settings")
    return saved


def load_keep(path: Path, labels: list[str]) -> np.ndarray:
    """Boolean mask over latents: those whose record in ``path`` says ``"keep": true``.

    Latents the file does not list (dead ones) or does not judge are not kept. The file must belong to the
    SAE whose TF-IDF labels are ``labels``, carry keep flags, and keep at least one latent."""
    saved = read_intent_records(path, labels)
    if not any("keep" in r for r in saved.values()):
        raise IntentFileError(f"{path} carries no \"keep\" flags; judge its intents first "
                              "(semcollab.methods.saerec.lm_labels.judge_library)")
    mask = np.zeros(len(labels), dtype=bool)
    for j, r in saved.items():
        mask[j] = r.get("keep") is True
    if not mask.any():
        raise IntentFileError(f"{path} keeps no latent (every \"keep\" is false): no intent could be retrieved")
    return mask


def build_library(act_idx: np.ndarray, act_val: np.ndarray, texts: list[str], n_latents: int, top_n: int = 10,
                  n_keywords: int = 3) -> IntentLibrary:
    """Label every latent from its top-activating items. Rows of ``act_*`` are item indices 0..N (0 = padding),
    ``texts[i - 1]`` is item i's text."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    n_rows = len(act_idx)
    fired = act_val > 0
    fired[0] = False  # row 0 is padding: whatever the SAE makes of a zero vector is no item's intent
    rows = np.repeat(np.arange(n_rows), act_idx.shape[1])[fired.ravel()]
    lat, val = act_idx.ravel()[fired.ravel()], act_val.ravel()[fired.ravel()]
    density = np.bincount(lat, minlength=n_latents) / max(n_rows - 1, 1)
    big = len(texts) >= 100  # on tiny corpora "seen twice" and "in < 30% of items" cannot both hold
    vec = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][\w'&-]+\b",
                          min_df=2 if big else 1, max_df=0.3 if big else 1.0, sublinear_tf=True)
    try:
        X = vec.fit_transform(texts)
        vocab = np.array(vec.get_feature_names_out())
    except ValueError:  # no usable terms (e.g. id-only texts with too few repeats)
        X, vocab = None, np.array([])
    order = np.lexsort((-val, lat))
    lat_s, rows_s, val_s = lat[order], rows[order], val[order]
    bounds = np.searchsorted(lat_s, np.arange(n_latents + 1))
    labels, keywords, tops = [], [], []
    for j in range(n_latents):
        sl = slice(bounds[j], bounds[j + 1])
        items, weights = rows_s[sl][:top_n], val_s[sl][:top_n]
        tops.append(items.tolist())
        kw: list[str] = []
        if len(items) and X is not None and len(vocab):
            score = np.asarray(X[items - 1].T @ weights).ravel()
            best = np.argsort(-score)[:n_keywords]
            kw = [str(vocab[b]) for b in best if score[b] > 0]
        keywords.append(kw)
        labels.append(" / ".join(kw) if kw else (f"latent {j}" if len(items) else f"latent {j} (dead)"))
    return IntentLibrary(labels, keywords, density, tops)


def shuffle_items(idx: np.ndarray, val: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The activation rows of the real items (row 0 is padding) permuted among them: every latent keeps its
    document frequency and IDF, every item a real activation pattern, but not its own."""
    perm = np.random.default_rng(seed).permutation(len(idx) - 1) + 1
    order = np.concatenate([[0], perm])
    return idx[order], val[order]
