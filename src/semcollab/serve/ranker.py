"""Serving-side view of a saved run: loaded once, then one matmul + mask + top-k per request.

A ranking run's score is, for every model shipped here, ``user_representation @ item_matrix.T``: the item
matrix (``item_table()`` of the sequence models, ``item_emb`` of MF, the text vectors of the semantic model,
the popularity column of pop) is computed once at start-up and a request only encodes its user (the sequence
encoder's last state, the MF user row, the mean text vector). Models whose scoring cannot be factored this way
fall back to their own ``score(users, seqs)``. Either way the start-up check below compares the served scores
with ``model.score`` on a few users and falls back when they differ, so what is served is what the model
ranks (``tests/serve`` also checks the top-k against ``semcollab recommend``'s)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import RequestError  # noqa: F401  (defined in errors.py)
from ..models.pop_correction import corrected


def _titles(split) -> list[str | None]:
    """A display title per item index (0 = padding): the ``title`` column, else the item's text, else None."""
    n = split.n_items
    out: list[str | None] = [None] * (n + 1)
    if "title" in split.items.columns:
        col = split.items["title"].astype(str).tolist()
        for i in range(1, n + 1):
            t = col[i].strip()
            out[i] = t if t and t not in ("nan", "None") else None
    if any(t is None for t in out[1:]) and split.text_fields:
        texts = split.render_texts()
        for i in range(1, n + 1):
            if out[i] is None and texts[i - 1].strip():
                out[i] = texts[i - 1].strip()[:200]
    return out


def _encoder(model):
    """The model's :class:`~semcollab.models.base.ServingFactors` (item matrix, encoder, excluded columns), or None
    where it knows no factoring (the server then calls ``score``)."""
    return model.serving_factors() if hasattr(model, "serving_factors") else None


@dataclass
class LoadedRun:
    """What every served run has (a ranking run, :class:`RankRun`, or a CTR run,
    :class:`~semcollab.serve.ctr_run.CTRRun`): its folder, config, model and split, and the id lookups of requests."""

    name: str
    path: Path
    cfg: object
    model: torch.nn.Module
    split: object
    fingerprint: str | None
    metrics: dict

    @property
    def version(self) -> str:
        return f"{self.name}@{(self.fingerprint or 'unrecorded')[:12]}"

    @property
    def model_name(self) -> str:
        return self.cfg.model

    @property
    def n_items(self) -> int:
        return self.split.n_items

    def user_index(self, raw: str, field: str = "body.user_id") -> int:
        from ..data import UnknownIdError

        try:
            return self.split.user_vocab.encode(raw)
        except UnknownIdError:
            raise RequestError(field, f"unknown user id {raw!r} for model {self.name!r}", [raw]) from None

    def item_indices(self, raws: list[str], field: str, titles: bool = False) -> list[int]:
        """Item indices of raw ids (or, with ``titles``, exact titles, case-insensitive); unknown ones listed."""
        index = self.split.item_vocab._index
        out, unknown = [], []
        for r in raws:
            i = index.get(str(r))
            if i is None and titles:
                i = self._title_index.get(str(r).casefold())
            if i is None:
                unknown.append(r)
            else:
                out.append(i)
        if unknown:
            what = "item ids or titles" if titles else "item ids"
            raise RequestError(field, f"unknown {what} for model {self.name!r}: {unknown[:20]}"
                               + (f" (and {len(unknown) - 20} more)" if len(unknown) > 20 else ""), unknown)
        return out

    def item_record(self, i: int, score: float | None = None) -> dict:
        rec = {"id": self.item_ids[i], "title": self.titles[i]}
        if score is not None:
            rec["score"] = float(score)
        return rec


