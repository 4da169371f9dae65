"""Prepared datasets: filtered, id-remapped and split without leakage.

Data flows one way: :class:`~semcollab.data.sources.raw.RawDataset` -> :func:`prepare` -> :class:`Split`
-> models -> scores -> metrics. A Split holds integer ids (users ``0..U-1``, items ``1..N``; 0 pads)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from .vocab import Vocab, VocabSizes


@dataclass
class EvalSet:
    """What a model sees at evaluation: per user, the time-ordered history and the held-out targets."""

    users: np.ndarray
    histories: list[np.ndarray]
    targets: list[np.ndarray]
    n_skipped_no_history: int = 0

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, mask: np.ndarray) -> EvalSet:
        idx = np.flatnonzero(mask)
        return EvalSet(self.users[idx], [self.histories[i] for i in idx], [self.targets[i] for i in idx])


@dataclass
class Split(VocabSizes):
    """A leakage-free split. ``train``/``valid``/``test`` have int64 columns ``user``, ``item``, ``order``
    (source order, the tie-breaker) and ``timestamp`` (int64, or float64 when the source has fractional
    times: they are never truncated, so sub-second order survives).

    ``protocol``: ``"loo"`` (per user, last event = test, second last = valid) or ``"temporal"``
    (global time cut-offs; every event after the cut-off is held out)."""

    name: str
    protocol: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    user_vocab: Vocab
    item_vocab: Vocab
    items: pd.DataFrame  # row i describes item index i (row 0 = padding)
    text_fields: list[str]
    stats: dict
    # the dataset's own text template (semcollab.text.templates syntax); None: the "field: value; ..." join
    default_template: str | None = None

    # ------------------------------------------------------------------ views used by models
    def _sequences(self, frames: list[pd.DataFrame]) -> list[np.ndarray]:
        df = pd.concat(frames) if len(frames) > 1 else frames[0]
        df = df.sort_values(["user", "timestamp", "order"], kind="stable")
        seqs = [np.zeros(0, dtype=np.int64)] * self.n_users
        users = df["user"].to_numpy()
        items = df["item"].to_numpy(np.int64)
        bounds = np.flatnonzero(np.diff(users)) + 1
        for chunk_u, chunk_i in zip(np.split(users, bounds), np.split(items, bounds)):
            if len(chunk_u):
                seqs[int(chunk_u[0])] = chunk_i
        return seqs

    def train_sequences(self) -> list[np.ndarray]:
        """Time-ordered training items per user (index = user id); empty for users without training data."""
        return self._sequences([self.train])

    def eval_set(self, stage: str) -> EvalSet:
        """Histories and targets for ``stage`` in {"valid", "test"}; histories contain only earlier events."""
        if stage == "valid":
            hist_frames, target = [self.train], self.valid
        elif stage == "test":
            hist_frames, target = [self.train, self.valid], self.test
        else:
            raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")
        hist = self._sequences(hist_frames)
        tg = target.sort_values(["user", "timestamp", "order"], kind="stable")
        users, histories, targets, skipped = [], [], [], 0
        for u, grp in tg.groupby("user", sort=True):
            h = hist[int(u)]
            if len(h) == 0:
                skipped += 1  # a cold user: counted and reported, never silently scored as a miss
                continue
            users.append(int(u))
            histories.append(h)
            targets.append(np.unique(grp["item"].to_numpy(np.int64)))
        return EvalSet(np.asarray(users, dtype=np.int64), histories, targets, skipped)

    def item_popularity(self) -> np.ndarray:
        """Training interaction count per item index (length n_items + 1; entry 0 = padding = 0)."""
        return np.bincount(self.train["item"].to_numpy(), minlength=self.n_items + 1).astype(np.int64)

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the prepared content: the protocol, the train/valid/test ``user``, ``item``,
        ``timestamp``, ``order`` arrays (with their dtypes), both vocabularies' raw ids, the text fields
        and the item table (as text). A split read back from the cache gives the same value as the
        freshly prepared one; changing any interaction, id or item text changes it."""
        h = hashlib.sha256()

        def put(label: str, data: bytes) -> None:
            h.update(label.encode())
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)

        def put_strings(label: str, values) -> None:
            enc = [str(v).encode("utf-8", "surrogatepass") for v in values]
            put(label, b"".join(len(e).to_bytes(8, "little") + e for e in enc))

        put("format", b"semcollab-split-fingerprint-v1")
        put("protocol", self.protocol.encode())
        for frame in ("train", "valid", "test"):
            df = getattr(self, frame)
            for col in ("user", "item", "order"):
                put(f"{frame}.{col}", np.ascontiguousarray(df[col].to_numpy(np.int64)).tobytes())
            ts = np.asarray(df["timestamp"].to_numpy())
            ts = ts.astype(np.int64) if ts.dtype.kind in "iub" else ts.astype(np.float64)
            put(f"{frame}.timestamp.{ts.dtype.str}", np.ascontiguousarray(ts).tobytes())
        put_strings("users", self.user_vocab.ids)
        put_strings("items", self.item_vocab.ids)
        put_strings("text_fields", self.text_fields)
        put_strings("item_columns", list(self.items.columns))
        for col in self.items.columns:
            put_strings(f"item_table.{col}", self.items[col].astype(str).tolist())
        if self.default_template is not None:  # absent when None, so older fingerprints stay valid
            put("default_template", self.default_template.encode("utf-8", "surrogatepass"))
        return h.hexdigest()

    def item_texts(self, fields: list[str] | None = None) -> list[str]:
        """One string per real item (index 1..N), '<field>: <value>' joined by '; ' (never the default
        template; see :meth:`render_texts` for the text a language model reads)."""
        from ..text.templates import render_item_texts

        return render_item_texts(self.items, fields or self.text_fields)

    def render_texts(self, template: str | None = None, fields: list[str] | None = None) -> list[str]:
        """One text per real item (index 1..N): what the semantic side reads.

        ``template`` given: that template. Else ``fields`` given: the ``"field: value; ..."`` join over
        them. Else the dataset's :attr:`default_template`, or, without one, the join over
        :attr:`text_fields`. Template syntax (``[...]`` optional segments): :mod:`semcollab.text.templates`."""
        from ..text.templates import render_item_texts

        if template is None and not fields:
            template = self.default_template
        return render_item_texts(self.items, fields or self.text_fields, template)


