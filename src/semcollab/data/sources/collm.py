"""The CoLLM / SeLLa-Rec ML-1M CTR split (``--dataset collm-ml-1m``): pickled frames in a zip or a folder."""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import DataConfig
from ...errors import DataError
from ...registry import register_source
from ..schema import id_strings, parse_timestamps, require_columns
from .files import GZIP_MAGIC, ZIP_MAGIC, check_file, magic_bytes, shared_file
from .raw import CTRData

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
    if allow_pickle or hashlib.sha256(data).hexdigest() in KNOWN_COLLM_FILES:
        return
    raise DataError(f"{where} is a pickle that is not part of the known CoLLM ML-1M split, and reading a pickle "
                    "can run any code it holds; if you trust this file, rerun with --data.allow_pickle=true "
                    "(config key data.allow_pickle)")


def _unpickle_frame(data: bytes, where: str, allow_pickle: bool = False) -> pd.DataFrame:
    _check_trusted(data, where, allow_pickle)
    if data.startswith(GZIP_MAGIC):
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
        check_file(path)
        if not magic_bytes(path).startswith(ZIP_MAGIC):
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


@register_source("collm-ml-1m", kind="ctr", aliases={"collm": "collm-ml-1m"},
                 help="the CoLLM ML-1M CTR split: shared/data/collm/ml-1m.zip, or data.path (zip or folder)")
def collm_source(cfg: DataConfig, arg: str | None, allow_pickle: bool = False) -> CTRData:
    path = Path(cfg.path) if cfg.path else shared_file("data/collm/ml-1m.zip")
    return load_collm_ctr(path, allow_pickle=allow_pickle)