@dataclass
class RankRun(LoadedRun):
    """A loaded ranking run (``semcollab train``)."""

    titles: list = field(default_factory=list)
    kind: str = "rank"
    # encode every known user's history once at start-up: a request by user id is then one row of a matmul
    precompute_users: bool = True
    # rank by score - pop_correction * log(1 + training count) (semcollab.models.pop_correction); None: the run's
    # own eval.pop_correction, so a run is served as it was evaluated
    pop_correction: float | None = None

    def __post_init__(self):
        self.model.eval()
        if self.pop_correction is None:
            self.pop_correction = self.cfg.eval.pop_correction
        # what ranks: the model, or the model with the correction (explanations and tables still read the model)
        self.ranker = corrected(self.model, self.split.item_popularity(), self.pop_correction).eval()
        self.titles = _titles(self.split)
        self.item_ids = [None, *map(str, self.split.item_vocab.ids)]  # by index; 0 = padding
        self.histories = self.split._sequences([self.split.train, self.split.valid, self.split.test])
        self.max_len = getattr(self.model, "max_len", None)
        self._lock = threading.Lock()
        self._library = None
        self._unit_tables: dict[str, tuple] = {}
        self._title_index: dict[str, int] = {}
        for i in range(self.split.n_items, 0, -1):  # the lowest index wins for a repeated title
            if self.titles[i]:
                self._title_index[self.titles[i].casefold()] = i
        with torch.inference_mode():
            fac = _encoder(self.ranker)
            self.item_matrix, self._encode, self._extra_mask = fac if fac else (None, None, None)
            self.factored = fac is not None and self._self_check()
            if not self.factored:
                self.item_matrix = self._encode = self._extra_mask = None
            self.user_vectors = self._precompute_users() if self.factored and self.precompute_users else None

    @property
    def needs_user(self) -> bool:  # MF ranks known users only: an ad-hoc history has no user row
        from ..models.mf_bpr import MFBPR

        return isinstance(self.model, MFBPR)

    def _self_check(self, n: int = 8) -> bool:
        users = [u for u in range(self.split.n_users) if len(self.histories[u])][:n]
        if not users:
            return True
        u = torch.as_tensor(users)
        s = self._pad([self.histories[x] for x in users])
        want = self.ranker.score(u, s)
        got = self._scores(u, s)
        want, got = want[:, 1:].float(), got[:, 1:].float()
        both = torch.isfinite(want) & torch.isfinite(got)
        same_inf = torch.equal(torch.isfinite(want), torch.isfinite(got))
        tol = 1e-4 * max(1.0, float(want[both].abs().max()) if both.any() else 1.0)
        return same_inf and bool(((want - got)[both].abs() <= tol).all())

    def _precompute_users(self) -> torch.Tensor:
        """(n_users, D) encodings of every known user's whole history, computed in length-sorted chunks as a batch
        request is; a request by ``user_id`` (no ad-hoc history) reads its row instead of running the encoder."""
        n = self.split.n_users
        users = torch.arange(n)
        order = np.argsort([min(len(h), self.max_len or len(h)) for h in self.histories], kind="stable")
        out = None
        for start in range(0, n, 256):
            idx = order[start:start + 256]
            vec = self._encode(users[torch.as_tensor(idx)], self._pad([self.histories[i] for i in idx])).float()
            if out is None:
                out = torch.empty(n, vec.shape[1])
            out[torch.as_tensor(idx)] = vec
        return out if out is not None else torch.empty(0, self.item_matrix.shape[1])

    # ---------------------------------------------------------------- inputs
    def _pad(self, seqs: list[np.ndarray]) -> torch.Tensor:
        cut = [np.asarray(s[-self.max_len:] if self.max_len else s, dtype=np.int64) for s in seqs]
        width = max(1, max(len(s) for s in cut))
        if self.max_len and not getattr(self.model, "padding_invariant", False):
            width = self.max_len
        out = np.zeros((len(cut), width), dtype=np.int64)
        for r, s in enumerate(cut):
            if len(s):
                out[r, width - len(s):] = s
        return torch.as_tensor(out)

    # ---------------------------------------------------------------- scoring
    def _scores(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        if self.item_matrix is None:
            return self.ranker.score(users, seqs)
        return self._masked(self._encode(users, seqs) @ self.item_matrix.T)

    def _masked(self, scores: torch.Tensor) -> torch.Tensor:
        """Items the factoring says the model never ranks (a semantic model's items without text) get -inf."""
        return scores if self._extra_mask is None else scores.masked_fill(self._extra_mask, -torch.inf)

    SCORE_BLOCK_BYTES = 1 << 20  # float32 scores per block of precomputed users: fits a 1 MiB+ L2 cache
    CHUNK = 64  # rows per forward pass of a batch (64-256 measured alike on Beauty; 64 a little faster)

    @torch.inference_mode()
    def recommend(self, queries: list[dict]) -> list[dict]:
        """Top-k for each query ``{"user": idx | None, "history": [idx] | None, "k", "exclude_seen", "allow",
        "deny"}`` (indices already checked).

        A batch is scored in chunks of :attr:`CHUNK` rows (memory stays at ``CHUNK x n_items`` floats); for a
        padding-invariant model the rows are sorted by history length first and each chunk is padded only to its
        own longest history, as evaluation does: on short-history data (Amazon: ~9 items per user, max_len 50)
        that is several times fewer positions through the encoder, with the same scores (padding is masked,
        positions right-aligned)."""
        seqs = [self.histories[q["user"]] if q["history"] is None else np.asarray(q["history"], dtype=np.int64)
                for q in queries]
        users = torch.as_tensor([q["user"] if q["user"] is not None else 0 for q in queries])
        if len(seqs) > 1 and getattr(self.model, "padding_invariant", False):
            order = np.argsort([min(len(s), self.max_len or len(s)) for s in seqs], kind="stable")
        else:
            order = np.arange(len(seqs))
        out: list[dict | None] = [None] * len(queries)
        if self.user_vectors is not None and all(q["history"] is None for q in queries):
            # known users: precomputed rows; scored in blocks of at most SCORE_BLOCK_BYTES so that each block of
            # scores is still in the core's L2 cache when it is masked and top-k'ed (Beauty, 12,101 items, 1 thread:
            # 21 rows a block 24,800 users/s, 1,000 rows a block 10,200: the scores' round trip to memory dominates)
            step = max(1, min(256, self.SCORE_BLOCK_BYTES // (4 * (self.n_items + 1))))
            for start in range(0, len(queries), step):
                rows = list(range(start, min(start + step, len(queries))))
                scores = self._masked(self.user_vectors[users[rows]] @ self.item_matrix.T)
                for r, res in zip(rows, self._top(scores.float(), [queries[i] for i in rows], [seqs[i] for i in rows])):
                    out[r] = res
            return out
        for start in range(0, len(order), self.CHUNK):
            idx = order[start:start + self.CHUNK]
            scores = self._scores(users[torch.as_tensor(idx)], self._pad([seqs[i] for i in idx])).float()
            for r, res in zip(idx, self._top(scores, [queries[i] for i in idx], [seqs[i] for i in idx])):
                out[r] = res
        return out

    def _top(self, scores: torch.Tensor, queries: list[dict], seqs: list[np.ndarray]) -> list[dict]:
        """Mask padding, exclusions and allow / deny lists in ``scores`` (one row per query), then top-k."""
        scores[:, 0] = -torch.inf
        kmax = max(q["k"] for q in queries)
        seen = [r for r, q in enumerate(queries) if q["exclude_seen"] and len(seqs[r])]
        if seen:  # every row's history masked in one indexing op
            rows = np.concatenate([np.full(len(seqs[r]), r) for r in seen])
            scores[torch.as_tensor(rows), torch.as_tensor(np.concatenate([seqs[r] for r in seen]))] = -torch.inf
        for r, q in enumerate(queries):
            if q["allow"] is not None:
                keep = torch.zeros(scores.shape[1], dtype=torch.bool)
                keep[torch.as_tensor(q["allow"], dtype=torch.long)] = True
                scores[r].masked_fill_(~keep, -torch.inf)
            if q["deny"]:
                scores[r, torch.as_tensor(q["deny"], dtype=torch.long)] = -torch.inf
        top = scores.topk(min(kmax, scores.shape[1]), dim=1)
        vals, idx, fin = top.values.tolist(), top.indices.tolist(), torch.isfinite(top.values).tolist()
        return [{"items": [(i, v) for i, v, f in zip(idx[r][: q["k"]], vals[r][: q["k"]], fin[r][: q["k"]]) if f],
                 "history": seqs[r]} for r, q in enumerate(queries)]

    # ---------------------------------------------------------------- similar items, explanations
    def embedding_table(self, which: str) -> tuple[str, torch.Tensor]:
        m = self.model
        semantic = getattr(m, "item_vectors", None)
        if semantic is None:
            semantic = getattr(m, "text", None)
        if which in ("auto", "semantic") and isinstance(semantic, torch.Tensor):
            return "semantic", semantic
        if which == "semantic":
            raise RequestError("body.embedding", f"run {self.name!r} ({self.model_name}) has no semantic item "
                               "embeddings; use embedding=id")
        table = None
        if hasattr(m, "item_table"):
            with torch.inference_mode():
                table = m.item_table()
        elif hasattr(m, "item_emb"):
            table = m.item_emb.weight
        if table is None:
            raise RequestError("body.model", f"run {self.name!r} ({self.model_name}) has no item embeddings")
        return "id", table[: self.n_items + 1]

    def _unit_table(self, which: str) -> tuple[str, torch.Tensor, torch.Tensor | None]:
        """(source, unit-length item table, rows without a vector or None), built on first use and kept: the
        weights never change while serving, and a text-adapter model's item_table() is a pass over the catalogue."""
        with self._lock:
            if which not in self._unit_tables:
                source, table = self.embedding_table(which)
                with torch.inference_mode():
                    dead = (table == 0).all(-1) if source == "semantic" else None
                    self._unit_tables[which] = (source, F.normalize(table.float(), dim=-1), dead)
            return self._unit_tables[which]

    def similar(self, item: int, k: int, which: str) -> tuple[str, list[tuple[int, float]]]:
        source, t, dead = self._unit_table(which)
        with torch.inference_mode():
            sims = t @ t[item]
            sims[0] = -torch.inf
            sims[item] = -torch.inf
            if dead is not None:
                sims[dead] = -torch.inf
            top = sims.topk(min(k, self.n_items))
        return source, [(i, v) for i, v in zip(top.indices.tolist(), top.values.tolist()) if np.isfinite(v)]

    @property
    def can_explain(self) -> bool:
        return hasattr(self.model, "explain") and hasattr(self.model, "act_idx")

    def library(self):
        with self._lock:
            if self._library is None:
                from ..methods.saerec.explain import build_library

                texts = self.split.render_texts(getattr(self.model.cfg, "template", None))
                m = self.model
                self._library = build_library(m.act_idx.numpy(), m.act_val.numpy(), texts, m.n_latents)
        return self._library

    def explain(self, history: list[int], item: int, n_intents: int = 3) -> dict:
        seq = self._pad([np.asarray(history, dtype=np.int64)])
        with torch.inference_mode():
            ex = self.model.explain(seq, item)
        lib = self.library()
        return {"gate": ex["gate"], "sequence_term": ex["sequence_term"],
                "intents": [{"kind": d["kind"], "latent": d["latent"], "label": lib.labels[d["latent"]],
                             "contribution": d["contribution"], "attention": d["attention"]}
                            for d in ex["intents"][:n_intents]]}


def load_serving_run(path: str | Path, allow_data_change: bool = False, precompute_users: bool = True,
                     allow_pickle: bool = False, pop_correction: float | None = None):
    """Load one run folder for serving (ranking, or CTR as :class:`~semcollab.serve.ctr_run.CTRRun`; told apart by
    ``run.json``'s ``task``). ``pop_correction``
    (ranking runs): see :class:`RankRun`."""
    import warnings

    from ..config import ConfigError
    from ..tasks.base import read_run_record
    from ..tasks.ranking import load_ranking_run

    path = Path(path)
    meta = read_run_record(path)
    metrics = {}
    mfile = path / "metrics.json"
    if mfile.exists():
        try:
            metrics = json.loads(mfile.read_text()).get("test", {})
        except (ValueError, AttributeError):
            metrics = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if allow_data_change else "default")
        if meta.get("task") == "ctr":
            from ..tasks.ctr import ctr_fingerprint, load_ctr_run
            from .ctr_run import CTRRun

            cfg, net, split = load_ctr_run(path, allow_data_change, allow_pickle)
            if cfg.model not in CTRRun.SUPPORTED:
                raise ConfigError(f"{path}: serving supports the CTR models {list(CTRRun.SUPPORTED)}; {cfg.model!r} "
                                  "builds its prompts from dataset rows and cannot score ad-hoc requests")
            return CTRRun(path.name, path, cfg, net, split, meta.get("data_fingerprint") or ctr_fingerprint(split),
                          metrics)
        cfg, net, split = load_ranking_run(path, allow_data_change=allow_data_change)
    net.to("cpu")
    return RankRun(path.name, path, cfg, net, split, meta.get("data_fingerprint") or split.fingerprint(), metrics,
                   precompute_users=precompute_users, pop_correction=pop_correction)
