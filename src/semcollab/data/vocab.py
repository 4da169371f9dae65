"""Raw id <-> contiguous index mapping, saved with every prepared dataset."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UnknownIdError


@dataclass
class Vocab:
    """Maps raw string ids to indices ``offset .. offset+len-1``.

    Items use ``offset=1`` so that index 0 is the padding item of sequence models."""

    ids: np.ndarray
    offset: int = 0
    kind: str = "item"
    _index: dict = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=object).astype(str)
        self._index = {v: i + self.offset for i, v in enumerate(self.ids)}
        if len(self._index) != len(self.ids):
            raise ValueError(f"{self.kind} vocabulary has duplicate ids")

    def __len__(self) -> int:
        return len(self.ids)

    def encode(self, raw) -> int:
        try:
            return self._index[str(raw)]
        except KeyError:
            raise UnknownIdError(
                f"unknown {self.kind} id {raw!r}: it is not in the training vocabulary "
                f"({len(self)} {self.kind}s, e.g. {list(self.ids[:3])})"
            ) from None

    def encode_many(self, raws) -> np.ndarray:
        return np.array([self.encode(r) for r in raws], dtype=np.int64)

    def decode(self, idx: int) -> str:
        j = int(idx) - self.offset
        if not 0 <= j < len(self.ids):
            raise UnknownIdError(f"{self.kind} index {idx} is out of range [{self.offset}, {self.offset + len(self) - 1}]")
        return str(self.ids[j])

    @classmethod
    def build(cls, raw_ids, offset: int, kind: str) -> Vocab:
        uniq = pd_unique_sorted(raw_ids)
        return cls(uniq, offset, kind)


def pd_unique_sorted(values) -> np.ndarray:
    """Unique ids, numerically sorted when every id is an integer (so '10' follows '9')."""
    uniq = np.unique(np.asarray(values, dtype=str))
    try:
        order = np.argsort(uniq.astype(np.int64), kind="stable")
        return uniq[order]
    except ValueError:
        return uniq


class VocabSizes:
    """``n_users`` / ``n_items`` of a split that holds ``user_vocab`` and ``item_vocab`` (ranking and CTR splits)."""

    user_vocab: Vocab
    item_vocab: Vocab

    @property
    def n_users(self) -> int:
        return len(self.user_vocab)

    @property
    def n_items(self) -> int:
        """Number of real items; item indices run 1..n_items and 0 is padding."""
        return len(self.item_vocab)

