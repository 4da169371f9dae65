"""S3-Rec / ICLRec sequence files (``--dataset s3rec:Beauty``) with their item text."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from ...config import DataConfig
from ...errors import DataError
from ...registry import register_source
from ...text.templates import clean_value
from ..schema import id_strings
from .files import (
    check_dataset_name,
    check_file,
    open_text,
    read_csv,
    read_text,
    require_table_columns,
    scan_text,
    shared_file,
    text_column,
)
from .raw import RawDataset

S3REC_TEXT_FIELDS = ["title", "brand", "categories", "attributes", "keywords"]
S3REC_DEFAULT_TEMPLATES = {
    "Beauty": "{title}[. Brand: {brand}][. Category: {categories}]",
    "Toys_and_Games": "{title}[. Brand: {brand}][. Category: {categories}]",
    "Sports_and_Outdoors": "{attributes}[. Keywords: {keywords}]",  # no titles were found for Sports
    "Yelp": "{title}[. Categories: {categories}]",
}
# what the S3-Rec loader fed the default "field: value" join before the item CSVs existed, byte for byte
S3REC_ATTRIBUTE_ID_TEMPLATE = "attributes: attributes {attribute_ids}"
# short dataset names: --dataset beauty is s3rec:Beauty, and s3rec:beauty is s3rec:Beauty
S3REC_ALIASES = {"beauty": "Beauty", "sports": "Sports_and_Outdoors", "toys": "Toys_and_Games", "yelp": "Yelp"}


def _s3rec_item_csv(csv_path: Path, item_ids) -> tuple[pd.DataFrame, list[str], int]:
    """The ``<name>_items.csv`` rows of ``item_ids`` (sequence order; missing items get empty text),
    its text fields and how many sequence items it lacks. Ids are read as strings, empty cells as ''."""
    table = read_csv(check_file(csv_path), dtype=str, keep_default_na=False)
    with open_text(csv_path) as fh:  # pandas renames a repeated header name to 'x.1'; read the header as written
        header = next(csv.reader(fh), [])
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(f"{csv_path}: the header names column(s) {repeated} more than once")
    require_table_columns(table, ["item_id"], csv_path)
    clash = [c for c in table.columns if c in ("item", "attribute_ids")]
    if clash:
        raise DataError(f"{csv_path}: column(s) {clash} clash with the loader's own columns; rename them")
    ids = id_strings(table["item_id"], str(csv_path), "item_id")
    dup = ids.duplicated()
    if dup.any():
        row = int(dup.to_numpy().nonzero()[0][0])
        first = int((ids == ids.iloc[row]).to_numpy().nonzero()[0][0])
        raise DataError(f"{csv_path}: column 'item_id' repeats item id {ids.iloc[row]!r}: data rows {first} and "
                        f"{row} (file lines {first + 2} and {row + 2})")
    fields = [c for c in table.columns if c not in ("item_id", "source_id")]
    table = table.assign(item_id=ids.to_numpy()).set_index("item_id")
    known = pd.Index(item_ids).isin(table.index)
    if len(table) and not known.any():
        raise DataError(f"{csv_path}: none of its {len(table)} item ids (e.g. {table.index[0]!r}) occurs in the "
                        f"sequence file (e.g. {item_ids[0]!r}); is it the item file of another dataset?")
    cols = [c for c in ("source_id", *fields) if c in table.columns]
    out = table[cols].reindex(pd.Index(item_ids, dtype=object)).reset_index(drop=True)
    for c in cols:
        out[c] = text_column(out[c]).to_numpy()
    out.insert(0, "item", list(item_ids))
    return out, fields, int((~known).sum())


def load_s3rec(path: Path, name: str | None = None) -> RawDataset:
    """``user item item ...`` per line in time order (S3-Rec/ICLRec format), with its item text.

    The files carry no timestamps, so the position in the line is used as the time. Item text:

    * ``<name>_items.csv`` beside the sequence file, when it exists (columns ``item_id`` + ``source_id``,
      ``title``, ``brand``, ``categories``, ``attributes``, ``keywords``; ``item_id`` = the ids of the
      sequence file): every column but ``item_id``/``source_id`` is a text field (``source_id``, the
      ASIN or Yelp business id, stays in the item table). Empty cells are ``''``. Items of the sequences
      the CSV lacks get empty text (``stats["items_not_in_item_file"]``); CSV rows for other items are
      ignored. Known datasets get a default template (:data:`S3REC_DEFAULT_TEMPLATES`).
    * ``<name>_item2attributes.json``: the attribute ids as the column ``attribute_ids`` (``"a173 a1
      a162"``, ``''`` for none). It is a text field only without a CSV; then the default template is
      :data:`S3REC_ATTRIBUTE_ID_TEMPLATE`, which reproduces the text this loader gave before the CSVs
      existed (use it as ``--template`` to get that input back with a CSV present).

    ``stats["items_without_text"]``: sequence items whose text fields are all empty."""
    if name:
        check_dataset_name(name, "s3rec")
    path = check_file(Path(path))
    name = name or path.stem
    scan_text(path)
    users, items, ts = [], [], []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise DataError(f"{path}: line {lineno} has a user but no items (empty history): {line.strip()!r}")
            for tok in parts:
                if not tok.lstrip("-").isdigit():
                    raise DataError(f"{path}: line {lineno} has a non-integer id {tok[:50]!r}")
            users.extend([parts[0]] * (len(parts) - 1))
            items.extend(parts[1:])
            ts.extend(range(len(parts) - 1))
    inter = pd.DataFrame({"user": users, "item": items, "timestamp": ts})
    item_ids = pd.unique(inter["item"])
    sources = [path]
    csv_path = path.with_name(f"{name}_items.csv")
    stats: dict = {}
    if csv_path.exists():
        items_df, fields, n_missing = _s3rec_item_csv(csv_path, item_ids)
        sources.append(csv_path)
        stats["items_not_in_item_file"] = n_missing
        default_template = S3REC_DEFAULT_TEMPLATES.get(name)
    else:
        items_df, fields, default_template = pd.DataFrame({"item": item_ids}), [], None
    attr_path = path.with_name(f"{name}_item2attributes.json")
    if attr_path.exists():
        check_file(attr_path)
        try:
            attrs = json.loads(read_text(attr_path))
        except (ValueError, RecursionError) as exc:
            raise DataError(f"{attr_path}: not valid JSON ({exc})") from None
        if not isinstance(attrs, dict):
            raise DataError(f"{attr_path}: expected a JSON object mapping item id -> attribute id list, "
                            f"got a {type(attrs).__name__}")
        bad = [i for i in item_ids if not isinstance(attrs.get(i, []), list)]
        if bad:
            raise DataError(f"{attr_path}: the attributes of item {bad[0]!r} are not a list: {attrs[bad[0]]!r}")
        items_df["attribute_ids"] = [" ".join(f"a{a}" for a in attrs.get(i, [])) for i in item_ids]
        sources.append(attr_path)
        if not fields:
            fields, default_template = ["attribute_ids"], S3REC_ATTRIBUTE_ID_TEMPLATE
    has_text = pd.Series(False, index=items_df.index)
    for f in fields:
        has_text |= items_df[f].map(lambda v: bool(clean_value(v).strip()))
    stats["items_without_text"] = int((~has_text).sum())
    return RawDataset(name, inter, items_df, fields, sources, default_template, stats)


@register_source("s3rec", argument="<Beauty|Sports_and_Outdoors|Toys_and_Games|Yelp>",
                 aliases={short: f"s3rec:{name}" for short, name in S3REC_ALIASES.items()},
                 help="S3-Rec sequence files: shared/data/s3rec/<name>.txt, or data.path")
def s3rec_source(cfg: DataConfig, arg: str | None) -> RawDataset:
    ds = S3REC_ALIASES.get(arg.lower(), arg)
    path = Path(cfg.path) if cfg.path else shared_file(f"data/s3rec/{ds}.txt")
    return load_s3rec(path, ds)
