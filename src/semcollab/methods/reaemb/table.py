"""ReaEmb item tables from a run folder (or the plain LM): :func:`reaemb_table` writes and caches the
``(n_items + 1, d)`` table a downstream SASRec / GRU4Rec / BERT4Rec reads, :func:`kv_reuse_benchmark` times the
plain, two-pass and KV-cache passes over the same texts.

A table's cache key hashes :data:`TABLE_VERSION`, the texts, the LM's identity, the encoder settings, the trained
state's hash, the mode and the precision: change any and a new table is computed; change none and the cached
bytes are returned."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ... import distributed as ddp
from ...config import ConfigError, resolve_device, to_dict
from ...hub.wheels import default_cache_dir
from ...lm.dtype import dtype_name, resolve_dtype
from ...models.text_table import item_ids_sha256
from ...runs.files import write_dir_atomic
from ...runs.shards import inference_shards
from . import run_folder
from .config import ReaEmbPipelineConfig, load_pipeline_config
from .encoder import MODES, generate_table
from .pipeline import build_encoder

TABLE_STAGES = ("plain", "stage1", "stage2")
TABLE_VERSION = "reaemb-table-v2"  # v2: LoRA merged only over float32 weights (freeze_lm)


def _run_config(run_dir: Path, overrides: Sequence[str] | None) -> ReaEmbPipelineConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a ReaEmb run folder (no config.yaml); give a folder written by "
                          "`semcollab reaemb train`")
    return load_pipeline_config(path, overrides)


def _table_cfg(run_dir, dataset, stage, config, overrides) -> ReaEmbPipelineConfig:
    if stage not in TABLE_STAGES:
        raise ConfigError(f"stage must be one of {list(TABLE_STAGES)}, got {stage!r}")
    if run_dir is not None:
        cfg = _run_config(Path(run_dir), overrides)
        if dataset is not None and dataset != cfg.dataset:
            raise ConfigError(f"run {run_dir} was trained on {cfg.dataset!r}, not {dataset!r}; a table for another "
                              "dataset needs a plain table or a run of that dataset")
        if stage != "plain" and run_folder.stage_state(run_dir, stage) is None:
            raise ConfigError(f"{stage} has not finished in {run_dir}; run `semcollab reaemb train` (again) first")
        return cfg
    if stage != "plain":
        raise ConfigError(f"a {stage} table needs a run folder (from `semcollab reaemb train`); without one only "
                          "the plain table exists")
    return load_pipeline_config(config, overrides, dataset=dataset)


def table_key(cfg: ReaEmbPipelineConfig, texts: Sequence[str], state_sha: str, mode: str, device: torch.device) -> str:
    dtype = dtype_name(resolve_dtype(cfg.dtype, device))
    return run_folder.sha_of({"version": TABLE_VERSION, "texts": run_folder.texts_sha(texts),
                              "lm": run_folder.lm_identity(cfg.lm), "encoder": to_dict(cfg.encoder), "state": state_sha,
                              "mode": mode, "dtype": dtype})


def _cached_table(folder: Path, key: str):
    meta = run_folder.read_json(folder / "item_table.json")
    if meta is None or meta.get("key") != key:
        return None
    try:
        table = np.load(folder / "item_table.npy", allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if list(table.shape) != meta.get("shape"):
        return None
    return meta


def reaemb_table(run_dir: str | Path | None = None, dataset: str | None = None, stage: str = "stage2",
                 mode: str = "kv_reuse", *, config=None, overrides: Sequence[str] | None = None,
                 batch_size: int | None = None, out: str | Path | None = None, progress: bool = False,
                 log: Callable[[str], None] | None = print) -> tuple[Path, dict]:
    """``(path of item_table.npy, meta)`` for the whole catalogue of the run's dataset (or, for ``stage="plain"``
    without a run, of ``dataset`` with ``config``'s LM and text settings): ``(n_items + 1, d)`` float32,
    row 0 and items without text all zero. ``mode``: kv_reuse (default) or two_pass (ignored for plain).

    Cached under ``<cache>/reaemb/tables/<key>/`` (``item_table.npy`` + ``item_table.json``); a second call
    with the same texts, LM, trained state, mode and encoder settings loads it without touching the LM
    (``meta["cached"]`` is True). ``out``: also copy the table there (``.npy``) with its meta beside it
    (same name, ``.json``). The meta records ``item_ids_sha256``, which the recommenders check.

    Under torchrun (``semcollab reaemb table --nproc N``) the LM batches are split over the ranks
    (:mod:`semcollab.runs.shards`: bit-equal to one process; a killed rank's shard is redone on resume); rank 0
    alone writes the cache and ``out``, and every rank returns the same path and meta."""
    if ddp.setup() and not ddp.is_main():
        log = None
    cfg = _table_cfg(run_dir, dataset, stage, config, overrides)
    mode = "plain" if stage == "plain" else mode
    if mode not in MODES or (stage != "plain" and mode == "plain"):
        raise ConfigError(f"mode must be kv_reuse or two_pass for a trained stage, got {mode!r}")
    data = run_folder.load_data(cfg, log)
    device = resolve_device(cfg.device, key="device")
    state_sha = "plain" if stage == "plain" else run_folder.stage_state(run_dir, stage)["state_sha256"]
    key = table_key(cfg, data.texts, state_sha, mode, device)
    folder = Path(cfg.data.cache_dir or default_cache_dir()) / "reaemb" / "tables" / key[:32]
    meta = ddp.from_main(_cached_table(folder, key))
    if meta is not None:
        meta["cached"] = True
        log and log(f"using cached ReaEmb {stage} table {folder / 'item_table.npy'}")
    else:
        rows = [i for i, t in enumerate(data.texts) if t.strip()]
        t0 = time.perf_counter()
        run_folder.reset_cuda_peak()
        enc = build_encoder(cfg, "init" if stage == "plain" else stage, run_dir, merge=True, device=device)
        t_load = time.perf_counter() - t0
        log and log(f"ReaEmb {stage} table: {len(rows)} items with text, mode {mode}, on {device}")
        t1 = time.perf_counter()
        with inference_shards(folder.parent.parent / "shards", key):
            vecs = generate_table(enc, [data.texts[i] for i in rows], mode, batch_size or cfg.table_batch_size,
                                  progress and ddp.is_main())
        seconds = time.perf_counter() - t1
        table = np.zeros((len(data.texts) + 1, vecs.shape[1]), dtype=np.float32)
        table[np.asarray(rows, dtype=np.int64) + 1] = vecs
        meta = {"key": key, "stage": stage, "mode": mode, "dataset": data.split.name, "config_dataset": cfg.dataset,
                "lm": cfg.lm, "run_dir": str(Path(run_dir).resolve()) if run_dir else None, "state_sha256": state_sha,
                "shape": list(table.shape), "n_items": len(data.texts), "empty_texts": len(data.texts) - len(rows),
                "item_ids_sha256": item_ids_sha256(data.split.item_vocab.ids), "data_fingerprint": data.fingerprint,
                "device": str(device), "dtype": dtype_name(resolve_dtype(cfg.dtype, device)),
                "batch_size": batch_size or cfg.table_batch_size, "seconds": round(seconds, 3),
                "load_seconds": round(t_load, 3), "items_per_second": round(len(rows) / max(seconds, 1e-9), 2),
                **run_folder.peak_memory()}
        def write(tmp: Path) -> None:
            np.save(tmp / "item_table.npy", table)
            (tmp / "item_table.json").write_text(json.dumps(meta, indent=2) + "\n")

        written = ddp.on_main(write_dir_atomic, folder, write, what="ReaEmb table cache", replace=True)
        meta = {**meta, "cached": False}
        if not written:  # the cache could not be written (a warning says why): the table goes to `out` only
            if out is None:
                raise OSError(f"could not write the table cache {folder}; pass out=PATH to keep the table")
            with ddp.main_first():
                if ddp.is_main():
                    _save_table(table, meta, Path(out))
            return Path(out), meta
    path = folder / "item_table.npy"
    if out is not None:
        out = Path(out)
        with ddp.main_first():  # the others return once rank 0 has copied
            if ddp.is_main():
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, out)
                run_folder.write_json(out.with_suffix(".json"), {k: v for k, v in meta.items() if k != "cached"})
        path = out
    return path, meta


def _save_table(table: np.ndarray, meta: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, table)
    run_folder.write_json(out.with_suffix(".json"), {k: v for k, v in meta.items() if k != "cached"})


# ----------------------------------------------------------------------------------------------- benchmark
def kv_reuse_benchmark(run_dir: str | Path | None = None, dataset: str | None = None, stage: str | None = None, *,
                       config=None, overrides: Sequence[str] | None = None, n_items: int = 256,
                       batch_size: int | None = None, repeats: int = 1, tol: float | None = None,
                       log: Callable[[str], None] | None = print) -> dict:
    """Time, on the same ``n_items`` item texts (a fixed random subset of those with text), (a) one plain
    pass, (b) ``two_pass`` (pass 1 + a full second pass) and (c) ``kv_reuse`` (pass 1 + the thought/EOS
    positions on pass 1's cache); the best of ``repeats`` timed runs after one warm-up batch each.

    Returns seconds, ``ratio_kv_reuse_to_plain`` = (c)/(a), ``ratio_two_pass_to_plain`` = (b)/(a), and the
    largest difference between (b) and (c) relative to the largest |(b)| with ``equal`` = that <= ``tol``
    (default 1e-4 in float32, 3e-2 in 16-bit). ``stage``: default stage2 with a run, else plain (the
    encoder's fresh thought module: the passes' cost does not depend on its weights)."""
    if n_items < 1 or repeats < 1:
        raise ConfigError(f"n_items and repeats must be >= 1, got {n_items} and {repeats}")
    stage = stage or ("stage2" if run_dir is not None else "plain")
    cfg = _table_cfg(run_dir, dataset, stage, config, overrides)
    data = run_folder.load_data(cfg, log)
    rows = [i for i, t in enumerate(data.texts) if t.strip()]
    rng = np.random.default_rng(cfg.seed)
    pick = sorted(rng.choice(rows, min(n_items, len(rows)), replace=False).tolist())
    texts = [data.texts[i] for i in pick]
    device = resolve_device(cfg.device, key="device")
    enc = build_encoder(cfg, "init" if stage == "plain" else stage, run_dir, merge=True, device=device)
    bs = batch_size or cfg.table_batch_size
    lengths = [len(r) for r in enc.token_ids(texts)]

    def timed(mode: str) -> tuple[float, np.ndarray]:
        generate_table(enc, texts[:bs], mode, bs)  # warm-up
        best, out = float("inf"), None
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = generate_table(enc, texts, mode, bs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        return best, out

    secs, outs = {}, {}
    for mode in ("plain", "two_pass", "kv_reuse"):
        secs[mode], outs[mode] = timed(mode)
        log and log(f"{mode}: {secs[mode]:.3f} s for {len(texts)} items")
    diff = float(np.abs(outs["two_pass"] - outs["kv_reuse"]).max())
    scale = float(np.abs(outs["two_pass"]).max()) or 1.0
    dtype = str(next(enc.lm.parameters()).dtype).replace("torch.", "")
    tol = tol if tol is not None else (1e-4 if dtype == "float32" else 3e-2)
    return {"stage": stage, "items": len(texts), "batch_size": bs, "repeats": repeats, "device": str(device),
            "dtype": dtype, "mean_tokens": round(float(np.mean(lengths)), 1), "seconds": secs,
            "ratio_kv_reuse_to_plain": secs["kv_reuse"] / secs["plain"],
            "ratio_two_pass_to_plain": secs["two_pass"] / secs["plain"],
            "ratio_kv_reuse_to_two_pass": secs["kv_reuse"] / secs["two_pass"],
            "max_abs_diff": diff, "max_rel_diff": diff / scale, "tol": tol, "equal": diff / scale <= tol,
            **run_folder.peak_memory()}
