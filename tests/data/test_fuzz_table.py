"""Property-based fuzzing of the generic table loader: random small tables + random corruptions.

Property: ``load_split`` either returns a Split whose invariants hold, or raises DataError; never any
other exception, never a hang (hypothesis' per-example deadline)."""

import datetime as dt
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from semcollab.config import DataConfig  # noqa: E402
from semcollab.data import DataError, load_split  # noqa: E402

# random ids, plus ids that differ only in leading zeros (they must stay distinct)
IDS = st.one_of(st.text(alphabet="0123456789abcXYZ_-", min_size=1, max_size=4), st.sampled_from(["7", "07", "007"]))
CORRUPTIONS = ["none", "none", "missing_column", "nan_cell", "non_numeric_ts", "duplicate", "empty_file",
               "truncated", "junk", "wrong_delimiter", "header_only", "mixed_ts", "gzip", "blank_lines"]


def _ts_value(kind: str, t: float):
    if kind == "int":
        return int(t)
    if kind == "float":
        return float(t) + 0.25 * (int(t * 7) % 4)
    stamp = dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=float(t) + (t % 3) * 0.125)
    return stamp.strftime("%Y-%m-%d") if kind == "date" else stamp.isoformat().replace("+00:00", "")


@st.composite
def tables(draw):
    users = draw(st.lists(IDS, min_size=1, max_size=4, unique=True))
    items = draw(st.lists(IDS, min_size=1, max_size=5, unique=True))
    ts_kind = draw(st.sampled_from(["int", "float", "iso", "date"]))
    rows = []
    for user in users:  # mostly enough events per user for leave-one-out, sometimes not
        for _ in range(draw(st.sampled_from([0, 1, 2, 3, 3, 4, 4, 5, 6]))):
            t = draw(st.integers(0, 10**6)) if ts_kind != "date" else draw(st.integers(0, 400)) * 86400
            rows.append((user, draw(st.sampled_from(items)), _ts_value(ts_kind, t)))
    rows = draw(st.permutations(rows))
    return {
        "rows": rows,
        "fmt": draw(st.sampled_from(["csv", "tsv", "parquet"])),
        "corruption": draw(st.sampled_from(CORRUPTIONS)),
        "user_k": draw(st.integers(1, 3)),
        "item_k": draw(st.integers(1, 2)),
        "split": draw(st.sampled_from(["loo", "loo", "temporal"])),
        "duplicates": draw(st.sampled_from(["error", "drop", "keep"])),
        "pick": draw(st.integers(0, 10**6)),
        "cut": draw(st.floats(0.1, 0.95)),
    }


def _write(spec, directory: Path) -> Path:
    rows = list(spec["rows"])
    corruption, pick = spec["corruption"], spec["pick"]
    cols = ["user", "item", "timestamp"]
    if corruption == "duplicate" and rows:
        rows.append(rows[pick % len(rows)])
    df = pd.DataFrame(rows, columns=cols).astype(object)
    if corruption == "nan_cell" and len(df):
        df.iat[pick % len(df), pick % 3] = None
    if corruption == "non_numeric_ts" and len(df):
        df.iat[pick % len(df), 2] = "soon"
    if corruption == "mixed_ts" and len(df):
        df.iat[pick % len(df), 2] = 1577923200 if isinstance(df.iat[0, 2], str) else "2020-01-02"
    if corruption == "missing_column":
        df = df.drop(columns=[cols[pick % 3]])
    if corruption == "header_only":
        df = df.iloc[:0]
    path = directory / f"events.{spec['fmt']}"
    if spec["fmt"] == "parquet":
        if "timestamp" in df and corruption in ("non_numeric_ts", "mixed_ts"):
            df["timestamp"] = df["timestamp"].map(lambda v: None if v is None else str(v))  # one Arrow type
        elif "timestamp" in df and len(df):
            df["timestamp"] = df["timestamp"].infer_objects()
        df.to_parquet(path)
    else:
        sep = "\t" if spec["fmt"] == "tsv" else ","
        if corruption == "wrong_delimiter":
            sep = ";" if sep == "," else ","
        df.to_csv(path, sep=sep, index=False)
    data = path.read_bytes()
    if corruption == "empty_file":
        data = b""
    elif corruption == "truncated":
        data = data[: max(1, int(len(data) * spec["cut"]))]
    elif corruption == "junk":
        data = data + bytes((pick * 31 + i * 17) % 256 for i in range(64))
    elif corruption == "gzip":
        import gzip

        data = gzip.compress(data)
    elif corruption == "blank_lines" and spec["fmt"] != "parquet":
        data = data.replace(b"\n", b"\n\n")
    path.write_bytes(data)
    return path


def _check_split(sp, spec, path):
    parts = {name: getattr(sp, name) for name in ("train", "valid", "test")}
    orders = [set(df["order"].tolist()) for df in parts.values()]
    assert not (orders[0] & orders[1]) and not (orders[0] & orders[2]) and not (orders[1] & orders[2])
    n_events = sum(len(df) for df in parts.values())
    assert n_events == sp.stats["interactions"] == len(set().union(*orders))
    for df in parts.values():
        if len(df):
            assert df["user"].between(0, sp.n_users - 1).all()
            assert df["item"].between(1, sp.n_items).all()
    train_users = set(parts["train"]["user"])
    if sp.protocol == "loo":
        assert set(parts["valid"]["user"]) <= train_users
        assert set(parts["test"]["user"]) <= train_users
    else:
        assert len(parts["valid"]) and len(parts["test"])
        assert set(parts["valid"]["user"]) & train_users
    assert len(sp.items) == sp.n_items + 1
    # nothing silently dropped or merged: without k-core filtering every written row is an event
    if spec["user_k"] <= 1 and spec["item_k"] <= 1 and spec["duplicates"] != "drop":
        assert sp.stats["interactions"] == sp.stats["raw_interactions"]
    if spec["corruption"] in ("none", "gzip", "blank_lines") and spec["duplicates"] != "drop":
        assert sp.stats["raw_interactions"] == len(spec["rows"])
    written_users = {u for u, _, _ in spec["rows"]}
    written_items = {i for _, i, _ in spec["rows"]}
    assert set(sp.user_vocab.ids) <= written_users  # ids exactly as written ('007' stays '007')
    assert set(sp.item_vocab.ids) <= written_items


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_table_loader_returns_valid_split_or_data_error(spec):
    with tempfile.TemporaryDirectory() as d:
        path = _write(spec, Path(d))
        cfg = DataConfig(name="table", path=str(path), user_k=spec["user_k"], item_k=spec["item_k"],
                         split=spec["split"], duplicates=spec["duplicates"], valid_frac=0.2, test_frac=0.2,
                         cache=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                sp = load_split(cfg)
            except DataError as exc:
                assert str(exc)
                return
        _check_split(sp, spec, path)
        assert np.isfinite(sp.train["timestamp"].to_numpy(dtype="float64")).all()
