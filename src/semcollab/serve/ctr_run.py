"""Serving-side view of a saved CTR run (``semcollab ctr train``): p(like) of one (user, item, history) per request.
It shares the fields, id lookups and item records of every served run (:class:`~semcollab.serve.ranker.LoadedRun`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .ranker import LoadedRun


@dataclass
class CTRRun(LoadedRun):
    """A loaded CTR run (``semcollab ctr train``): p(like) of one (user, item, history)."""

    kind: str = "ctr"

    SUPPORTED = ("mf", "sasrec-ctr")

    def __post_init__(self):
        self.model.eval()
        self.titles = [t or None for t in self.split.titles]
        self.item_ids = [None, *map(str, self.split.item_vocab.ids)]
        last: dict[int, np.ndarray] = {}
        for part in ("train", "valid", "test"):  # the most recent row's history of each user
            p = self.split.unsubsampled().parts[part]
            for u, h in zip(p.users.tolist(), p.history):
                last[u] = h
        self.last_history = last

    def score(self, user: int, items: list[int], history: list[int] | None) -> list[float]:
        L = self.split.history_len
        if history is None:
            hist = self.last_history.get(user, np.zeros(L, dtype=np.int64))
        else:
            h = np.asarray(history[-L:], dtype=np.int64)
            hist = np.concatenate([np.zeros(L - len(h), dtype=np.int64), h])
        n = len(items)
        batch = {"users": torch.full((n,), user), "items": torch.as_tensor(items),
                 "history": torch.as_tensor(np.tile(hist, (n, 1))), "labels": torch.zeros(n),
                 "row": torch.zeros(n, dtype=torch.long)}
        with torch.inference_mode():
            return torch.sigmoid(self.model.logits(batch).float()).tolist()
