"""Loaders for real recommendation datasets.

Every loader returns a :class:`RawDataset`: a canonical interaction table (``user``, ``item``,
``timestamp`` and optionally ``rating``, ids as strings) plus an item table (``item`` and text
fields) so the semantic side always has something to read. Nothing here downloads at import time;
:func:`locate_ml100k` may fetch the ``recbole`` wheel from PyPI once and reads its data files."""

from __future__ import annotations

import ast
import codecs
import csv
import errno
import gzip
import io
import json
import math
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..hub.wheels import default_cache_dir
from .schema import id_strings, parse_int_ids, parse_timestamps, require_columns

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]


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


_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_ZIP_MAGIC = b"PK\x03\x04"


def symlink_loop(path: Path) -> bool:
    """Whether ``path`` (or a folder on the way to it) is a symbolic link that leads back to itself: ``exists()``
    says False for it, so without this check a loop would be reported as "not found"."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    except ValueError:  # a NUL byte in the path
        return False
    return False


def _check_present(path: Path, missing: str) -> None:
    """Raise a DataError naming ``path``: a symlink loop as such, anything else absent with ``missing``."""
    if symlink_loop(path):
        raise DataError(f"{path}: symlink loop (a symbolic link on this path points back to itself); fix the link "
                        "or give the real path")
    raise DataError(missing)


def check_dataset_name(name: str, kind: str) -> str:
    """``name`` of ``<kind>:<name>`` names a file or folder *inside* its data folder and the cache: no path
    separator, no ``..``, no absolute path, no NUL, not empty. A DataError names the name and the allowed form."""
    bad = (not name or "/" in name or "\\" in name or "\0" in name or ".." in name
           or os.path.isabs(name) or any(ord(c) < 32 for c in name))
    if bad:
        raise DataError(f"dataset name {kind}:{name!r} is not allowed: the part after '{kind}:' must be a plain "
                        "file name such as Beauty or ml-100k (letters, digits, '-', '_', '.'; no '/', '\\', '..', "
                        "absolute path or control character); point data.path at the files instead")
    return name


def _check_file(path: Path) -> Path:
    """``path`` must be an existing regular file (a folder in its place is a DataError naming it)."""
    path = Path(path)
    if not path.exists():
        _check_present(path, f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder, but a file is expected here")
    if not path.is_file():
        raise DataError(f"{path} is not a regular file")
    return path


def _check_dir(directory: Path, expected: str) -> Path:
    """``directory`` must be an existing folder (a file in its place is a DataError naming it)."""
    directory = Path(directory)
    if not directory.exists():
        _check_present(directory, f"folder not found: {directory} (expected a folder holding {expected})")
    if not directory.is_dir():
        raise DataError(f"{directory} is a file, not a folder; point data.path at the folder holding {expected}")
    return directory


def _magic(path: Path) -> bytes:
    """The first bytes of ``path``; an empty file is a DataError."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None
    if not head:
        raise DataError(f"{path}: the file is empty")
    return head


def _compression(path: Path) -> str | None:
    """``"gzip"`` when the content is gzip data, whatever the file is called (sniffed, not guessed from .gz)."""
    return "gzip" if _magic(path).startswith(_GZIP_MAGIC) else None


def _scan_text(path: Path, encoding: str = "utf-8") -> None:
    """Stream the (possibly gzip) file once and reject what a text reader would choke on: bytes that are not
    ``encoding``, NUL bytes (binary data), corrupt gzip data, and content that is empty or only blank.
    Every error names the file and the 1-based line."""
    comp = _compression(path)
    opener = gzip.open if comp == "gzip" else open
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    line, blank = 1, True
    try:
        with opener(path, "rb") as fh:
            while True:
                block = fh.read(1 << 20)
                try:
                    text = decoder.decode(block, final=not block)
                except UnicodeDecodeError as exc:
                    at = line + exc.object[: exc.start].count(b"\n")
                    raise DataError(
                        f"{path}: not {encoding.upper()} text: byte {exc.object[exc.start]:#04x} at line {at}; "
                        f"re-save the file as {encoding.upper()}"
                    ) from None
                nul = text.find("\x00")
                if nul >= 0:
                    at = line + text[:nul].count("\n")
                    raise DataError(f"{path}: binary data (a NUL byte) at line {at}; expected a text file")
                line += text.count("\n")
                blank = blank and not text.strip()
                if not block:
                    break
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: gzip data is corrupt or truncated ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None
    if blank:
        raise DataError(f"{path}: the file is empty (no data, only blank lines)" if line > 1 else f"{path}: the file is empty")


