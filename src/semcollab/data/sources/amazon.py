"""Amazon review dumps (2014 or 2018) with optional item metadata."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd

from ...config import DataConfig
from ...errors import DataError
from ...registry import register_source
from ..schema import require_columns
from .files import check_file, open_text, scan_text
from .raw import RawDataset


def _read_jsonl(path: Path) -> list[dict]:
    """JSON lines; the 2014 metadata files are Python literals, so fall back to ``ast.literal_eval``."""
    path = check_file(path)
    scan_text(path)
    out = []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                try:
                    rec = ast.literal_eval(line)
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
                    raise DataError(f"{path}: line {lineno} is neither JSON nor a Python literal: "
                                    f"{type(exc).__name__}: {str(exc)[:200]}") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}: line {lineno} is not an object/record but a {type(rec).__name__}: "
                                f"{line[:120]!r}")
            out.append(rec)
    return out


def _flatten_categories(cat) -> str:
    if isinstance(cat, list):
        flat = []
        for c in cat:
            flat.extend(c if isinstance(c, list) else [c])
        seen = dict.fromkeys(str(x) for x in flat if x)
        return ", ".join(seen)
    return str(cat) if cat else ""


def load_amazon(reviews: Path, meta: Path | None = None, name: str | None = None) -> RawDataset:
    """Amazon review dumps (2014 or 2018; ``.json``/``.json.gz``, gzip sniffed by content): reviews + optional
    metadata. Deliberate, documented reductions of the metadata (the interactions are kept whole): a
    description is cut to its first 1000 characters, and of repeated metadata records for one ``asin``
    (the 2018 dumps have some) the first is used."""
    reviews = check_file(Path(reviews))
    recs = _read_jsonl(reviews)
    df = pd.DataFrame(recs)
    require_columns(df, ["reviewerID", "asin", "unixReviewTime"], str(reviews))
    inter = pd.DataFrame({"user": df["reviewerID"], "item": df["asin"], "timestamp": df["unixReviewTime"]})
    if "overall" in df.columns:
        inter["rating"] = df["overall"]
    fields = ["title", "brand", "categories", "description"]
    if meta is not None:
        meta = check_file(Path(meta))
        mrecs = _read_jsonl(meta)
        rows = []
        for r in mrecs:
            if "asin" not in r:
                raise DataError(f"{meta}: a metadata record has no 'asin' field: {str(r)[:120]}")
            desc = r.get("description", "")
            if isinstance(desc, list):
                desc = " ".join(desc)
            rows.append({
                "item": r["asin"], "title": r.get("title", ""), "brand": r.get("brand", ""),
                "categories": _flatten_categories(r.get("categories", r.get("category", ""))),
                "description": str(desc)[:1000],
            })
        items = pd.DataFrame(rows).drop_duplicates("item")
        missing = ~inter["item"].astype(str).isin(set(items["item"].astype(str)))
        if missing.any():
            extra = pd.DataFrame({"item": pd.unique(inter.loc[missing, "item"])})
            items = pd.concat([items, extra], ignore_index=True).fillna("")
    else:
        items, fields = pd.DataFrame({"item": pd.unique(inter["item"])}), []
    return RawDataset(name or reviews.stem.split(".")[0], inter, items, fields, [reviews] + ([meta] if meta else []))


@register_source("amazon", help="Amazon reviews: data.path (reviews JSON lines), data.meta_path (metadata)")
def amazon_source(cfg: DataConfig, arg: str | None) -> RawDataset:
    if not cfg.path:
        raise DataError("amazon needs data.path (reviews JSON lines) and optionally data.meta_path")
    return load_amazon(Path(cfg.path), Path(cfg.meta_path) if cfg.meta_path else None)
