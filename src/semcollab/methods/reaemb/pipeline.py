"""ReaEmb end to end: a dataset's items -> attribute texts -> stage 1 (LRCL) -> stage 2 (CRRL) -> item tables
for SASRec / GRU4Rec / BERT4Rec (``--model_params.item_table=PATH``).

The LM maths lives in :mod:`semcollab.methods.reaemb.encoder`; this module runs it on a dataset:

* :func:`train_reaemb` -- stage 1 (LoRA + thought module + temperature on two attribute-dropout views per
  item) and stage 2 (LoRA merged and frozen; the thought module alone, rewarded by the rank of each
  item's top co-occurring item, co-occurrence counted over TRAINING sequences only). Each stage is
  resumable under ``<out>/stage1`` / ``<out>/stage2``: a stage stopped by its ``max_minutes`` raises
  :class:`ReaEmbIncomplete` (CLI exit code 3) and the same command continues it exactly. A finished stage
  writes ``<out>/<stage>/final`` (stage 1: the LoRA adapter folder ``adapter/`` + ``reaemb.safetensors``
  with the thought module and log-temperature; stage 2: ``reaemb.safetensors`` with the thought module;
  ``state.json`` with the state's hash, steps and losses) and ``<out>/timing.json`` gets the stage's
  seconds and peak memory (process peak RSS, ``ru_maxrss``; CUDA peak allocation when on CUDA).
* :func:`reaemb_table` -- the ``(n_items + 1, d)`` table of the whole catalogue (row 0 = padding = 0;
  items without text = 0) from ``"plain"`` (the base LM mean-pooled, no LoRA, no thought: the
  LLMEmb-style baseline), ``"stage1"`` or ``"stage2"``; cached under ``<cache>/reaemb/tables/<key>/`` where
  the key hashes the texts, the LM's identity, the trained state's hash, the mode and the encoder settings.
* :func:`kv_reuse_benchmark` -- seconds of one plain pass, the naive full second pass and the KV-cache
  second pass over the same texts, their ratios, and whether the last two agree.

A run folder is tied to its settings: a stage refuses to continue in a folder made with other settings
(data, texts, LM, stage settings; not ``max_minutes``, ``checkpoint_every``, ``device`` or
``table_batch_size``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from ...config import ConfigError, DataConfig, allowed, at_least, fraction, one_of, positive, resolve_config, to_dict
from ...errors import ReaEmbIncomplete  # noqa: F401  (defined in errors.py)
from ...train.lm_steps import CheckpointMismatchError
from ...train.trainer import resolve_device
from .encoder import CRRLSettings, LRCLSettings, ReaEmbConfig

STAGES = ("stage1", "stage2")
TABLE_STAGES = ("plain", "stage1", "stage2")
TABLE_VERSION = "reaemb-table-v2"  # v2: LoRA merged only over float32 weights (freeze_lm)
_DEVICE = allowed("auto", lambda v: re.match(r"^(auto|cpu|mps|cuda(:\d+)?)$", v) is not None,
                  "auto, cpu, cuda, cuda:<n> or mps")



# ---------------------------------------------------------------------------------------------- config
@dataclass
class Stage1Settings(LRCLSettings):
    """LRCL (paper: LoRA r 8 / alpha 32 / dropout .1, lr 2e-4, 2,000 steps, 64 pairs per GPU x 4 GPUs,
    views drop 40% of the attributes). ``max_steps`` caps the optimizer steps (``epochs`` is the ceiling
    it is cut from)."""

    max_steps: int | None = at_least(2000, 1)
    epochs: int = at_least(100, 1)
    batch_size: int = at_least(64, 2)  # items per batch (2 views each); in-batch negatives need >= 2
    grad_accum: int = at_least(1, 1)
    lr: float = positive(2e-4)
    weight_decay: float = at_least(0.0, 0, integer=False)
    warmup_ratio: float = fraction(0.03)
    max_minutes: float | None = positive(None)  # per call; the same command continues
    checkpoint_every: int = at_least(50, 0)  # optimizer steps (0: only when stopping or finishing)
    lora_rank: int = at_least(8, 1)
    lora_alpha: float = positive(32.0)
    lora_dropout: float = fraction(0.1)


@dataclass
class Stage2Settings(CRRLSettings):
    """CRRL (paper: 8 rollouts, sigma .1, clip .2/.28, lr 1e-4, one epoch; 1 co-occurring + 9 random
    candidates). ``max_anchors``: train on a fixed random subset of the anchors (CPU budget)."""

    max_steps: int | None = at_least(None, 1)
    epochs: int = at_least(1, 1)
    batch_size: int = at_least(4, 1)  # anchor items per batch
    grad_accum: int = at_least(1, 1)
    lr: float = positive(1e-4)
    warmup_ratio: float = fraction(0.03)
    max_minutes: float | None = positive(None)
    checkpoint_every: int = at_least(50, 0)
    n_random: int = at_least(9, 1)  # random non-co-occurring candidates per anchor
    max_anchors: int | None = at_least(None, 1)


@dataclass
class ReaEmbPipelineConfig:
    """Everything :func:`train_reaemb` and :func:`reaemb_table` need (YAML-loadable, ``key.sub=value``
    overrides). ``data``: as in ``semcollab train`` (path, k-core, split; ``data.name`` is replaced by
    ``dataset``) -- keep it equal to the downstream run's so the table's rows are its items.
    ``text_fields``: the item columns written as ``"attribute is value; ..."`` (default: the dataset's text
    fields), each value cut to ``max_chars``. ``encoder``: prompt / chat template / EOS / max_length / rotary
    base / initial temperature. ``dtype``: None = bfloat16 on CUDA, float32 elsewhere."""

    dataset: str = "s3rec:Beauty"
    lm: str = "smollm2-135m"  # a registry name (semcollab models), a local folder or a hub id
    data: DataConfig = field(default_factory=DataConfig)
    text_fields: list[str] | None = None
    max_chars: int = at_least(100, 1)
    encoder: ReaEmbConfig = field(default_factory=ReaEmbConfig)
    stage1: Stage1Settings = field(default_factory=Stage1Settings)
    stage2: Stage2Settings = field(default_factory=Stage2Settings)
    table_batch_size: int = at_least(32, 1)
    device: str = _DEVICE
    dtype: str | None = one_of(None, None, "float32", "bfloat16", "float16")
    seed: int = at_least(0, 0)
    output_dir: str | None = None  # the run folder; default runs/reaemb/<dataset>-<lm>
    progress: bool = True

    def _check(self):
        if not self.dataset.strip():
            yield "dataset", "must name a dataset, e.g. s3rec:Beauty"
        if not self.lm.strip():
            yield "lm", "must name a causal LM, e.g. smollm2-135m"
        if self.text_fields is not None and not self.text_fields:
            yield "text_fields", "must be null (the dataset's text fields) or a non-empty list"


def load_pipeline_config(config=None, overrides: Sequence[str] | None = None, **top) -> ReaEmbPipelineConfig:
    """A YAML path, dict, :class:`ReaEmbPipelineConfig` or None, with ``key=value`` overrides and top-level
    keys (``dataset=..., lm=...``; None values ignored) on top, validated."""
    cfg = resolve_config(config, list(overrides or []), schema=ReaEmbPipelineConfig)
    if top:
        cfg = resolve_config(cfg, [f"{k}={v}" for k, v in top.items() if v is not None], schema=ReaEmbPipelineConfig)
    cfg.data.name = cfg.dataset  # `dataset` names the data; the saved config.yaml must not show data's default name
    return cfg


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[-60:] or "x"


def run_dir_of(cfg: ReaEmbPipelineConfig) -> Path:
    return Path(cfg.output_dir or Path("runs") / "reaemb" / f"{_safe(cfg.dataset)}-{_safe(Path(cfg.lm).name)}")


def _data_config(cfg: ReaEmbPipelineConfig) -> DataConfig:
    d = DataConfig(**to_dict(cfg.data))
    d.name = cfg.dataset
    return d


# ----------------------------------------------------------------------------------------------- helpers
def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _texts_sha(texts: Sequence[str]) -> str:
    from ...text.cache import text_hash

    return _sha([text_hash(t) for t in texts])


def lm_identity(name: str) -> dict:
    """The LM's identity for cache keys: its name and, for a local folder (registry models resolve to
    one), the names and sizes of its weight/config files plus the hash of its config.json."""
    from ...lm.load import _resolve

    path = Path(_resolve(os.path.expanduser(str(name))))
    ident = {"name": str(name)}
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix in {".safetensors", ".bin", ".gguf",
                                                                                   ".json", ".model"})
        ident["files"] = _sha([f"{f.relative_to(path)}:{f.stat().st_size}" for f in files])
        cfg_json = path / "config.json"
        if cfg_json.is_file():
            ident["config"] = hashlib.sha256(cfg_json.read_bytes()).hexdigest()
    return ident


def peak_memory() -> dict:
    """Process peak RSS so far (``ru_maxrss``, MiB) and, on CUDA, the peak allocation since the last reset."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"peak_rss_mb": round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)}
    if torch.cuda.is_available():
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _reset_cuda_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _write_json(path: Path, obj) -> None:
    from ...runs.files import write_file_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def _read_json(path: Path) -> dict | None:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _file_sha(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).name.encode())
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def _shared(settings, base: type) -> dict:
    """The fields a pipeline section shares with the method's own config class ``base``."""
    return {f.name: getattr(settings, f.name) for f in fields(base)}


