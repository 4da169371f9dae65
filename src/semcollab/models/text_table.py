"""A frozen item table from a language model (ReaEmb, LLMEmb, ...) as the item representation of SASRec,
GRU4Rec and BERT4Rec.

Set ``model_params.item_table`` to an ``.npy`` file holding one row per item index, ``(n_items + 1, d)``
float (row 0 = padding, ignored; rows 1..n = the items in the split's index order), e.g. what
``semcollab reaemb table`` writes, or to a folder holding ``item_table.npy``. Then:

* the rows 1..n are reduced by PCA to ``table_pca`` dimensions (fitted once on all item rows, then frozen;
  clipped to what the table allows: at most ``min(n_items, d)``) and divided by one scalar, their RMS, so
  the adapter sees unit-scale input whatever the LM; the result is a frozen buffer (saved with the run's
  weights);
* a trainable adapter ``Linear(pca -> table_hidden) -> GELU -> Dropout(table_dropout) ->
  Linear(table_hidden -> hidden)`` (weights N(0, .02), biases 0, like SASRec's own init) maps it to the
  model's width (the paper's adapter: PCA 512 -> 256 -> hidden);
* ``table_mode="replace"``: the item representation is the adapter output (the paper's use: the ID rows
  of the embedding stay allocated -- BERT4Rec's [MASK] row lives there -- but receive no gradient);
  ``"add"``: ID embedding + adapter output.

The same representation is the model's input embedding and its output (scoring) table. Row 0 of the
representation is zero. When a JSON file sits beside the table (``<table>.json``, as the ReaEmb pipeline
writes it) and records ``item_ids_sha256``, the split's item ids must hash to it: a table of another
dataset or another k-core that happens to have the same number of rows is refused, never silently used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import ConfigError, at_least, fraction, one_of

TABLE_FILE = "item_table.npy"


@dataclass
class ItemTableSettings:
    """The ``model_params`` keys of a frozen LM item table (see the module docstring)."""

    item_table: str | None = None  # .npy with n_items + 1 rows, or a folder holding item_table.npy
    table_pca: int = at_least(512, 1)  # PCA dimension (clipped to min(n_items, d))
    table_mode: str = one_of("replace", "replace", "add")  # replace: adapter(PCA(table)); add: ID + adapter
    table_hidden: int = at_least(256, 1)  # the adapter's middle width
    table_dropout: float = fraction(0.1)  # dropout after the adapter's GELU

    def __post_init__(self):
        # absolute, so a saved run's config finds its table again from any working directory
        if self.item_table:
            self.item_table = str(Path(self.item_table).expanduser().resolve())


def item_ids_sha256(item_ids) -> str:
    """SHA-256 of a split's item ids in index order (``split.item_vocab.ids``), as the table meta records it."""
    h = hashlib.sha256()
    for i in item_ids:
        e = str(i).encode("utf-8", "surrogatepass")
        h.update(len(e).to_bytes(8, "little") + e)
    return h.hexdigest()


def table_path(spec: str) -> Path:
    """The ``.npy`` file an ``item_table`` setting names (a folder means its ``item_table.npy``)."""
    p = Path(spec).expanduser()
    if p.is_dir():
        p = p / TABLE_FILE
    return p


def load_item_table(spec: str, n_items: int, item_ids=None) -> np.ndarray:
    """Read and check an item table: ``(n_items + 1, d)``, finite, and (when ``item_ids`` are given and the
    table's meta JSON records them) made for these items. Errors are :class:`ConfigError` naming the file."""
    path = table_path(spec)
    want = f"(n_items + 1 = {n_items + 1}, d): row 0 = padding, rows 1..{n_items} = the items"
    if not path.is_file():
        raise ConfigError(f"model_params.item_table: no table file at {path} (expected an .npy of shape {want})")
    try:
        table = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model_params.item_table: {path} is not a readable .npy file ({exc}); expected shape "
                          f"{want}") from None
    if table.ndim != 2 or table.shape[0] != n_items + 1 or table.shape[1] < 1:
        raise ConfigError(f"model_params.item_table: {path} has shape {tuple(table.shape)}, expected {want}")
    if table.dtype.kind not in "fiu":
        raise ConfigError(f"model_params.item_table: {path} holds {table.dtype} values, expected numbers")
    table = np.asarray(table, dtype=np.float32)
    bad = ~np.isfinite(table[1:]).all(1)
    if bad.any():
        rows = (np.flatnonzero(bad) + 1)[:5].tolist()
        raise ConfigError(f"model_params.item_table: {path} has NaN/inf values in {int(bad.sum())} item row(s), "
                          f"e.g. rows {rows}; expected finite values of shape {want}")
    meta_path = path.with_suffix(".json")
    if item_ids is not None and meta_path.is_file():
        try:
            recorded = json.loads(meta_path.read_text(encoding="utf-8")).get("item_ids_sha256")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded and recorded != item_ids_sha256(item_ids):
            raise ConfigError(f"model_params.item_table: {path} was made for other items than this split's "
                              f"(item-id hash in {meta_path} differs): another dataset, or other data.* filter "
                              "settings? Rebuild the table for this split")
    return table


