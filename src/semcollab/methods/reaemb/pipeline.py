"""ReaEmb end to end: a dataset's items -> attribute texts -> stage 1 (LRCL) -> stage 2 (CRRL) -> item tables
for SASRec / GRU4Rec / BERT4Rec (``--model_params.item_table=PATH``).

The LM maths lives in :mod:`.encoder`, :mod:`.objectives` and :mod:`.stages`; this module runs the stages on a
dataset, :mod:`.table` turns a run into item tables:

* :func:`train_reaemb` -- stage 1 (LoRA + thought module + temperature on two attribute-dropout views per
  item) and stage 2 (LoRA merged and frozen; the thought module alone, rewarded by the rank of each
  item's top co-occurring item, co-occurrence counted over TRAINING sequences only). Each stage is
  resumable under ``<out>/stage1`` / ``<out>/stage2``: a stage stopped by its ``max_minutes`` raises
  :class:`ReaEmbIncomplete` (CLI exit code 3) and the same command continues it exactly. A finished stage
  writes ``<out>/<stage>/final`` (stage 1: the LoRA adapter folder ``adapter/`` + ``reaemb.safetensors``
  with the thought module and log-temperature; stage 2: ``reaemb.safetensors`` with the thought module;
  ``state.json`` with the state's hash, steps and losses) and ``<out>/timing.json`` gets the stage's
  seconds and peak memory (process peak RSS, ``ru_maxrss``; CUDA peak allocation when on CUDA).
* :func:`~.table.reaemb_table` -- the ``(n_items + 1, d)`` table of the whole catalogue (row 0 = padding = 0;
  items without text = 0) from ``"plain"`` (the base LM mean-pooled, no LoRA, no thought: the
  LLMEmb-style baseline), ``"stage1"`` or ``"stage2"``; cached under ``<cache>/reaemb/tables/<key>/`` where
  the key hashes the texts, the LM's identity, the trained state's hash, the mode and the encoder settings.
* :func:`~.table.kv_reuse_benchmark` -- seconds of one plain pass, the naive full second pass and the KV-cache
  second pass over the same texts, their ratios, and whether the last two agree.

A run folder is tied to its settings: a stage refuses to continue in a folder made with other settings
(data, texts, LM, stage settings; not ``max_minutes``, ``checkpoint_every``, ``device`` or
``table_batch_size``).
"""


from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

from ... import distributed as ddp
from ...config import ConfigError, resolve_device, to_dict
from ...errors import CheckpointMismatchError, ReaEmbIncomplete
from ...lm.dtype import dtype_name, keep_lora_outputs_fp32, resolve_dtype
from ...lm.load import load_causal_lm
from ...lm.lora import load_adapter, save_adapter
from ...runs.checkpoints import key_diff
from ...runs.files import check_writable, write_dir_atomic, write_file_atomic
from .config import ReaEmbPipelineConfig, load_pipeline_config, run_dir_of
from .encoder import ReaEmbEncoder, freeze_lm
from .objectives import Candidates, co_occurrence_candidates
from .run_folder import (
    RunData,
    files_sha,
    final_dir,
    lm_identity,
    load_data,
    peak_memory,
    read_json,
    reset_cuda_peak,
    sha_of,
    stage_dir,
    stage_state,
    texts_sha,
    write_json,
)
from .stages import train_stage1, train_stage2

STAGES = ("stage1", "stage2")


