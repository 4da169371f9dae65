"""ReaEmb's settings, each declared once: how a text becomes LM input (:class:`ReaEmbConfig`), each stage
(:class:`Stage1Config`, :class:`Stage2Config`: the flat ``stage1.*`` / ``stage2.*`` sections of a run config, which
build the LM loop's :class:`~semcollab.train.lm_steps.LMTrainConfig` and the :class:`~semcollab.lm.lora.LoRAConfig`
they imply) and the whole run (:class:`ReaEmbPipelineConfig`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...config import DataConfig, at_least, device_option, fraction, one_of, positive, resolve_config, to_dict, validate
from ...lm.lora import LoRAConfig
from ...train.lm_steps import LMTrainConfig

# the authors' user prefix (they also wrap it in the Qwen chat template with a system prompt; see
# ReaEmbConfig.chat_template)
DEFAULT_PROMPT = "Please provide the item description. The item information is:\n{text}"


@dataclass
class ReaEmbConfig:
    """How an item text becomes LM input, and the thought module's constants.

    ``prompt`` holds ``{text}``. ``chat_template``: wrap the prompt as a user turn of the tokenizer's chat
    template (what the authors do with Qwen; off by default because base LMs may have none).
    ``append_eos``: EOS follows the thought token, as in the authors' code (skipped when the tokenizer
    has no EOS). ``rope_base``: 1000 as in the authors' module. ``init_temp``: the contrastive
    temperature's start (the authors' default tau is 1.0 on raw dot products)."""

    prompt: str = DEFAULT_PROMPT
    chat_template: bool = False
    append_eos: bool = True
    max_length: int = at_least(128, 4)
    rope_base: float = positive(1000.0)
    init_temp: float = positive(1.0)

    def _check(self):
        if "{text}" not in self.prompt:
            yield "prompt", f"must contain '{{text}}', got {self.prompt!r}"

    def validate(self) -> ReaEmbConfig:
        validate(self)
        return self



class _StageTraining:
    """What both stage sections share: the LM loop's settings they imply."""

    def train_config(self, seed: int = 0, device: str = "auto", progress: bool = True) -> LMTrainConfig:
        """The :class:`LMTrainConfig` of this stage; ``seed``, ``device`` and ``progress`` are the run's."""
        return LMTrainConfig(epochs=self.epochs, batch_size=self.batch_size, grad_accum=self.grad_accum, lr=self.lr,
                             weight_decay=getattr(self, "weight_decay", 0.0), warmup_ratio=self.warmup_ratio, seed=seed,
                             max_minutes=self.max_minutes, max_steps=self.max_steps,
                             checkpoint_every=self.checkpoint_every, device=device, progress=progress)

    def validate(self):
        validate(self)
        return self


@dataclass
class Stage1Config(_StageTraining):
    """LRCL (paper: LoRA r 8 / alpha 32 / dropout .1 on all projections, lr 2e-4, 2,000 steps, 64 pairs per GPU x 4
    GPUs, views drop 40% of the attributes). ``max_steps`` caps the optimizer steps (``epochs`` is the ceiling it
    is cut from). ``soft_targets``: the authors' targets ``softmax((A A^T + B B^T) / (2 tau))`` instead of the
    identity; ``detach_targets=False`` lets the gradient flow through them as in their code. ``normalize``: cosine
    instead of the authors' raw dot products. The field order is the saved config.yaml's."""

    view_drop: float = fraction(0.4)
    soft_targets: bool = True
    detach_targets: bool = False
    normalize: bool = False
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

    def lora_config(self) -> LoRAConfig:
        """The adapter these flat ``lora_*`` keys describe (kept flat: they are ``--stage1.lora_rank`` etc.)."""
        return LoRAConfig(rank=self.lora_rank, alpha=self.lora_alpha, dropout=self.lora_dropout)


@dataclass
class Stage2Config(_StageTraining):
    """CRRL (paper/authors: 8 rollouts per item, the first noise-free, Gaussian noise sigma .1 on the thought
    vector, PPO clip .2/.28, no KL term, lr 1e-4, one epoch; 1 co-occurring + 9 random candidates).

    ``noise_units``: ``"relative"`` (default) scales sigma by each thought vector's RMS, ``"absolute"`` uses sigma
    as is. Our thought vector starts on the scale of token embeddings, far smaller than the authors' (their module
    outputs on the scale of last-layer states), so an absolute .1 would drown it. ``advantage_l2_norm``: divide
    the advantages by their L2 norm over the batch, as the authors' trainer does. ``max_anchors``: train on a fixed
    random subset of the anchors (CPU budget)."""

    rollouts: int = at_least(8, 2)
    noise_sigma: float = positive(0.1)
    noise_units: str = one_of("relative", "relative", "absolute")
    eps_low: float = fraction(0.2)
    eps_high: float = at_least(0.28, 0, integer=False)
    advantage_l2_norm: bool = True
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
    base / initial temperature. ``dtype``: None or ``auto`` = the LM dtype policy (:mod:`semcollab.lm.dtype`:
    bfloat16 on CUDA and on CPUs with bf16 units, float32 elsewhere)."""

    dataset: str = "s3rec:Beauty"
    lm: str = "smollm2-135m"  # a registry name (semcollab models), a local folder or a hub id
    data: DataConfig = field(default_factory=DataConfig)
    text_fields: list[str] | None = None
    max_chars: int = at_least(100, 1)
    encoder: ReaEmbConfig = field(default_factory=ReaEmbConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    table_batch_size: int = at_least(32, 1)
    device: str = device_option()
    dtype: str | None = one_of(None, None, "auto", "float32", "bfloat16", "float16")
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


def data_config(cfg: ReaEmbPipelineConfig) -> DataConfig:
    d = DataConfig(**to_dict(cfg.data))
    d.name = cfg.dataset
    return d