@dataclass
class _Data:
    split: object
    texts: list[str]  # texts[i] describes item index i + 1
    fingerprint: str


def _load_data(cfg: ReaEmbPipelineConfig, log=None) -> _Data:
    from ...data import load_split
    from ...text.attribute_text import item_attribute_texts

    split = load_split(_data_config(cfg), log=log)
    fields = cfg.text_fields or split.text_fields
    if not fields:
        raise ConfigError(f"{split.name} has no item text fields; set text_fields to columns of its item table "
                          f"{list(split.items.columns)}")
    texts = item_attribute_texts(split, fields, cfg.max_chars)
    if sum(bool(t.strip()) for t in texts) < 2:
        raise ConfigError(f"{split.name}: fewer than 2 items have text in fields {fields}")
    return _Data(split, texts, split.fingerprint())


# ----------------------------------------------------------------------------------------------- encoder
def _stage_dir(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / stage


def _final_dir(run_dir: Path, stage: str) -> Path:
    return _stage_dir(run_dir, stage) / "final"


def stage_state(run_dir: str | Path, stage: str) -> dict | None:
    """``state.json`` of a finished stage (None when the stage has not finished)."""
    return _read_json(_final_dir(Path(run_dir), stage) / "state.json")


def _load_tensors(encoder, path: Path, names: Sequence[str]) -> None:
    from safetensors.torch import load_file

    state = load_file(str(path))
    params = dict(encoder.named_parameters())
    missing = [n for n in names if n not in state]
    if missing:
        raise CheckpointMismatchError(f"{path} lacks {missing[:5]}; the run folder is damaged, delete its final/")
    with torch.no_grad():
        for n in names:
            if params[n].shape != state[n].shape:
                raise CheckpointMismatchError(f"{path}: {n} has shape {tuple(state[n].shape)}, the encoder needs "
                                              f"{tuple(params[n].shape)} (another LM?)")
            params[n].copy_(state[n])


def _thought_names(encoder) -> list[str]:
    return [f"thought.{n}" for n, _ in encoder.thought.named_parameters()]


def build_encoder(cfg: ReaEmbPipelineConfig, state: str = "init", run_dir: str | Path | None = None,
                  merge: bool = True, device: torch.device | str | None = None):
    """A :class:`~semcollab.methods.reaemb.encoder.ReaEmbEncoder` for ``state``: ``"init"`` (base LM, fresh thought
    module drawn from ``cfg.seed``; also what ``"plain"`` uses), ``"stage1"`` (+ the stage-1 adapter,
    thought module and temperature), ``"stage2"`` (+ the stage-2 thought module). ``merge``: merge the
    adapter into the base weights and freeze the LM (inference, and what stage 2 trains on)."""
    from ...lm import load_adapter, load_causal_lm
    from .encoder import ReaEmbEncoder, freeze_lm

    device = resolve_device(cfg.device, key="device") if device is None else torch.device(device)
    model, tok = load_causal_lm(cfg.lm, dtype=cfg.dtype, device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        enc = ReaEmbEncoder(model, tok, cfg.encoder)
    if state in ("stage1", "stage2"):
        s1 = _final_dir(run_dir, "stage1")
        enc.lm = load_adapter(enc.lm, s1 / "adapter")
        _load_tensors(enc, s1 / "reaemb.safetensors", _thought_names(enc) + ["log_temp"])
        if state == "stage2":
            _load_tensors(enc, _final_dir(run_dir, "stage2") / "reaemb.safetensors", _thought_names(enc))
    elif state not in ("init", "plain"):
        raise ValueError(f"state must be init, plain, stage1 or stage2, got {state!r}")
    if merge:
        freeze_lm(enc)
        enc.eval()  # an unmerged adapter's LoRA dropout must stay off for inference
    return enc.to(device)


# ----------------------------------------------------------------------------------------------- training
@dataclass
class ReaEmbTrainResult:
    run_dir: Path
    stages: dict = field(default_factory=dict)  # stage -> state.json content (finished stages)
    timing: dict = field(default_factory=dict)


_NOT_TRAJECTORY = ("max_minutes", "checkpoint_every")


def _identity(cfg: ReaEmbPipelineConfig, data: _Data, stage: str, stage1_sha: str | None = None) -> dict:
    ident = {"dataset": cfg.dataset, "data_fingerprint": data.fingerprint, "texts": _texts_sha(data.texts),
             "lm": lm_identity(cfg.lm), "encoder": to_dict(cfg.encoder), "seed": cfg.seed,
             # the precision actually used (None = bf16 on CUDA, fp32 elsewhere): a stage started on a CPU is not
             # silently continued in bf16 on a GPU
             "dtype": cfg.dtype or ("bfloat16" if resolve_device(cfg.device, key="device").type == "cuda" else "float32")}
    s = {k: v for k, v in to_dict(getattr(cfg, stage)).items() if k not in _NOT_TRAJECTORY}
    ident[stage] = s
    if stage == "stage2":
        ident["stage1_state"] = stage1_sha
    return ident


def _check_identity(stage_dir: Path, ident: dict) -> None:
    path = stage_dir / "identity.json"
    old = _read_json(path)
    if old is None:
        if path.exists():
            raise CheckpointMismatchError(f"{path} is damaged; delete {stage_dir} to start the stage over")
        if (stage_dir / "final").exists() or (stage_dir / "checkpoint.pt").exists():
            raise CheckpointMismatchError(f"{stage_dir} holds a stage without {path.name}; delete it to start over")
        _write_json(path, ident)
        return
    if old != ident:
        diff = sorted(k for k in set(old) | set(ident) if old.get(k) != ident.get(k))
        raise CheckpointMismatchError(f"{stage_dir} holds a {stage_dir.name} run made with different {diff}; use "
                                      f"another output_dir or delete {stage_dir} to start that stage over")


def _record_timing(run_dir: Path, stage: str, call: dict, finished: bool, extra: dict) -> dict:
    path = Path(run_dir) / "timing.json"
    timing = _read_json(path) or {}
    entry = timing.get(stage, {"calls": []})
    entry["calls"].append(call)
    entry["seconds"] = round(sum(c["seconds"] for c in entry["calls"]), 3)
    entry["peak_rss_mb"] = max(c["peak_rss_mb"] for c in entry["calls"])
    if any("cuda_peak_mb" in c for c in entry["calls"]):
        entry["cuda_peak_mb"] = max(c.get("cuda_peak_mb", 0.0) for c in entry["calls"])
    entry["finished"] = finished
    entry.update(extra)
    timing[stage] = entry
    timing["note"] = ("seconds: wall clock summed over the calls of a stage (resumed runs included); peak_rss_mb: "
                      "the process's peak resident memory (ru_maxrss) at the end of each call, so it includes "
                      "data loading; cuda_peak_mb: torch.cuda.max_memory_allocated during the call")
    _write_json(path, timing)
    return timing


def _lm_train_config(s, cfg: ReaEmbPipelineConfig):
    from ...lm import LMTrainConfig

    return LMTrainConfig(epochs=s.epochs, batch_size=s.batch_size, grad_accum=s.grad_accum, lr=s.lr,
                         weight_decay=getattr(s, "weight_decay", 0.0), warmup_ratio=s.warmup_ratio, seed=cfg.seed,
                         max_minutes=s.max_minutes, max_steps=s.max_steps, checkpoint_every=s.checkpoint_every,
                         device=cfg.device, progress=cfg.progress)


def _finish_stage(res, stage: str, stage_dir: Path, t0: float, run_dir: Path, extra: dict, log) -> None:
    call = {"seconds": round(time.perf_counter() - t0, 3), "steps": res.steps, "total_steps": res.total_steps,
            "stopped_by": res.stopped_by, "resumed_from_step": res.resumed_from_step,
            "tokens_per_second": round(res.tokens_per_second, 1), **peak_memory()}
    _record_timing(run_dir, stage, call, res.finished, extra)
    if not res.finished:
        raise ReaEmbIncomplete(f"{stage} not finished: stopped at step {res.steps}/{res.total_steps} "
                               f"({res.stopped_by}); rerun the same command to continue from {stage_dir}")


def _write_final(stage_dir: Path, write: Callable[[Path], None], state: dict) -> None:
    from ...runs.files import write_dir_atomic

    def fill(tmp: Path) -> None:
        write(tmp)
        files = sorted(p for p in tmp.rglob("*.safetensors"))
        state["state_sha256"] = _file_sha(files) if "stage1_state" not in state else \
            _sha([state["stage1_state"], _file_sha(files)])
        (tmp / "state.json").write_text(json.dumps(state, indent=2, default=str) + "\n")

    write_dir_atomic(stage_dir / "final", fill, what=f"{stage_dir.name} result", required=True, replace=True)


def _run_stage1(cfg: ReaEmbPipelineConfig, data: _Data, run_dir: Path, log) -> dict:
    from safetensors.torch import save_file

    from ...lm import LoRAConfig, save_adapter
    from .encoder import Stage1Config, train_stage1

    d = _stage_dir(run_dir, "stage1")
    d.mkdir(parents=True, exist_ok=True)
    _check_identity(d, _identity(cfg, data, "stage1"))
    done = stage_state(run_dir, "stage1")
    if done is not None:
        log and log(f"stage 1 already finished ({done['steps']} steps) in {d}")
        return done
    s = cfg.stage1
    s1 = Stage1Config(train=_lm_train_config(s, cfg), lora=LoRAConfig(rank=s.lora_rank, alpha=s.lora_alpha,
                                                                       dropout=s.lora_dropout),
                      **_shared(s, LRCLSettings))
    t0 = time.perf_counter()
    _reset_cuda_peak()
    enc = build_encoder(cfg, "init", merge=False)
    n_text = sum(bool(t.strip()) for t in data.texts)
    log and log(f"stage 1 (LRCL): {n_text} items with text of {len(data.texts)}, checkpoints in {d}")
    res = train_stage1(enc, data.texts, s1, checkpoint_dir=d, log=log)
    _finish_stage(res, "stage1", d, t0, run_dir, {"items": n_text, "steps": res.steps}, log)

    def write(tmp: Path) -> None:
        save_adapter(enc.lm, tmp / "adapter")
        tensors = {n: p.detach().float().cpu().contiguous() for n, p in enc.named_parameters()
                   if n.startswith("thought.") or n == "log_temp"}
        save_file(tensors, str(tmp / "reaemb.safetensors"))

    _write_final(d, write, {"stage": "stage1", "steps": res.steps, "losses": res.losses,
                            "temperature": float(enc.log_temp.detach().exp())})
    log and log(f"stage 1 finished ({res.steps} steps, last loss {res.losses[-1]:.4f}); saved to {d / 'final'}")
    return stage_state(run_dir, "stage1")


def stage2_candidates(cfg: ReaEmbPipelineConfig, data: _Data):
    """The stage-2 anchors and candidates: co-occurrence over the split's TRAINING sequences only (no valid
    or test event), anchors without text dropped, then at most ``stage2.max_anchors`` of them (a fixed random
    subset drawn from ``seed``)."""
    from .encoder import Candidates, co_occurrence_candidates

    split = data.split
    c = co_occurrence_candidates(split.train_sequences(), split.n_items, cfg.stage2.n_random, rng=cfg.seed)
    keep = np.asarray([bool(data.texts[a - 1].strip()) for a in c.anchors], dtype=bool)
    if cfg.stage2.max_anchors is not None and keep.sum() > cfg.stage2.max_anchors:
        idx = np.flatnonzero(keep)
        chosen = np.random.default_rng(cfg.seed).choice(idx, cfg.stage2.max_anchors, replace=False)
        keep = np.zeros_like(keep)
        keep[chosen] = True
    return Candidates(c.anchors[keep], c.candidates[keep], c.no_cooccurrence, c.fallback_negatives)


def _run_stage2(cfg: ReaEmbPipelineConfig, data: _Data, run_dir: Path, log) -> dict:
    from safetensors.torch import save_file

    from .encoder import Stage2Config, train_stage2

    s1 = stage_state(run_dir, "stage1")
    if s1 is None:
        raise ConfigError(f"stage 1 has not finished in {run_dir}; run stage1 first (stages=stage1,stage2)")
    d = _stage_dir(run_dir, "stage2")
    d.mkdir(parents=True, exist_ok=True)
    _check_identity(d, _identity(cfg, data, "stage2", s1["state_sha256"]))
    done = stage_state(run_dir, "stage2")
    if done is not None:
        log and log(f"stage 2 already finished ({done['steps']} steps) in {d}")
        return done
    s = cfg.stage2
    cands = stage2_candidates(cfg, data)
    if not len(cands.anchors):
        raise ConfigError("stage 2: no anchor item (no item with text co-occurs with another in training)")
    if cfg.encoder.prompt.replace("{text}", "").strip() == "":
        empty = {int(c) for c in cands.candidates.ravel() if not data.texts[int(c) - 1].strip()}
        if empty:
            raise ConfigError(f"stage 2: {len(empty)} candidate items have no text and encoder.prompt adds none; "
                              "use a prompt with text around {text}")
    s2 = Stage2Config(train=_lm_train_config(s, cfg), **_shared(s, CRRLSettings))
    t0 = time.perf_counter()
    _reset_cuda_peak()
    enc = build_encoder(cfg, "stage1", run_dir, merge=False)  # train_stage2 merges and freezes
    log and log(f"stage 2 (CRRL): {len(cands.anchors)} anchors; of the catalogue's {data.split.n_items} items, "
                f"{cands.no_cooccurrence} co-occur with no other item in training and cannot be anchors; "
                f"checkpoints in {d}")
    res = train_stage2(enc, data.texts, cands, s2, checkpoint_dir=d, log=log)
    extra = {"anchors": res.anchors, "no_cooccurrence": res.no_cooccurrence, "steps": res.train.steps}
    _finish_stage(res.train, "stage2", d, t0, run_dir, extra, log)

    def write(tmp: Path) -> None:
        tensors = {n: p.detach().float().cpu().contiguous() for n, p in enc.named_parameters()
                   if n.startswith("thought.")}
        save_file(tensors, str(tmp / "reaemb.safetensors"))

    _write_final(d, write, {"stage": "stage2", "steps": res.train.steps, "losses": res.train.losses,
                            "anchors": res.anchors, "stage1_state": s1["state_sha256"],
                            "noise_free_rewards_this_call": res.rewards})
    log and log(f"stage 2 finished ({res.train.steps} steps); saved to {d / 'final'}")
    return stage_state(run_dir, "stage2")


def train_reaemb(config=None, stages: Sequence[str] | str = STAGES, log: Callable[[str], None] | None = print,
                 overrides: Sequence[str] | None = None) -> ReaEmbTrainResult:
    """Run the ReaEmb stages on a dataset (``config``: a :class:`ReaEmbPipelineConfig`, dict, YAML path or
    None; ``overrides`` on top). Resumable: the same call continues a stopped stage and skips finished
    ones. Raises :class:`ReaEmbIncomplete` when a stage stops at its ``max_minutes``."""
    cfg = load_pipeline_config(config, overrides)
    if isinstance(stages, str):
        stages = [s.strip() for s in stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise ConfigError(f"stages must be a non-empty subset of {list(STAGES)}, got {list(stages)}")
    run_dir = run_dir_of(cfg)
    from ...runs.files import check_writable

    check_writable(run_dir, what="output_dir")
    data = _load_data(cfg, log)
    # settings first: a folder made with others is refused before its config.yaml is replaced
    _check_identity(_stage_dir(run_dir, "stage1"), _identity(cfg, data, "stage1"))
    s1 = stage_state(run_dir, "stage1")
    if "stage2" in stages and s1 is not None:
        _check_identity(_stage_dir(run_dir, "stage2"), _identity(cfg, data, "stage2", s1["state_sha256"]))
    import yaml

    from ...runs.files import write_file_atomic

    write_file_atomic(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False).encode())
    result = ReaEmbTrainResult(run_dir)
    for stage in STAGES:
        if stage in stages:
            result.stages[stage] = (_run_stage1 if stage == "stage1" else _run_stage2)(cfg, data, run_dir, log)
    result.timing = _read_json(run_dir / "timing.json") or {}
    return result


# ----------------------------------------------------------------------------------------------- tables
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
        if stage != "plain" and stage_state(run_dir, stage) is None:
            raise ConfigError(f"{stage} has not finished in {run_dir}; run `semcollab reaemb train` (again) first")
        return cfg
    if stage != "plain":
        raise ConfigError(f"a {stage} table needs a run folder (from `semcollab reaemb train`); without one only "
                          "the plain table exists")
    return load_pipeline_config(config, overrides, dataset=dataset)


def table_key(cfg: ReaEmbPipelineConfig, texts: Sequence[str], state_sha: str, mode: str, device: torch.device) -> str:
    dtype = cfg.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    return _sha({"version": TABLE_VERSION, "texts": _texts_sha(texts), "lm": lm_identity(cfg.lm),
                 "encoder": to_dict(cfg.encoder), "state": state_sha, "mode": mode, "dtype": dtype})


def _cached_table(folder: Path, key: str):
    meta = _read_json(folder / "item_table.json")
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
    (same name, ``.json``). The meta records ``item_ids_sha256``, which the recommenders check."""
    from ...hub.wheels import default_cache_dir
    from ...models.text_table import item_ids_sha256
    from .encoder import MODES, generate_table

    cfg = _table_cfg(run_dir, dataset, stage, config, overrides)
    mode = "plain" if stage == "plain" else mode
    if mode not in MODES or (stage != "plain" and mode == "plain"):
        raise ConfigError(f"mode must be kv_reuse or two_pass for a trained stage, got {mode!r}")
    data = _load_data(cfg, log)
    device = resolve_device(cfg.device, key="device")
    state_sha = "plain" if stage == "plain" else stage_state(run_dir, stage)["state_sha256"]
    key = table_key(cfg, data.texts, state_sha, mode, device)
    folder = Path(cfg.data.cache_dir or default_cache_dir()) / "reaemb" / "tables" / key[:32]
    meta = _cached_table(folder, key)
    if meta is not None:
        meta["cached"] = True
        log and log(f"using cached ReaEmb {stage} table {folder / 'item_table.npy'}")
    else:
        rows = [i for i, t in enumerate(data.texts) if t.strip()]
        t0 = time.perf_counter()
        _reset_cuda_peak()
        enc = build_encoder(cfg, "init" if stage == "plain" else stage, run_dir, merge=True, device=device)
        t_load = time.perf_counter() - t0
        log and log(f"ReaEmb {stage} table: {len(rows)} items with text, mode {mode}, on {device}")
        t1 = time.perf_counter()
        vecs = generate_table(enc, [data.texts[i] for i in rows], mode, batch_size or cfg.table_batch_size, progress)
        seconds = time.perf_counter() - t1
        table = np.zeros((len(data.texts) + 1, vecs.shape[1]), dtype=np.float32)
        table[np.asarray(rows, dtype=np.int64) + 1] = vecs
        meta = {"key": key, "stage": stage, "mode": mode, "dataset": data.split.name, "config_dataset": cfg.dataset,
                "lm": cfg.lm, "run_dir": str(Path(run_dir).resolve()) if run_dir else None, "state_sha256": state_sha,
                "shape": list(table.shape), "n_items": len(data.texts), "empty_texts": len(data.texts) - len(rows),
                "item_ids_sha256": item_ids_sha256(data.split.item_vocab.ids), "data_fingerprint": data.fingerprint,
                "device": str(device), "dtype": cfg.dtype or ("bfloat16" if device.type == "cuda" else "float32"),
                "batch_size": batch_size or cfg.table_batch_size, "seconds": round(seconds, 3),
                "load_seconds": round(t_load, 3), "items_per_second": round(len(rows) / max(seconds, 1e-9), 2),
                **peak_memory()}
        from ...runs.files import write_dir_atomic

        def write(tmp: Path) -> None:
            np.save(tmp / "item_table.npy", table)
            (tmp / "item_table.json").write_text(json.dumps(meta, indent=2) + "\n")

        written = write_dir_atomic(folder, write, what="ReaEmb table cache", replace=True)
        meta = {**meta, "cached": False}
        if not written:  # the cache could not be written (a warning says why): the table goes to `out` only
            if out is None:
                raise OSError(f"could not write the table cache {folder}; pass out=PATH to keep the table")
            _save_table(table, meta, Path(out))
            return Path(out), meta
    path = folder / "item_table.npy"
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
        _write_json(out.with_suffix(".json"), {k: v for k, v in meta.items() if k != "cached"})
        path = out
    return path, meta


def _save_table(table: np.ndarray, meta: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, table)
    _write_json(out.with_suffix(".json"), {k: v for k, v in meta.items() if k != "cached"})


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
    from .encoder import generate_table

    if n_items < 1 or repeats < 1:
        raise ConfigError(f"n_items and repeats must be >= 1, got {n_items} and {repeats}")
    stage = stage or ("stage2" if run_dir is not None else "plain")
    cfg = _table_cfg(run_dir, dataset, stage, config, overrides)
    data = _load_data(cfg, log)
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
            **peak_memory()}


__all__ = ["ReaEmbIncomplete", "ReaEmbPipelineConfig", "ReaEmbTrainResult", "Stage1Settings", "Stage2Settings",
           "build_encoder", "kv_reuse_benchmark", "lm_identity", "load_pipeline_config", "peak_memory",
           "reaemb_table", "run_dir_of", "stage2_candidates", "stage_state", "table_key", "train_reaemb"]
