"""Loaders for real recommendation datasets.

Every loader returns a :class:`RawDataset`: a canonical interaction table (``user``, ``item``,
``timestamp`` and optionally ``rating``, ids as strings) plus an item table (``item`` and text
fields) so the semantic side always has something to read. Nothing here downloads at import time;
:func:`locate_ml100k` may fetch the ``recbole`` wheel from PyPI once and reads its data files."""

from __future__ import annotations

import ast
import gzip
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..assets import default_cache_dir
from .errors import DataError
from .schema import parse_int_ids, require_columns

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

    def __post_init__(self) -> None:
        require_columns(self.items, ["item"], f"{self.name} item table")
        self.items = self.items.copy()
        self.items["item"] = self.items["item"].astype(str)
        if self.items["item"].duplicated().any():
            dup = self.items.loc[self.items["item"].duplicated(), "item"].iloc[0]
            raise DataError(f"{self.name} item table: item id {dup!r} appears more than once")


@dataclass
class CTRData:
    """A click-through-rate split: three frames with ``user``, ``item``, ``label``, ``timestamp``."""

    name: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    items: pd.DataFrame
    sources: list[Path] = field(default_factory=list)


def _check_file(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    return path


def _open_text(path: Path):
    if str(path).endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


# --------------------------------------------------------------------------- RecBole atomic files
def read_atomic(path: Path) -> pd.DataFrame:
    """Read one RecBole atomic file (``name:type`` headers, tab separated); drops the type suffix."""
    path = _check_file(path)
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


def load_recbole_atomic(directory: Path, name: str | None = None) -> RawDataset:
    """Load ``<dir>/<name>.inter`` and, if present, ``<dir>/<name>.item`` (RecBole atomic format)."""
    directory = Path(directory)
    name = name or directory.name
    inter_path = directory / f"{name}.inter"
    inter = read_atomic(inter_path)
    cols = {"user_id": "user", "item_id": "item", "timestamp": "timestamp", "rating": "rating"}
    require_columns(inter, ["user_id", "item_id", "timestamp"], str(inter_path))
    inter = inter[[c for c in cols if c in inter.columns]].rename(columns=cols)
    item_path = directory / f"{name}.item"
    if item_path.exists():
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
    from ..assets import AssetError, wheel_asset

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
    directory = Path(directory)
    data_path = _check_file(directory / "u.data")
    inter = pd.read_csv(data_path, sep="\t", header=None, names=["user", "item", "rating", "timestamp"], dtype=str)
    for col in ("user", "item"):
        inter[col] = parse_int_ids(inter[col], str(data_path), col).astype(str)
    items = None
    item_path = directory / "u.item"
    if item_path.exists():
        raw = pd.read_csv(item_path, sep="|", header=None, encoding="latin-1", dtype=str, keep_default_na=False)
        if raw.shape[1] != 24:
            raise DataError(f"{item_path}: expected 24 '|' separated columns, found {raw.shape[1]}")
        flags = raw.iloc[:, 5:].astype(int).to_numpy()
        genres = [" ".join(g for g, f in zip(ML100K_GENRES, row) if f) for row in flags]
        items = pd.DataFrame({"item": raw[0], "title": raw[1], "release_date": raw[2], "genres": genres})
    if items is None:
        items = pd.DataFrame({"item": inter["item"].unique()})
    fields = [c for c in ("title", "genres", "release_date") if c in items.columns]
    return RawDataset("ml-100k", inter, items, fields, [data_path] + ([item_path] if item_path.exists() else []))


def load_ml1m_raw(directory: Path) -> RawDataset:
    """GroupLens ML-1M ``ratings.dat`` and ``movies.dat`` (``::`` separated, latin-1)."""
    directory = Path(directory)
    rpath = _check_file(directory / "ratings.dat")
    lines = rpath.read_text(encoding="latin-1").splitlines()
    rows = [ln.split("::") for ln in lines if ln]
    bad = [i for i, r in enumerate(rows) if len(r) != 4]
    if bad:
        raise DataError(f"{rpath}: row {bad[0]} does not have 4 '::' separated fields: {lines[bad[0]]!r}")
    inter = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    for col in ("user", "item"):
        inter[col] = parse_int_ids(inter[col], str(rpath), col).astype(str)
    mpath = directory / "movies.dat"
    if mpath.exists():
        mrows = [ln.split("::") for ln in mpath.read_text(encoding="latin-1").splitlines() if ln]
        items = pd.DataFrame(mrows, columns=["item", "title", "genres"])
        items["genres"] = items["genres"].str.replace("|", " ", regex=False)
    else:
        items = pd.DataFrame({"item": inter["item"].unique()})
    fields = [c for c in ("title", "genres") if c in items.columns]
    return RawDataset("ml-1m", inter, items, fields, [rpath] + ([mpath] if mpath.exists() else []))


# --------------------------------------------------------------------------- S3-Rec sequence files
def load_s3rec(path: Path, name: str | None = None) -> RawDataset:
    """``user item item ...`` per line in time order (S3-Rec/ICLRec format) + ``<name>_item2attributes.json``.

    The files carry no timestamps, so the position in the line is used as the time; the attribute ids
    (category/brand ids, no names are published) become the item text."""
    path = _check_file(Path(path))
    name = name or path.stem
    users, items, ts = [], [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise DataError(f"{path}: line {lineno} has a user but no items (empty history): {line.strip()!r}")
            for tok in parts:
                if not tok.lstrip("-").isdigit():
                    raise DataError(f"{path}: line {lineno} has a non-integer id {tok!r}")
            users.extend([parts[0]] * (len(parts) - 1))
            items.extend(parts[1:])
            ts.extend(range(len(parts) - 1))
    inter = pd.DataFrame({"user": users, "item": items, "timestamp": ts})
    attr_path = path.with_name(f"{name}_item2attributes.json")
    item_ids = pd.unique(inter["item"])
    if attr_path.exists():
        attrs = json.loads(attr_path.read_text())
        text = [("attributes " + " ".join(f"a{a}" for a in attrs.get(i, []))).strip() for i in item_ids]
        items_df = pd.DataFrame({"item": item_ids, "attributes": text})
        fields = ["attributes"]
    else:
        items_df, fields = pd.DataFrame({"item": item_ids}), []
    return RawDataset(name, inter, items_df, fields, [path] + ([attr_path] if attr_path.exists() else []))


# --------------------------------------------------------------------------- Amazon reviews
def _read_jsonl(path: Path) -> list[dict]:
    """JSON lines; the 2014 metadata files are Python literals, so fall back to ``ast.literal_eval``."""
    out = []
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                try:
                    out.append(ast.literal_eval(line))
                except (ValueError, SyntaxError) as exc:
                    raise DataError(f"{path}: line {lineno} is neither JSON nor a Python literal: {exc}") from None
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
    """Amazon review dumps (2014 or 2018; ``.json``/``.json.gz``): reviews + optional metadata."""
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
def read_table(path: Path) -> pd.DataFrame:
    path = _check_file(Path(path))
    suf = "".join(path.suffixes).lower()
    if suf.endswith(".parquet"):
        return pd.read_parquet(path)
    if suf.endswith((".tsv", ".tsv.gz", ".tab")):
        return pd.read_csv(path, sep="\t")
    if suf.endswith((".csv", ".csv.gz")):
        return pd.read_csv(path)
    raise DataError(f"{path}: unknown table format {suf!r}; use .csv, .tsv or .parquet")


def load_table(
    path: Path, user_col: str = "user", item_col: str = "item", time_col: str = "timestamp",
    rating_col: str | None = None, items_path: Path | None = None, item_text_cols: list[str] | None = None,
    name: str | None = None,
) -> RawDataset:
    """Any CSV/TSV/Parquet table with named user/item/time columns (+ optional item table)."""
    path = Path(path)
    df = read_table(path)
    cols = [user_col, item_col, time_col] + ([rating_col] if rating_col else [])
    require_columns(df, cols, str(path))
    inter = df[cols].rename(columns={user_col: "user", item_col: "item", time_col: "timestamp", **({rating_col: "rating"} if rating_col else {})})
    if inter["timestamp"].dtype == object:
        parsed = pd.to_datetime(inter["timestamp"], errors="coerce")
        if parsed.notna().all():
            inter["timestamp"] = parsed.astype("int64") // 10**9
    if items_path is not None:
        items = read_table(Path(items_path))
        require_columns(items, [item_col], str(items_path))
        items = items.rename(columns={item_col: "item"})
        fields = item_text_cols or [c for c in items.columns if c != "item" and items[c].dtype == object]
        require_columns(items, fields, str(items_path))
        items = items[["item"] + fields].fillna("")
    else:
        items, fields = pd.DataFrame({"item": pd.unique(inter["item"].astype(str))}), []
    return RawDataset(name or path.stem, inter, items, fields, [path] + ([Path(items_path)] if items_path else []))


# --------------------------------------------------------------------------- CoLLM CTR pickles
def load_collm_ctr(path: Path, variant: str = "ood2") -> CTRData:
    """The CoLLM / SeLLa-Rec ML-1M CTR split (zip or folder of ``{train,valid,test}_<variant>.pkl``).

    Columns used: ``uid``, ``iid``, ``label`` (rating > 3), ``timestamp``, ``title``; ``not_cold``
    marks test rows whose item was seen in training (warm) versus not (cold)."""
    path = _check_file(Path(path))
    frames = {}
    for split in ("train", "valid", "test"):
        fname = f"{split}_{variant}.pkl"
        if path.is_dir():
            hits = list(path.rglob(fname))
            if not hits:
                raise DataError(f"{path}: no file {fname}")
            df = pd.read_pickle(hits[0])
        else:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith("/" + fname) or n == fname]
                if not names:
                    raise DataError(f"{path}: archive has no {fname}; it holds {zf.namelist()}")
                df = pd.read_pickle(io.BytesIO(zf.read(names[0])))
        require_columns(df, ["uid", "iid", "label", "timestamp", "title"], f"{path}:{fname}")
        out = pd.DataFrame({
            "user": df["uid"].astype(str).to_numpy(), "item": df["iid"].astype(str).to_numpy(),
            "label": df["label"].astype("int8").to_numpy(), "timestamp": df["timestamp"].astype("int64").to_numpy(),
        })
        if "not_cold" in df.columns:
            out["warm"] = df["not_cold"].astype(bool).to_numpy()
        frames[split] = out
        frames[split + "_titles"] = df[["iid", "title"]]
    titles = pd.concat([frames.pop(f"{s}_titles") for s in ("train", "valid", "test")]).drop_duplicates("iid")
    items = pd.DataFrame({"item": titles["iid"].astype(str).to_numpy(), "title": titles["title"].to_numpy()})
    return CTRData("collm-ml-1m", frames["train"], frames["valid"], frames["test"], items, [path])


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