def _pca(rows: np.ndarray, dim: int) -> np.ndarray:
    """Rows projected on their top-``dim`` principal directions (centred; float64 SVD; a deterministic sign:
    each component's largest-magnitude loading is positive)."""
    x = rows.astype(np.float64)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:dim]
    sign = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
    sign[sign == 0] = 1
    return x @ (vt * sign[:, None]).T


class ItemTextTable(nn.Module):
    """Frozen ``PCA(table)`` (buffer ``text``, ``(n_items + 1, pca)``, row 0 zero) + the trainable adapter.

    ``forward(id_weight)`` -> the item representation ``(n_items + 1, hidden)`` (row 0 zero); ``id_weight``
    is the model's ID embedding weight (its first ``n_items + 1`` rows are used in ``"add"`` mode)."""

    def __init__(self, table: np.ndarray, hidden: int, settings: ItemTableSettings):
        super().__init__()
        n = table.shape[0] - 1
        if n < 1:
            raise ValueError("an item table needs at least one item row")
        dim = min(settings.table_pca, n, table.shape[1])
        red = _pca(np.asarray(table[1:]), dim)
        rms = float(np.sqrt((red ** 2).mean()))
        red = red / (rms if rms > 0 else 1.0)
        text = torch.zeros(n + 1, dim)
        text[1:] = torch.as_tensor(red, dtype=torch.float32)
        self.register_buffer("text", text)
        self.mode, self.n_items, self.pca_dim = settings.table_mode, n, dim
        self.adapter = nn.Sequential(nn.Linear(dim, settings.table_hidden), nn.GELU(),
                                     nn.Dropout(settings.table_dropout), nn.Linear(settings.table_hidden, hidden))
        for m in self.adapter:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, id_weight: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``rows`` (distinct item indices in 1..n): only those rows are computed, the others are zero -- for a
        training batch whose loss reads a few thousand of the catalogue's rows (sampled negatives): the
        adapter over the whole catalogue is otherwise most of an epoch's cost."""
        if rows is not None:
            out = self.adapter(self.text[rows])
            if self.mode == "add":
                out = out + id_weight[rows]
            return out.new_zeros(self.n_items + 1, out.shape[1]).index_copy(0, rows, out)
        # Scoring calls this once per evaluation batch; with no gradient and dropout off the result only
        # changes when a weight does, so it is reused until then (the same computation, bit for bit: a
        # validation pass over ~90 user batches otherwise re-runs the adapter over the whole catalogue each time).
        inputs = [*self.adapter.parameters(), self.text] + ([id_weight] if self.mode == "add" else [])
        # inference tensors keep no version counter; autocast would change the output's dtype. Weights written
        # behind autograd's back (``p.data.copy_``, a fused optimizer) are not seen: nothing here does that, and
        # every training forward drops the cache anyway.
        cacheable = (not self.training and not torch.is_grad_enabled() and not torch.is_autocast_enabled()
                     and not any(t.is_inference() for t in inputs))
        state = [(t.data_ptr(), t._version, t.device, t.dtype) for t in inputs] if cacheable else None
        if cacheable and self._cache is not None:
            cached_inputs, cached_state, cached_out = self._cache
            if len(cached_inputs) == len(inputs) and all(a is b for a, b in zip(cached_inputs, inputs)) \
                    and cached_state == state:
                return cached_out
        out = self.adapter(self.text[1:])
        if self.mode == "add":
            out = out + id_weight[1:self.n_items + 1]
        out = torch.cat([out.new_zeros(1, out.shape[1]), out])
        # keyed by the very tensors (held, so no id is ever reused) and their storage and in-place version
        # counters: an optimizer step, load_state_dict or .to() changes one of them
        self._cache = (inputs, state, out) if cacheable else None
        return out

    _cache: tuple | None = None


def build_text_table(cfg, n_items: int, hidden: int, item_ids=None) -> ItemTextTable | None:
    """The :class:`ItemTextTable` a model config asks for (``None`` when ``cfg.item_table`` is unset)."""
    spec = getattr(cfg, "item_table", None)
    if not spec:
        return None
    return ItemTextTable(load_item_table(spec, n_items, item_ids), hidden, cfg)


def check_table_support(cfg, supported: bool, model: str) -> None:
    """Models that reuse these config classes but build their own item table (fusion, SAERec, SASRec-CTR)
    must not silently ignore ``item_table``."""
    if getattr(cfg, "item_table", None) and not supported:
        raise ConfigError(f"model_params.item_table is supported by sasrec, gru4rec and bert4rec, not by {model}")


__all__ = ["TABLE_FILE", "ItemTableSettings", "ItemTextTable", "build_text_table", "check_table_support",
           "item_ids_sha256", "load_item_table", "table_path"]
