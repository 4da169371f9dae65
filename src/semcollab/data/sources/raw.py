"""What every dataset source returns: interactions plus item text (:class:`RawDataset`), or labelled click
rows (:class:`CTRData`); and the CoLLM-style CTR split of any rated dataset."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ...errors import DataError
from ..schema import id_strings, require_columns


@dataclass
class RawDataset:
    """Interactions and item metadata as read from the source, before filtering and id remapping."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    text_fields: list[str]
    sources: list[Path] = field(default_factory=list)
    # the text template this dataset reads best with (see semcollab.text.templates); None: "field: value; ..."
    default_template: str | None = None
    stats: dict = field(default_factory=dict)  # loader facts carried into Split.stats (e.g. items_without_text)

    def __post_init__(self) -> None:
        require_columns(self.items, ["item"], f"{self.name} item table")
        self.items = self.items.reset_index(drop=True)
        self.items["item"] = id_strings(self.items["item"], f"{self.name} item table", "item")
        dup = self.items["item"].duplicated()
        if dup.any():
            row = int(dup.to_numpy().nonzero()[0][0])
            raise DataError(f"{self.name} item table: item id {self.items['item'].iloc[row]!r} appears more "
                            f"than once; first repeat at row {row}")


@dataclass
class CTRData:
    """A click-through-rate split: three frames with ``user``, ``item``, ``label``, ``timestamp``."""

    name: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    items: pd.DataFrame
    sources: list[Path] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def ctr_from_ratings(raw: RawDataset, threshold: float = 3.0, valid_frac: float = 0.1, test_frac: float = 0.1) -> CTRData:
    """CoLLM-style CTR split from explicit ratings: label = rating > threshold, global time split."""
    if "rating" not in raw.interactions.columns:
        raise DataError(f"{raw.name}: a CTR split needs a 'rating' column, which this dataset lacks")
    df = raw.interactions.sort_values("timestamp", kind="stable").reset_index(drop=True)
    df["label"] = (df["rating"].astype(float) > threshold).astype("int8")
    n = len(df)
    t1, t2 = int(n * (1 - valid_frac - test_frac)), int(n * (1 - test_frac))
    train, valid, test = df.iloc[:t1], df.iloc[t1:t2], df.iloc[t2:]
    seen = set(train["item"])
    valid = valid.assign(warm=valid["item"].isin(seen).to_numpy())
    test = test.assign(warm=test["item"].isin(seen).to_numpy())
    cols = ["user", "item", "label", "timestamp"]
    return CTRData(raw.name, train[cols].reset_index(drop=True), valid[cols + ["warm"]].reset_index(drop=True),
                   test[cols + ["warm"]].reset_index(drop=True), raw.items, raw.sources)