def _load_tensors(encoder, path: Path, names: Sequence[str]) -> None:
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
    device = resolve_device(cfg.device, key="device") if device is None else torch.device(device)
    model, tok = load_causal_lm(cfg.lm, dtype=cfg.dtype, device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        enc = ReaEmbEncoder(model, tok, cfg.encoder)
    if state in ("stage1", "stage2"):
        s1 = final_dir(run_dir, "stage1")
        enc.lm = load_adapter(enc.lm, s1 / "adapter")
        keep_lora_outputs_fp32(enc.lm)  # an unmerged adapter over bf16 weights keeps its delta (lm/dtype.py)
        _load_tensors(enc, s1 / "reaemb.safetensors", _thought_names(enc) + ["log_temp"])
        if state == "stage2":
            _load_tensors(enc, final_dir(run_dir, "stage2") / "reaemb.safetensors", _thought_names(enc))
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


def _identity(cfg: ReaEmbPipelineConfig, data: RunData, stage: str, stage1_sha: str | None = None) -> dict:
    ident = {"dataset": cfg.dataset, "data_fingerprint": data.fingerprint, "texts": texts_sha(data.texts),
             "lm": lm_identity(cfg.lm), "encoder": to_dict(cfg.encoder), "seed": cfg.seed,
             # the precision actually used (semcollab.lm.dtype: None/auto = bf16 on CUDA and bf16-capable CPUs): a
             # stage started in fp32 is not silently continued in bf16 on another machine
             "dtype": dtype_name(resolve_dtype(cfg.dtype, resolve_device(cfg.device, key="device")))}
    s = {k: v for k, v in to_dict(getattr(cfg, stage)).items() if k not in _NOT_TRAJECTORY}
    ident[stage] = s
    if stage == "stage2":
        ident["stage1_state"] = stage1_sha
    return ident


def _check_identity(stage_dir: Path, ident: dict) -> None:
    path = stage_dir / "identity.json"
    old = read_json(path)
    if old is None:
        if path.exists():
            raise CheckpointMismatchError(f"{path} is damaged; delete {stage_dir} to start the stage over")
        if (stage_dir / "final").exists() or (stage_dir / "checkpoint.pt").exists():
            raise CheckpointMismatchError(f"{stage_dir} holds a stage without {path.name}; delete it to start over")
        write_json(path, ident)
        return
    if old != ident:
        diff = key_diff(old, ident)
        raise CheckpointMismatchError(f"{stage_dir} holds a {stage_dir.name} run made with different {diff}; use "
                                      f"another output_dir or delete {stage_dir} to start that stage over")


def _open_stage(stage_dir: Path, ident: dict, run_dir: Path) -> dict | None:
    """Create the stage's folder, check or write its identity; the stage's state if it has finished."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    _check_identity(stage_dir, ident)
    return stage_state(run_dir, stage_dir.name)


def _check_settings(cfg: ReaEmbPipelineConfig, data: RunData, stages: Sequence[str], run_dir: Path) -> None:
    """Settings first: a folder made with others is refused before its config.yaml is replaced."""
    _check_identity(stage_dir(run_dir, "stage1"), _identity(cfg, data, "stage1"))
    s1 = stage_state(run_dir, "stage1")
    if "stage2" in stages and s1 is not None:
        _check_identity(stage_dir(run_dir, "stage2"), _identity(cfg, data, "stage2", s1["state_sha256"]))
    write_file_atomic(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False).encode())


def _record_timing(run_dir: Path, stage: str, call: dict, finished: bool, extra: dict) -> dict:
    path = Path(run_dir) / "timing.json"
    timing = read_json(path) or {}
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
    write_json(path, timing)
    return timing



def _finish_stage(res, stage: str, stage_dir: Path, t0: float, run_dir: Path, extra: dict, log) -> None:
    call = {"seconds": round(time.perf_counter() - t0, 3), "steps": res.steps, "total_steps": res.total_steps,
            "stopped_by": res.stopped_by, "resumed_from_step": res.resumed_from_step,
            "tokens_per_second": round(res.tokens_per_second, 1), **peak_memory()}
    if ddp.is_main():  # under torchrun rank 0's clock and memory are recorded
        _record_timing(run_dir, stage, call, res.finished, extra)
    if not res.finished:  # the same on every rank (train_lm's stop decisions are shared)
        raise ReaEmbIncomplete(f"{stage} not finished: stopped at step {res.steps}/{res.total_steps} "
                               f"({res.stopped_by}); rerun the same command to continue from {stage_dir}")


def _write_final(stage_dir: Path, write: Callable[[Path], None], state: dict) -> None:
    def fill(tmp: Path) -> None:
        write(tmp)
        files = sorted(p for p in tmp.rglob("*.safetensors"))
        state["state_sha256"] = files_sha(files) if "stage1_state" not in state else \
            sha_of([state["stage1_state"], files_sha(files)])
        (tmp / "state.json").write_text(json.dumps(state, indent=2, default=str) + "\n")

    write_dir_atomic(stage_dir / "final", fill, what=f"{stage_dir.name} result", required=True, replace=True)


def _run_stage1(cfg: ReaEmbPipelineConfig, data: RunData, run_dir: Path, log) -> dict:
    d = stage_dir(run_dir, "stage1")
    done = ddp.on_main(_open_stage, d, _identity(cfg, data, "stage1"), run_dir)
    if done is not None:
        log and log(f"stage 1 already finished ({done['steps']} steps) in {d}")
        return done
    t0 = time.perf_counter()
    reset_cuda_peak()
    enc = build_encoder(cfg, "init", merge=False)
    n_text = sum(bool(t.strip()) for t in data.texts)
    log and log(f"stage 1 (LRCL): {n_text} items with text of {len(data.texts)}, checkpoints in {d}")
    res = train_stage1(enc, data.texts, cfg.stage1, checkpoint_dir=d, log=log, seed=cfg.seed, device=cfg.device,
                       progress=cfg.progress)
    _finish_stage(res, "stage1", d, t0, run_dir, {"items": n_text, "steps": res.steps}, log)

    def write(tmp: Path) -> None:
        save_adapter(enc.lm, tmp / "adapter")
        tensors = {n: p.detach().float().cpu().contiguous() for n, p in enc.named_parameters()
                   if n.startswith("thought.") or n == "log_temp"}
        save_file(tensors, str(tmp / "reaemb.safetensors"))

    if ddp.is_main():
        _write_final(d, write, {"stage": "stage1", "steps": res.steps, "losses": res.losses,
                                "temperature": float(enc.log_temp.detach().exp())})
    ddp.barrier()  # rank 0 wrote stage1/final; every rank reads it (here and in stage 2's encoder)
    log and log(f"stage 1 finished ({res.steps} steps, last loss {res.losses[-1]:.4f}); saved to {d / 'final'}")
    return stage_state(run_dir, "stage1")


def stage2_candidates(cfg: ReaEmbPipelineConfig, data: RunData):
    """The stage-2 anchors and candidates: co-occurrence over the split's TRAINING sequences only (no valid
    or test event), anchors without text dropped, then at most ``stage2.max_anchors`` of them (a fixed random
    subset drawn from ``seed``)."""
    split = data.split
    c = co_occurrence_candidates(split.train_sequences(), split.n_items, cfg.stage2.n_random, rng=cfg.seed)
    keep = np.asarray([bool(data.texts[a - 1].strip()) for a in c.anchors], dtype=bool)
    if cfg.stage2.max_anchors is not None and keep.sum() > cfg.stage2.max_anchors:
        idx = np.flatnonzero(keep)
        chosen = np.random.default_rng(cfg.seed).choice(idx, cfg.stage2.max_anchors, replace=False)
        keep = np.zeros_like(keep)
        keep[chosen] = True
    return Candidates(c.anchors[keep], c.candidates[keep], c.no_cooccurrence, c.fallback_negatives)


def _run_stage2(cfg: ReaEmbPipelineConfig, data: RunData, run_dir: Path, log) -> dict:
    s1 = ddp.from_main(stage_state(run_dir, "stage1") if ddp.is_main() else None)
    if s1 is None:
        raise ConfigError(f"stage 1 has not finished in {run_dir}; run stage1 first (stages=stage1,stage2)")
    d = stage_dir(run_dir, "stage2")
    done = ddp.on_main(_open_stage, d, _identity(cfg, data, "stage2", s1["state_sha256"]), run_dir)
    if done is not None:
        log and log(f"stage 2 already finished ({done['steps']} steps) in {d}")
        return done
    cands = stage2_candidates(cfg, data)
    if not len(cands.anchors):
        raise ConfigError("stage 2: no anchor item (no item with text co-occurs with another in training)")
    if cfg.encoder.prompt.replace("{text}", "").strip() == "":
        empty = {int(c) for c in cands.candidates.ravel() if not data.texts[int(c) - 1].strip()}
        if empty:
            raise ConfigError(f"stage 2: {len(empty)} candidate items have no text and encoder.prompt adds none; "
                              "use a prompt with text around {text}")
    t0 = time.perf_counter()
    reset_cuda_peak()
    enc = build_encoder(cfg, "stage1", run_dir, merge=False)  # train_stage2 merges and freezes
    log and log(f"stage 2 (CRRL): {len(cands.anchors)} anchors; of the catalogue's {data.split.n_items} items, "
                f"{cands.no_cooccurrence} co-occur with no other item in training and cannot be anchors; "
                f"checkpoints in {d}")
    res = train_stage2(enc, data.texts, cands, cfg.stage2, checkpoint_dir=d, log=log, seed=cfg.seed,
                       device=cfg.device, progress=cfg.progress)
    extra = {"anchors": res.anchors, "no_cooccurrence": res.no_cooccurrence, "steps": res.train.steps}
    _finish_stage(res.train, "stage2", d, t0, run_dir, extra, log)

    def write(tmp: Path) -> None:
        tensors = {n: p.detach().float().cpu().contiguous() for n, p in enc.named_parameters()
                   if n.startswith("thought.")}
        save_file(tensors, str(tmp / "reaemb.safetensors"))

    if ddp.is_main():
        _write_final(d, write, {"stage": "stage2", "steps": res.train.steps, "losses": res.train.losses,
                                "anchors": res.anchors, "stage1_state": s1["state_sha256"],
                                "noise_free_rewards_this_call": res.rewards})
    ddp.barrier()  # rank 0 wrote stage2/final and timing.json; every rank reads them
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
    if ddp.setup() and not ddp.is_main():  # under torchrun rank 0 alone logs, checks and writes the run folder
        log = None
    ddp.on_main(check_writable, run_dir, what="output_dir")
    with ddp.main_first():  # rank 0 fills the data cache; the others read it
        data = load_data(cfg, log)
    ddp.on_main(_check_settings, cfg, data, stages, run_dir)
    result = ReaEmbTrainResult(run_dir)
    for stage in STAGES:
        if stage in stages:
            result.stages[stage] = (_run_stage1 if stage == "stage1" else _run_stage2)(cfg, data, run_dir, log)
    result.timing = read_json(run_dir / "timing.json") or {}
    return result

