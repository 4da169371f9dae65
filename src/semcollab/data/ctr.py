"""CTR data as integer tensors: who (user), what (item), what came before (history), and the label.

Data flows one way: :class:`~semcollab.data.sources.raw.CTRData` (raw string ids, per-row histories) ->
:func:`prepare_ctr` -> :class:`CTRSplit` -> models -> probabilities -> AUC / UAUC / log-loss.
Users and items are indexed over all three parts (ids are known in advance; labels are not), so a
cold item keeps its untrained embedding instead of crashing; ``warm`` says whether the row's item
was seen in training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..errors import DataError
from .sources.raw import CTRData
from .vocab import Vocab, VocabSizes

STAGES = ("train", "valid", "test")


@dataclass
class CTRPart:
    users: np.ndarray  # (n,) user index
    items: np.ndarray  # (n,) item index (1..n_items)
    labels: np.ndarray  # (n,) 0/1
    warm: np.ndarray  # (n,) bool
    history: np.ndarray  # (n, history_len) item indices, left-padded with 0, oldest first

    def __len__(self) -> int:
        return len(self.users)

    def take(self, idx: np.ndarray) -> CTRPart:
        return CTRPart(self.users[idx], self.items[idx], self.labels[idx], self.warm[idx], self.history[idx])

    def batch(self, idx: np.ndarray, device="cpu") -> dict:
        """Tensors of rows ``idx`` (``row`` = the row numbers, so LM models can look up prompts)."""
        return {"row": torch.as_tensor(idx), "users": torch.as_tensor(self.users[idx], device=device),
                "items": torch.as_tensor(self.items[idx], device=device),
                "labels": torch.as_tensor(self.labels[idx], dtype=torch.float32, device=device),
                "history": torch.as_tensor(self.history[idx], device=device)}


@dataclass
class CTRSplit(VocabSizes):
    name: str
    parts: dict[str, CTRPart]
    user_vocab: Vocab
    item_vocab: Vocab
    titles: list[str]  # index = item index; 0 = padding ("")
    history_len: int
    subsample: dict  # what was cut for the CPU budget, per stage ({} = nothing)
    full: dict[str, CTRPart] | None = None  # the parts before any subsample (for cheap stages such as MF)

    def unsubsampled(self) -> CTRSplit:
        """The same split with every part whole: embedding models (the MF inside CoLLM / SeLLa-Rec) can
        use all rows when only the LM stages need a CPU budget."""
        if not self.subsample or self.full is None:
            return self
        return CTRSplit(self.name, dict(self.full), self.user_vocab, self.item_vocab, self.titles, self.history_len,
                        {}, None)

    @property
    def stats(self) -> dict:
        """Sizes, per-part rows / positive rate / warm and cold rows, and the subsample (a property, like
        :attr:`semcollab.data.Split.stats`)."""
        out = {"users": self.n_users, "items": self.n_items, "history_len": self.history_len}
        for s, p in self.parts.items():
            out[s] = {"rows": len(p), "positive": float(p.labels.mean()) if len(p) else 0.0,
                      "warm": int(p.warm.sum()), "cold": int((~p.warm).sum())}
        if self.subsample:
            out["subsample"] = self.subsample
        return out


def subsample_index(n_rows: int, n: int | None, seed: int) -> np.ndarray:
    """The first-drawn ``n`` of ``n_rows`` rows in a fixed random order, sorted (the same ``n`` and seed give
    the same rows, and a smaller ``n`` is a subset of a larger one)."""
    if n is None or n >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).permutation(n_rows)[:n])


def _subsample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if n is None or n >= len(frame):
        return frame
    return frame.iloc[subsample_index(len(frame), n, seed)].reset_index(drop=True)


def prepare_ctr(data: CTRData, history_len: int = 10, max_rows: dict | None = None, seed: int = 0) -> CTRSplit:
    """Index ``data`` and cut each row's history to its ``history_len`` most recent items.

    ``max_rows``: optional ``{"train": n, "valid": n, "test": n}`` for CPU budgets; the cut is recorded in
    ``CTRSplit.subsample`` so every table can say which rows it used."""
    if history_len < 1:
        raise DataError(f"history_len must be >= 1, got {history_len}")
    frames = {s: getattr(data, s) for s in STAGES}
    for s, f in frames.items():
        if len(f) == 0:
            raise DataError(f"{data.name}: the {s} part is empty")
        for col in ("user", "item", "label"):
            if col not in f.columns:
                raise DataError(f"{data.name} {s}: missing column {col!r}; found {list(f.columns)}")
    # ids are indexed over the whole data, before any subsample: a row keeps its indices whatever budget
    # is chosen for the other parts (cached LM stages are keyed by the rows they train on)
    hist_ids = [h for f in frames.values() if "history" in f.columns for hs in f["history"] for h in hs]
    all_users = pd.concat([f["user"] for f in frames.values()]).astype(str)
    all_items = pd.concat([f["item"] for f in frames.values()] + [pd.Series(hist_ids, dtype=object),
                                                                     data.items["item"]]).astype(str)
    user_vocab = Vocab.build(all_users, 0, "user")
    item_vocab = Vocab.build(all_items, 1, "item")
    whole = dict(frames)
    subsample = {}
    for s, n in (max_rows or {}).items():
        if s not in frames:
            raise DataError(f"max_rows has unknown part {s!r}; use {STAGES}")
        if n is not None and n < len(frames[s]):
            subsample[s] = {"rows": int(n), "of": len(frames[s]), "seed": seed}
            frames[s] = _subsample(frames[s], n, seed)
    titles = [""] * (len(item_vocab) + 1)
    if "title" in data.items.columns:
        for raw, title in zip(data.items["item"].astype(str), data.items["title"].astype(str)):
            titles[item_vocab.encode(raw)] = "" if title in ("nan", "None") else title
    def to_part(f: pd.DataFrame) -> CTRPart:
        hist = np.zeros((len(f), history_len), dtype=np.int64)
        if "history" in f.columns:
            for r, hs in enumerate(f["history"]):
                hs = list(hs)[-history_len:]
                if hs:
                    hist[r, history_len - len(hs):] = [item_vocab.encode(h) for h in hs]
        warm = f["warm"].to_numpy(bool) if "warm" in f.columns else np.ones(len(f), dtype=bool)
        return CTRPart(user_vocab.encode_many(f["user"]), item_vocab.encode_many(f["item"]),
                       f["label"].to_numpy(np.int64), warm, hist)

    parts = {s: to_part(f) for s, f in frames.items()}
    full = {s: (to_part(whole[s]) if s in subsample else parts[s]) for s in STAGES} if subsample else None
    return CTRSplit(data.name, parts, user_vocab, item_vocab, titles, history_len, subsample, full)