def _open_text(path: Path, encoding: str = "utf-8"):
    """Open a text file, transparently decompressing gzip content (sniffed by its magic bytes)."""
    if _compression(path) == "gzip":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding)
    return open(path, encoding=encoding)


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    _scan_text(path, encoding)
    with _open_text(path, encoding) as fh:
        return fh.read()


def _read_csv(path: Path, encoding: str = "utf-8", **kw) -> pd.DataFrame:
    """``pd.read_csv`` that turns every way a file can be unreadable into a DataError naming it.

    Rows with more fields than the header are an error (pandas would otherwise silently shift the
    columns, using the first as the index); gzip content is read whatever the file is called."""
    _scan_text(path, encoding)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, compression=_compression(path), encoding=encoding, index_col=False, **kw)
    except pd.errors.ParserWarning as exc:
        raise DataError(f"{path}: rows have more fields than the header ({exc}); check the delimiter and quoting") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (no header)") from None
    except (pd.errors.ParserError, csv.Error, UnicodeError, ValueError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot parse the file: {exc}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file: {exc}") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError/... for damaged files
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------- RecBole atomic files
def read_atomic(path: Path) -> pd.DataFrame:
    """Read one RecBole atomic file (``name:type`` headers, tab separated); drops the type suffix."""
    path = _check_file(path)
    df = _read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


def load_recbole_atomic(directory: Path, name: str | None = None) -> RawDataset:
    """Load ``<dir>/<name>.inter`` and, if present, ``<dir>/<name>.item`` (RecBole atomic format)."""
    directory = Path(directory)
    name = check_dataset_name(name, "atomic") if name else directory.name
    _check_dir(directory, f"{name}.inter")
    inter_path = directory / f"{name}.inter"
    inter = read_atomic(inter_path)
    cols = {"user_id": "user", "item_id": "item", "timestamp": "timestamp", "rating": "rating"}
    require_columns(inter, ["user_id", "item_id", "timestamp"], str(inter_path))
    inter = inter[[c for c in cols if c in inter.columns]].rename(columns=cols)
    item_path = directory / f"{name}.item"
    if item_path.exists():
        _check_file(item_path)
        items = read_atomic(item_path).rename(columns={"item_id": "item"})
        require_columns(items, ["item"], str(item_path))
        text_fields = [c for c in items.columns if c != "item"]
        # RecBole's ml-100k uses 'movie_title' and 'class'; give them readable names
        items = items.rename(columns={"movie_title": "title", "class": "genres", "release_year": "year"})
        text_fields = [{"movie_title": "title", "class": "genres", "release_year": "year"}.get(c, c) for c in text_fields]
    else:
        items = pd.DataFrame({"item": inter["item"].unique()})
        text_fields = []
    return RawDataset(name, inter, items, text_fields, [inter_path] + ([item_path] if item_path.exists() else []))


def locate_ml100k(cache_dir: Path | None = None) -> Path:
    """Directory holding RecBole's ``ml-100k.inter``/``.item``.

    Order: ``$SEMCOLLAB_ML100K``; an installed ``recbole`` package; a copy extracted earlier into the
    cache; else ``pip download --no-deps recbole==1.2.1`` (PyPI only) and extract the two files."""
    env = os.environ.get("SEMCOLLAB_ML100K")
    if env:
        return Path(env)
    try:
        import importlib.util

        spec = importlib.util.find_spec("recbole")
        if spec and spec.submodule_search_locations:
            cand = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
            if (cand / "ml-100k.inter").exists():
                return cand
    except (ImportError, ValueError):
        pass
    from ..hub.wheels import AssetError, wheel_asset

    target = Path(cache_dir or default_cache_dir()) / "recbole-ml-100k" / "ml-100k"
    members = {f: f"recbole/dataset_example/ml-100k/{f}" for f in ("ml-100k.inter", "ml-100k.item")}
    try:
        return wheel_asset("recbole==1.2.1", members, target)
    except AssetError as exc:
        raise DataError(
            f"could not obtain MovieLens-100K (no recbole package installed): {exc}\n"
            "Point SEMCOLLAB_ML100K (or data.path) at a folder with ml-100k.inter and ml-100k.item."
        ) from None




def find_shared() -> Path | None:
    """The project's ``shared/`` asset folder (``$SEMCOLLAB_SHARED``, or ``../shared`` of cwd/repo)."""
    cands = []
    if os.environ.get("SEMCOLLAB_SHARED"):
        cands.append(Path(os.environ["SEMCOLLAB_SHARED"]))
    cands += [Path.cwd().parent / "shared", Path(__file__).resolve().parents[4] / "shared"]
    for c in cands:
        if (c / "data").is_dir():
            return c
    return None


# --------------------------------------------------------------------------- MovieLens raw
def load_ml100k_raw(directory: Path) -> RawDataset:
    """GroupLens ``u.data`` (tab: user item rating timestamp) and ``u.item`` (pipe, latin-1)."""
    directory = _check_dir(directory, "u.data")
    data_path = _check_file(directory / "u.data")
    inter = _read_csv(data_path, sep="\t", header=None, names=["user", "item", "rating", "timestamp"], dtype=str)
    for col in ("user", "item"):
        inter[col] = parse_int_ids(inter[col], str(data_path), col).astype(str)
    items = None
    item_path = directory / "u.item"
    if item_path.exists():
        _check_file(item_path)
        raw = _read_csv(item_path, encoding="latin-1", sep="|", header=None, dtype=str, keep_default_na=False)
        if raw.shape[1] != 24:
            raise DataError(f"{item_path}: expected 24 '|' separated columns, found {raw.shape[1]}")
        flags = raw.iloc[:, 5:]
        bad = ~flags.isin(["0", "1"])
        if bad.to_numpy().any():
            row, col = (int(x[0]) for x in bad.to_numpy().nonzero())
            raise DataError(f"{item_path}: genre flag column {col + 5} must be 0 or 1; row {row} has "
                            f"{flags.iat[row, col]!r}")
        flags = flags.astype(int).to_numpy()
        genres = [" ".join(g for g, f in zip(ML100K_GENRES, row) if f) for row in flags]
        items = pd.DataFrame({"item": raw[0], "title": raw[1], "release_date": raw[2], "genres": genres})
    if items is None:
        items = pd.DataFrame({"item": inter["item"].unique()})
    fields = [c for c in ("title", "genres", "release_date") if c in items.columns]
    return RawDataset("ml-100k", inter, items, fields, [data_path] + ([item_path] if item_path.exists() else []))


def _split_lines(path: Path, sep: str, n_fields: int, encoding: str = "latin-1") -> list[list[str]]:
    """Non-blank lines split on ``sep``; a line without exactly ``n_fields`` fields names its row."""
    lines = _read_text(path, encoding).splitlines()
    rows = []
    for lineno, ln in enumerate(lines):
        if not ln:
            continue
        parts = ln.split(sep)
        if len(parts) != n_fields:
            raise DataError(f"{path}: row {lineno} does not have {n_fields} {sep!r} separated fields: {ln[:200]!r}")
        rows.append(parts)
    return rows


def load_ml1m_raw(directory: Path) -> RawDataset:
    """GroupLens ML-1M ``ratings.dat`` and ``movies.dat`` (``::`` separated, latin-1)."""
    directory = _check_dir(directory, "ratings.dat")
    rpath = _check_file(directory / "ratings.dat")
    inter = pd.DataFrame(_split_lines(rpath, "::", 4), columns=["user", "item", "rating", "timestamp"])
    for col in ("user", "item"):
        inter[col] = parse_int_ids(inter[col], str(rpath), col).astype(str)
    mpath = directory / "movies.dat"
    if mpath.exists():
        _check_file(mpath)
        items = pd.DataFrame(_split_lines(mpath, "::", 3), columns=["item", "title", "genres"])
        items["genres"] = items["genres"].str.replace("|", " ", regex=False)
    else:
        items = pd.DataFrame({"item": inter["item"].unique()})
    fields = [c for c in ("title", "genres") if c in items.columns]
    return RawDataset("ml-1m", inter, items, fields, [rpath] + ([mpath] if mpath.exists() else []))


# --------------------------------------------------------------------------- S3-Rec sequence files
S3REC_TEXT_FIELDS = ["title", "brand", "categories", "attributes", "keywords"]
S3REC_DEFAULT_TEMPLATES = {
    "Beauty": "{title}[. Brand: {brand}][. Category: {categories}]",
    "Toys_and_Games": "{title}[. Brand: {brand}][. Category: {categories}]",
    "Sports_and_Outdoors": "{attributes}[. Keywords: {keywords}]",  # no titles were found for Sports
    "Yelp": "{title}[. Categories: {categories}]",
}
# what the S3-Rec loader fed the default "field: value" join before the item CSVs existed, byte for byte
S3REC_ATTRIBUTE_ID_TEMPLATE = "attributes: attributes {attribute_ids}"


def _s3rec_item_csv(csv_path: Path, item_ids) -> tuple[pd.DataFrame, list[str], int]:
    """The ``<name>_items.csv`` rows of ``item_ids`` (sequence order; missing items get empty text),
    its text fields and how many sequence items it lacks. Ids are read as strings, empty cells as ''."""
    table = _read_csv(_check_file(csv_path), dtype=str, keep_default_na=False)
    with _open_text(csv_path) as fh:  # pandas renames a repeated header name to 'x.1'; read the header as written
        header = next(csv.reader(fh), [])
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(f"{csv_path}: the header names column(s) {repeated} more than once")
    _require_table_columns(table, ["item_id"], csv_path)
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
        out[c] = _text_column(out[c]).to_numpy()
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
    path = _check_file(Path(path))
    name = name or path.stem
    _scan_text(path)
    users, items, ts = [], [], []
    with _open_text(path) as fh:
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
        _check_file(attr_path)
        try:
            attrs = json.loads(_read_text(attr_path))
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
    from ..text.templates import clean_value

    has_text = pd.Series(False, index=items_df.index)
    for f in fields:
        has_text |= items_df[f].map(lambda v: bool(clean_value(v).strip()))
    stats["items_without_text"] = int((~has_text).sum())
    return RawDataset(name, inter, items_df, fields, sources, default_template, stats)


# --------------------------------------------------------------------------- Amazon reviews
def _read_jsonl(path: Path) -> list[dict]:
    """JSON lines; the 2014 metadata files are Python literals, so fall back to ``ast.literal_eval``."""
    path = _check_file(path)
    _scan_text(path)
    out = []
    with _open_text(path) as fh:
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
    reviews = _check_file(Path(reviews))
    recs = _read_jsonl(reviews)
    df = pd.DataFrame(recs)
    require_columns(df, ["reviewerID", "asin", "unixReviewTime"], str(reviews))
    inter = pd.DataFrame({"user": df["reviewerID"], "item": df["asin"], "timestamp": df["unixReviewTime"]})
    if "overall" in df.columns:
        inter["rating"] = df["overall"]
    fields = ["title", "brand", "categories", "description"]
    if meta is not None:
        meta = _check_file(Path(meta))
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


# --------------------------------------------------------------------------- generic tables
_TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def read_table(path: Path) -> pd.DataFrame:
    """A CSV/TSV/Parquet file as a DataFrame. CSV/TSV cells are read as text exactly as written (no type
    inference, no NA guessing: an empty cell is ``''``), so ids like ``007`` survive; gzip content is
    read whatever the file is called, and Parquet content is recognised by its magic bytes."""
    path = _check_file(Path(path))
    head = _magic(path)
    suf = "".join(path.suffixes).lower()
    if head.startswith(_PARQUET_MAGIC):
        return _read_parquet(path)
    if suf.endswith(".parquet"):
        raise DataError(f"{path}: not a Parquet file (it does not start with the PAR1 magic bytes)")
    if head.startswith(_ZIP_MAGIC):
        raise DataError(f"{path}: this is a zip archive; extract the table (or gzip it) first")
    base = suf[:-3] if suf.endswith(".gz") else suf
    sep = next((v for k, v in _TABLE_SEPARATORS.items() if base.endswith(k)), None)
    if sep is None:
        raise DataError(f"{path}: unknown table format {suf!r}; use .csv, .tsv or .parquet")
    return _read_csv(path, sep=sep, dtype=str, keep_default_na=False)


def _require_table_columns(df: pd.DataFrame, columns, path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if not missing:
        return
    hint = ""
    if len(df.columns) == 1:
        seps = [c for c in (";", "\t", ",", "|") if c in str(df.columns[0])]
        if seps:
            hint = (f"; the header is a single column containing {seps[0]!r}: is the file separated by "
                    f"{seps[0]!r}? .csv files must use ',' and .tsv files tabs")
    raise DataError(f"{path}: missing column(s) {missing}; found columns {list(df.columns)}{hint}")


def _text_column(series: pd.Series) -> pd.Series:
    """Item-table values as text: missing -> '', everything else ``str(value)`` (bytes decoded)."""
    def conv(v):
        if v is None or (isinstance(v, float) and v != v) or v is pd.NA or v is pd.NaT:
            return ""
        if isinstance(v, bytes):
            return v.decode("utf-8", "backslashreplace")
        return str(v)

    return series.reset_index(drop=True).astype(object).map(conv).astype(str)


def load_table(
    path: Path, user_col: str = "user", item_col: str = "item", time_col: str = "timestamp",
    rating_col: str | None = None, items_path: Path | None = None, item_text_cols: list[str] | None = None,
    name: str | None = None,
) -> RawDataset:
    """Any CSV/TSV/Parquet table with named user/item/time columns (+ optional item table).

    * ids are strings exactly as written (``007`` and ``7`` are two users); Parquet integer ids print
      plainly (``7``);
    * the time column may hold numbers (int64 kept when integral, float64 otherwise, so sub-second order
      survives), ISO 8601 dates or a datetime column (seconds since the epoch, UTC); see
      :func:`~semcollab.data.schema.parse_timestamps`;
    * ``items_path``: an item table keyed by ``item_col`` (read as strings too, so its ids join the
      interactions exactly). Its text fields are ``item_text_cols`` if given, else **every other column
      in file order**, numeric ones included (rendered as text, e.g. ``year: 1995``); missing cells give
      ``''``. Items without a row in the item table get empty text; a repeated item id is an error.

    Every error names the file, the column and the first offending row."""
    path = Path(path)
    roles = {"user_col": user_col, "item_col": item_col, "time_col": time_col}
    if rating_col:
        roles["rating_col"] = rating_col
    if len(set(roles.values())) != len(roles):
        raise DataError(f"{path}: the same column is configured for two roles ({roles}); give each its own column")
    df = read_table(path)
    _require_table_columns(df, list(roles.values()), path)
    src = str(path)
    inter = pd.DataFrame({
        "user": id_strings(df[user_col], src, user_col),
        "item": id_strings(df[item_col], src, item_col),
        "timestamp": parse_timestamps(df[time_col], src, time_col),
    })
    if rating_col:
        raw_r = df[rating_col].reset_index(drop=True)
        r = pd.to_numeric(raw_r.astype(object).where(raw_r.astype(object) != "", None), errors="coerce")
        if r.isna().any():
            row = int(r.isna().to_numpy().nonzero()[0][0])
            raise DataError(f"{path}: column '{rating_col}' must be numeric; row {row} has {raw_r.iloc[row]!r}")
        inter["rating"] = r
    if items_path is not None:
        ipath = Path(items_path)
        table = read_table(ipath)
        _require_table_columns(table, [item_col], ipath)
        ids = id_strings(table[item_col], str(ipath), item_col)
        dup = ids.duplicated()
        if dup.any():
            row = int(dup.to_numpy().nonzero()[0][0])
            raise DataError(f"{ipath}: column '{item_col}' repeats item id {ids.iloc[row]!r}; first repeat at row {row}")
        fields = list(item_text_cols) if item_text_cols else [c for c in table.columns if c != item_col]
        _require_table_columns(table, fields, ipath)
        if item_col in fields or "item" in fields:
            raise DataError(f"{ipath}: item text column(s) {fields} include the id column or a column named "
                            "'item'; rename it or leave it out of data.item_text_cols")
        items = pd.DataFrame({"item": ids})
        for c in fields:
            items[c] = _text_column(table[c])
    else:
        items, fields = pd.DataFrame({"item": pd.unique(inter["item"])}), []
    return RawDataset(name or path.stem, inter, items, fields, [path] + ([Path(items_path)] if items_path else []))


# --------------------------------------------------------------------------- CoLLM CTR pickles
# Unpickling runs whatever code the file names, so only these known files are read without the user's opt-in
# (data.allow_pickle): the SHA-256 of each member of the CoLLM ML-1M split, ml-1m/{train,valid,test}_ood2.pkl
# (and valid_small_ood2.pkl) in ../shared/data/collm/ml-1m.zip (that zip's own SHA-256:
# 3e24968eca5707fbd0bd14d375ee47ef9a6f281de91bba06ef9fc19b66699503). Checked per member, so the same files in a
# folder or another zip are recognised too.
KNOWN_COLLM_FILES = {
    "a0c4cb50a61a27453aa8c14a81cb1b41b1fdc874362e46960956b0bc720c21fe": "train_ood2.pkl",
    "02d4f13a5845f6f86304c2624ef5858d1753cd9d1d5fb7250c960b9dc5e613f5": "valid_ood2.pkl",
    "a35ec4a7d93a76f2a81a0c0c926a95ad5fa5fe4ea8190f02dc1630c58a0e167a": "test_ood2.pkl",
    "e1cd4f7f4f7505ee160571a38117e7f153f2d928cd6f6f1705db6f4ffe64e41a": "valid_small_ood2.pkl",
}


def _check_trusted(data: bytes, where: str, allow_pickle: bool) -> None:
    """Refuse an unknown pickle unless the user opted in: nothing of it is unpickled before this passes."""
    import hashlib

    if allow_pickle or hashlib.sha256(data).hexdigest() in KNOWN_COLLM_FILES:
        return
    raise DataError(f"{where} is a pickle that is not part of the known CoLLM ML-1M split, and reading a pickle "
                    "can run any code it holds; if you trust this file, rerun with --data.allow_pickle=true "
                    "(config key data.allow_pickle)")


def _unpickle_frame(data: bytes, where: str, allow_pickle: bool = False) -> pd.DataFrame:
    _check_trusted(data, where, allow_pickle)
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (EOFError, zlib.error, OSError) as exc:
            raise DataError(f"{where}: gzip data is corrupt or truncated ({exc})") from None
    if not data:
        raise DataError(f"{where}: the file is empty")
    try:
        df = pd.read_pickle(io.BytesIO(data))
    except Exception as exc:  # unpickling junk raises anything from UnpicklingError to AttributeError
        raise DataError(f"{where}: cannot unpickle ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{where}: expected a pickled pandas DataFrame, found a {type(df).__name__}")
    return df


def _id_text(v, where: str, column: str, row: int) -> str:
    """One id of a history list as text (integers print plainly: ``np.int64(7)`` -> ``'7'``)."""
    if isinstance(v, (bool, np.bool_)):
        raise DataError(f"{where}: column '{column}' row {row} holds a boolean id {v!r}")
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (str, np.str_)) and str(v).strip():
        return str(v)
    raise DataError(f"{where}: column '{column}' row {row} holds a non-id value {v!r} in its history list")


def _collm_histories(df: pd.DataFrame, where: str) -> tuple[list[list[str]], dict[str, str]]:
    """``his`` (earlier positive item ids, oldest first, front-padded with 0) as lists of id strings without
    the padding, and the titles ``his_title`` gives those ids (aligned with ``his``; '' at the padding)."""
    histories, titles = [], {}
    has_titles = "his_title" in df.columns
    his_titles = df["his_title"].tolist() if has_titles else [None] * len(df)
    for row, (his, his_t) in enumerate(zip(df["his"].tolist(), his_titles)):
        if isinstance(his, np.ndarray):
            his = his.tolist()
        if not isinstance(his, (list, tuple)):
            raise DataError(f"{where}: column 'his' row {row} is a {type(his).__name__}, not a list of item ids")
        ids = [_id_text(v, where, "his", row) for v in his]
        start = 0
        while start < len(ids) and ids[start] == "0":
            start += 1
        if "0" in ids[start:]:
            raise DataError(f"{where}: column 'his' row {row} has the padding id 0 after a real item ({his[:20]!r}); "
                            "expected 0-padding at the front only")
        histories.append(ids[start:])
        if has_titles:
            if isinstance(his_t, np.ndarray):
                his_t = his_t.tolist()
            if not isinstance(his_t, (list, tuple)) or len(his_t) not in (len(ids), len(ids) - start):
                n_t = len(his_t) if isinstance(his_t, (list, tuple)) else type(his_t).__name__
                raise DataError(f"{where}: row {row}: 'his_title' ({n_t}) does not align with 'his' ({len(ids)} ids, "
                                f"{start} of them padding)")
            if len(his_t) == len(ids):  # titled padding ('' for each 0), as in the shared files
                his_t = his_t[start:]
            for i, t in zip(ids[start:], his_t):
                t = "" if t is None or (isinstance(t, float) and t != t) else str(t)
                if t and i not in titles:
                    titles[i] = t
    return histories, titles


def _binary_labels(col: pd.Series, where: str, split: str) -> np.ndarray:
    """0/1 labels as int8; anything else (2, -1, 0.9, text, missing) is a DataError naming the first bad row."""
    values = col.reset_index(drop=True)
    num = pd.to_numeric(values, errors="coerce") if values.dtype != bool else values.astype("int8")
    bad = ~num.isin([0, 1])
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(f"{where} ({split} split): column 'label' must hold 0 or 1; row {row} has "
                        f"{values.iloc[row]!r} ({int(bad.sum())} bad row(s))")
    return num.to_numpy().astype("int8")


def load_collm_ctr(path: Path, variant: str = "ood2", allow_pickle: bool = False) -> CTRData:
    """The CoLLM / SeLLa-Rec ML-1M CTR split (zip or folder of ``{train,valid,test}_<variant>.pkl``).

    Columns used: ``uid``, ``iid``, ``label`` (rating > 3), ``timestamp``, ``title``; ``not_cold``
    marks test rows whose item was seen in training (warm) versus not (cold). ``his`` (when present)
    becomes ``history``: per row, the user's earlier positive (label 1) items, oldest first, as id
    strings with CoLLM's front 0-padding removed (in the shared ml-1m files ``his`` is exactly that:
    one leading 0, then the label-1 items of the same user that precede the row in time, over
    train+valid+test). The item table has a ``title`` for every item appearing anywhere, target or
    history (``his_title``). ``stats``: ``<split>_history_max`` / ``<split>_history_mean``. Labels other
    than 0 / 1 are refused. A split without ``not_cold`` gets it from the training rows (an item is cold when
    it has no training row), with a warning. Unpickling runs code, so only the known CoLLM files
    (:data:`KNOWN_COLLM_FILES`) are read unless ``allow_pickle``; gzip-compressed pickles are read too."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if not path.is_dir():
        _check_file(path)
        if not _magic(path).startswith(_ZIP_MAGIC):
            raise DataError(f"{path}: neither a folder nor a zip archive of {{train,valid,test}}_{variant}.pkl")
    frames: dict = {}
    stats: dict = {}
    titles: dict[str, str] = {}  # from histories
    target_titles: dict[str, str] = {}  # from the rows' own ``title``; the first non-empty one per item
    for split in ("train", "valid", "test"):
        fname = f"{split}_{variant}.pkl"
        where = f"{path}:{fname}"
        if path.is_dir():
            hits = sorted(h for h in path.rglob(fname) if h.is_file())
            if not hits:
                raise DataError(f"{path}: no file {fname}")
            where = str(hits[0])
            try:
                data = hits[0].read_bytes()
            except OSError as exc:
                raise DataError(f"{where}: cannot read the file: {exc}") from None
        else:
            try:
                with zipfile.ZipFile(path) as zf:
                    names = [n for n in zf.namelist() if n.endswith("/" + fname) or n == fname]
                    if not names:
                        raise DataError(f"{path}: archive has no {fname}; it holds {zf.namelist()[:20]}")
                    data = zf.read(names[0])
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
                raise DataError(f"{path}: damaged zip archive ({type(exc).__name__}: {exc})") from None
        df = _unpickle_frame(data, where, allow_pickle)
        require_columns(df, ["uid", "iid", "label", "timestamp", "title"], where)
        out = pd.DataFrame({
            "user": id_strings(df["uid"], where, "uid").to_numpy(),
            "item": id_strings(df["iid"], where, "iid").to_numpy(),
            "label": _binary_labels(df["label"], where, split),
            "timestamp": parse_timestamps(df["timestamp"], where, "timestamp").to_numpy(),
        })
        if "not_cold" in df.columns:
            out["warm"] = df["not_cold"].astype(bool).to_numpy()
        else:  # cold = no training row for the item (what not_cold means in the CoLLM files)
            if split != "train":
                warnings.warn(f"{where}: no 'not_cold' column; warm / cold rows of the {split} split are derived "
                              "from the training items (cold: the item has no training row)", stacklevel=2)
            seen = set(frames["train"]["item"]) if split != "train" else set(out["item"])
            out["warm"] = out["item"].isin(seen).to_numpy()
        if "his" in df.columns:
            hist, hist_titles = _collm_histories(df, where)
            out["history"] = pd.Series(hist, dtype=object).to_numpy()
            lengths = np.array([len(h) for h in hist])
            stats[f"{split}_history_max"] = int(lengths.max()) if len(lengths) else 0
            stats[f"{split}_history_mean"] = round(float(lengths.mean()), 2) if len(lengths) else 0.0
            for i, t in hist_titles.items():
                titles.setdefault(i, t)  # a target row's own title wins over these
        frames[split] = out
        for i, t in zip(out["item"].tolist(), df["title"].tolist()):
            t = "" if t is None or (isinstance(t, float) and t != t) else str(t)
            if not target_titles.get(i):
                target_titles[i] = t
    seen = list(dict.fromkeys([*target_titles, *titles]))  # target items first, then history-only ones
    items = pd.DataFrame({"item": seen, "title": [target_titles.get(i) or titles.get(i, "") for i in seen]})
    return CTRData("collm-ml-1m", frames["train"], frames["valid"], frames["test"], items, [path], stats)


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