def _check_temporal(name, train, valid, test, valid_frac, test_frac) -> None:
    """Fail at prepare time, not in evaluation, when a temporal split leaves nothing to evaluate."""
    counts = (f"train={len(train)}, valid={len(valid)}, test={len(test)} events "
              f"(data.valid_frac={valid_frac}, data.test_frac={test_frac})")
    if len(train) == 0 or len(valid) == 0 or len(test) == 0:
        raise DataError(
            f"{name}: the temporal split leaves a part empty: {counts}. Events at a cut-off time stay together, "
            "so many equal timestamps can empty a part; change data.valid_frac / data.test_frac or use data.split=loo."
        )
    v_users = np.unique(valid["user"].to_numpy())
    v_warm = np.isin(v_users, train["user"].to_numpy())
    if not v_warm.any():
        raise DataError(
            f"{name}: no validation user has training history ({len(v_users)} validation users, 0 with earlier "
            f"events; {counts}); adjust data.valid_frac / data.test_frac or use data.split=loo."
        )
    t_users = np.unique(test["user"].to_numpy())
    t_warm = np.isin(t_users, np.concatenate([train["user"].to_numpy(), valid["user"].to_numpy()]))
    if not t_warm.any():
        raise DataError(
            f"{name}: no test user has training or validation history ({len(t_users)} test users, 0 with earlier "
            f"events; {counts}); adjust data.valid_frac / data.test_frac or use data.split=loo."
        )


