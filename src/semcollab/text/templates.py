"""Item text templates: how an item's metadata becomes the string a language model reads."""

from __future__ import annotations

import string

import pandas as pd


class _Blank(dict):
    def __missing__(self, key):
        return ""


def render_item_texts(items: pd.DataFrame, fields: list[str], template: str | None = None) -> list[str]:
    """One text per real item (rows 1..N of ``items``; row 0 is padding).

    ``template`` is a Python format string over the item columns, e.g. ``"{title} ({year}). Genres: {genres}"``;
    by default every text field is written as ``"field: value"`` joined with ``"; "``. A template naming
    a column the dataset lacks is an error, not an empty string."""
    rows = items.iloc[1:]
    if template is None:
        return ["; ".join(f"{f}: {r[f]}" for f in fields if f in r and str(r[f]).strip()) for _, r in rows.iterrows()]
    names = {fname for _, fname, _, _ in string.Formatter().parse(template) if fname}
    missing = sorted(names - set(items.columns))
    if missing:
        raise KeyError(f"text template uses column(s) {missing} that the item table lacks; it has {list(items.columns)}")
    cols = rows[sorted(names)].astype(str).to_dict("records") if names else [{}] * len(rows)
    return [" ".join(template.format_map(_Blank(c)).split()) for c in cols]
