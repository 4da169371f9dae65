"""Item text as ``"attribute is value; attribute is value; ..."`` (ReaEmb / LLMEmb), and its contrastive views.

ReaEmb's stage 1 makes two views of an item by splitting this text on ``";"``, shuffling the attributes
and dropping 40% of them, so the separator must only ever separate attributes: a ``";"`` inside a value
is written as ``","`` (the authors write ``"."``), and line breaks become spaces. Each value is cut to
``max_chars`` characters (100 in the paper) so one long field (a description) cannot crowd out the rest.
Missing values (None, NaN, blank, the string ``"nan"``...) are skipped, never rendered as ``"nan"``
(the rule of :func:`semcollab.text.templates.clean_value`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .templates import clean_value

SEPARATOR = "; "

# Readable attribute names for the item-table columns of our loaders (S3-Rec Amazon/Yelp, Amazon, ML);
# a column not listed here is named after itself with "_" read as a space.
ATTRIBUTE_NAMES = {
    "title": "title",
    "name": "name",
    "brand": "brand",
    "categories": "category",
    "category": "category",
    "attributes": "attribute",
    "keywords": "keywords",
    "description": "description",
    "price": "price",
    "store": "store",
    "features": "features",
    "city": "city",
    "stars": "stars",
    "genres": "genre",
    "year": "year",
}


def attribute_name(field: str, names: Mapping[str, str] | None = None) -> str:
    """The name an attribute is written under: ``names`` first, then :data:`ATTRIBUTE_NAMES`."""
    if names and field in names:
        return names[field]
    return ATTRIBUTE_NAMES.get(field, field.replace("_", " "))


def attribute_value(value, max_chars: int = 100) -> str:
    """One cell as an attribute value: ``""`` when missing, separators neutralised, cut to ``max_chars``."""
    text = clean_value(value)
    text = " ".join(text.replace(";", ",").split())  # newlines/tabs/runs of spaces -> one space
    return text[:max_chars].rstrip()


def attribute_text(values: Mapping, fields: Sequence[str], max_chars: int = 100,
                   names: Mapping[str, str] | None = None) -> str:
    """``"name is value; ..."`` over ``fields`` (in that order) of one item; empty fields are left out."""
    parts = []
    for f in fields:
        v = attribute_value(values.get(f), max_chars)
        if v:
            parts.append(f"{attribute_name(f, names)} is {v}")
    return SEPARATOR.join(parts)


def attribute_texts(items: pd.DataFrame, fields: Sequence[str], max_chars: int = 100,
                    names: Mapping[str, str] | None = None) -> list[str]:
    """One text per row of ``items`` (every row: pass ``split.items.iloc[1:]`` to leave out the padding
    row, or use :func:`item_attribute_texts`). A field the frame lacks is an error, not silently skipped."""
    if not isinstance(max_chars, int) or max_chars <= 0:
        raise ValueError(f"max_chars must be a positive integer, got {max_chars!r}")
    missing = [f for f in fields if f not in items.columns]
    if missing:
        raise KeyError(f"attribute field(s) {missing} are not columns of the item table {list(items.columns)}")
    cols = {f: items[f].tolist() for f in fields}
    return [attribute_text({f: cols[f][k] for f in fields}, fields, max_chars, names) for k in range(len(items))]


def item_attribute_texts(split, fields: Sequence[str] | None = None, max_chars: int = 100,
                         names: Mapping[str, str] | None = None) -> list[str]:
    """Texts of items 1..N of a :class:`semcollab.data.Split` (``texts[i]`` describes item index ``i + 1``,
    as :func:`semcollab.text.templates.render_item_texts` does); ``fields`` default: ``split.text_fields``."""
    return attribute_texts(split.items.iloc[1:], list(fields or split.text_fields), max_chars, names)


def split_attributes(text: str) -> list[str]:
    """The non-empty attributes of an attribute text."""
    return [p.strip() for p in text.split(";") if p.strip()]


def attribute_views(text: str, drop: float = 0.4, rng: np.random.Generator | int | None = None, n: int = 2,
                    distinct: bool = True, max_tries: int = 10) -> list[str]:
    """``n`` views of ``text``: its attributes shuffled, ``floor(drop * count)`` of them dropped (as the
    authors do), at least one kept. With ``distinct`` the views are redrawn (up to ``max_tries`` times)
    while they are all identical, since identical views teach a contrastive loss nothing; an item with a
    single attribute necessarily gives identical views. Deterministic for an integer seed."""
    if not 0 <= drop < 1:
        raise ValueError(f"drop must be in [0, 1), got {drop!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    rng = np.random.default_rng(rng)
    parts = split_attributes(text)
    if not parts:
        return [""] * n
    keep = max(1, len(parts) - int(len(parts) * drop))

    def draw() -> list[str]:
        return [SEPARATOR.join(parts[i] for i in rng.permutation(len(parts))[:keep]) for _ in range(n)]

    views = draw()
    for _ in range(max_tries):
        if not distinct or n == 1 or len(set(views)) > 1:
            break
        views = draw()
    return views