def prepare(raw, duplicates: str = "error", min_rating: float | None = None, user_k: int = 5, item_k: int = 5,
            split: str = "loo", valid_frac: float = 0.1, test_frac: float = 0.1) -> Split:
    """Validate, filter (min rating, iterative k-core), remap ids and split ``raw`` without leakage."""
    from .filters import k_core
    from .filters import min_rating as _min_rating
    from .schema import validate_interactions

    sources = list(getattr(raw, "sources", []) or [])
    source = f"{raw.name} interactions ({sources[0]})" if sources else f"{raw.name} interactions"
    df, n_dup = validate_interactions(raw.interactions, source, duplicates)
    n_raw = len(df)
    df = _min_rating(df, min_rating)
    df = k_core(df, user_k, item_k)
    df = df.assign(order=np.arange(len(df)))  # tie-breaker: source order among equal timestamps

    user_vocab = Vocab.build(df["user"], 0, "user")
    item_vocab = Vocab.build(df["item"], 1, "item")
    df["user"] = df["user"].map(user_vocab._index).astype(np.int64)
    df["item"] = df["item"].map(item_vocab._index).astype(np.int64)
    df = df.sort_values(["user", "timestamp", "order"], kind="stable").reset_index(drop=True)

    if split == "loo":
        counts = df.groupby("user")["item"].transform("size")
        if (counts < 3).any():
            u = int(df.loc[counts < 3, "user"].iloc[0])
            raise DataError(
                f"{raw.name}: leave-one-out needs >= 3 events per user (train, valid, test); user "
                f"{user_vocab.decode(u)!r} has {int(counts[df['user'] == u].iloc[0])}. Raise data.user_k to >= 3."
            )
        pos_from_end = df.groupby("user").cumcount(ascending=False)
        test, valid, train = df[pos_from_end == 0], df[pos_from_end == 1], df[pos_from_end >= 2]
    elif split == "temporal":
        for key, frac in (("data.valid_frac", valid_frac), ("data.test_frac", test_frac)):
            if not 0 < frac < 1:
                raise DataError(f"{key} must be in (0, 1) for a temporal split, got {frac}")
        if not 0 < valid_frac + test_frac < 1:
            raise DataError(f"data.valid_frac + data.test_frac must be in (0, 1), got {valid_frac + test_frac}")
        ts = np.sort(df["timestamp"].to_numpy())
        t_valid = ts[min(int(len(ts) * (1 - valid_frac - test_frac)), len(ts) - 1)]
        t_test = ts[min(int(len(ts) * (1 - test_frac)), len(ts) - 1)]
        # events sharing the cut-off time stay on one side: nothing at time t is both history and target
        train = df[df["timestamp"] < t_valid]
        valid = df[(df["timestamp"] >= t_valid) & (df["timestamp"] < t_test)]
        test = df[df["timestamp"] >= t_test]
        _check_temporal(raw.name, train, valid, test, valid_frac, test_frac)
    else:
        raise DataError(f"data.split must be 'loo' or 'temporal', got {split!r}")

    items = raw.items.set_index("item").reindex(item_vocab.ids).reset_index()
    items = items.rename(columns={items.columns[0]: "item"}).fillna("")
    pad = pd.DataFrame([{c: "" for c in items.columns}])
    pad["item"] = "[PAD]"
    items = pd.concat([pad, items], ignore_index=True)
    stats = {
        "raw_interactions": n_raw, "duplicates_dropped": n_dup, "interactions": len(df),
        "users": len(user_vocab), "items": len(item_vocab),
        "train": len(train), "valid": len(valid), "test": len(test),
        "density": len(df) / (len(user_vocab) * len(item_vocab)),
    }
    cols = ["user", "item", "timestamp", "order"]
    out = Split(raw.name, split, train[cols].reset_index(drop=True), valid[cols].reset_index(drop=True),
                test[cols].reset_index(drop=True), user_vocab, item_vocab, items, list(raw.text_fields), stats,
                getattr(raw, "default_template", None))
    # loader facts (e.g. items_not_in_item_file, counted over the raw file); items_without_text is recounted
    # here over the kept items: those whose default text (render_texts()) is empty
    stats.update({k: v for k, v in (getattr(raw, "stats", None) or {}).items() if k not in stats})
    stats["items_without_text"] = sum(1 for t in out.render_texts() if not t.strip())
    return out
