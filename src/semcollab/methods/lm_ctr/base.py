"""What the LM CTR models (TALLRec, CoLLM, SeLLa-Rec) share: a causal LM with LoRA reading a prompt built
from the row's history titles and target title, scored by P(" Yes") from two head rows, and step 1 of
every schedule -- LoRA tuned on the text prompt alone (TALLRec).

Step 1 is a pure function of its settings (including ``seed``, which also draws the initial adapter), the
training rows and their titles, so its checkpoint lives in the cache under a hash of all of them: TALLRec, CoLLM and SeLLa-Rec runs with equal step-1 settings train it once, and a
run stopped by ``max_minutes`` continues from its checkpoint when the same command is run again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...config import at_least, fraction, one_of, positive, resolve_device
from ...data.ctr import CTRPart, CTRSplit
from ...errors import TrainingIncomplete  # noqa: F401  (defined in errors.py)
from ...lm.dtype import POLICIES, describe_dtype, keep_lora_outputs_fp32
from ...models.base import CTRModel


@dataclass
class LMCTRConfig:
    lm: str = "smollm2-135m"  # a registry name (semcollab models), a local folder or a hub id
    lora_rank: int = at_least(8, 1)
    lora_alpha: float = positive(16.0)
    lora_dropout: float = fraction(0.05)
    max_length: int = at_least(256, 16)  # prompt tokens; longer prompts lose their oldest history titles
    title_chars: int = at_least(60, 8)  # longer titles are cut (ML-1M titles rarely exceed it)
    batch_size: int = at_least(8, 1)
    grad_accum: int = at_least(1, 1)
    lm_lr: float = positive(3e-4)  # step 1 (LoRA on the text prompt)
    lm_epochs: int = at_least(1, 1)
    score_batch_size: int = at_least(16, 1)
    # steps after step 1 (CoLLM mapping, SeLLa-Rec step 3) on a fixed random subset of the training rows;
    # each of their steps runs the LM forward and backward, so on a CPU they cost as much as step 1
    soft_max_rows: int | None = at_least(None, 1)
    max_minutes: float | None = positive(None)  # per training step; the same command resumes
    checkpoint_every: int = at_least(20, 0)  # optimizer steps between checkpoints (0: only at the end)
    seed: int = at_least(0, 0)
    # the frozen LM's weights (semcollab.lm.dtype): auto = bf16 on CUDA and on CPUs with bf16 units, else float32;
    # LoRA, mappers and projections stay float32 either way
    dtype: str = one_of("auto", *POLICIES)


@dataclass
class LMFitResult:
    """Per training stage: optimizer steps, seconds, tokens/s and the mean loss of the last 10 steps; ``dtype``:
    the LM's resolved dtype policy (run.json's ``fit.dtype``)."""

    stages: dict = field(default_factory=dict)
    dtype: dict = field(default_factory=dict)

    def add(self, stage: str, res) -> None:
        if hasattr(res, "losses"):  # an LMTrainResult
            self.stages[stage] = {"steps": res.steps, "seconds": round(res.seconds, 1),
                                  "tokens_per_second": round(res.tokens_per_second, 1),
                                  "final_loss": float(sum(res.losses[-10:]) / max(1, len(res.losses[-10:]))),
                                  "resumed_from_step": res.resumed_from_step, "stopped_by": res.stopped_by}
        else:  # a CTRFitResult of an embedding stage
            self.stages[stage] = {"epochs": res.epochs_run, "best_epoch": res.best_epoch,
                                  "best_valid_auc": res.best_valid_auc, "seconds": round(res.train_seconds, 1)}


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def part_fingerprint(part: CTRPart) -> str:
    h = hashlib.sha256()
    for a in (part.users, part.items, part.labels, part.history):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


class LMCTRModel(CTRModel):
    """Base of the LM CTR models. Subclasses set ``template`` and ``soft_tokens`` and may override
    :meth:`soft_vectors` (the recommender's vectors written at the special tokens) and :meth:`fit_ctr` (the default
    is TALLRec's schedule: step 1 alone)."""

    own_schedule = True  # trained by fit_ctr from model_params (lm_epochs, lm_lr, ...), not by train.*
    template = None  # a semcollab.lm.PromptTemplate
    # the kind of collaborative information each soft token carries (the attention diagnostic's lines)
    TOKEN_KINDS = {"<User_ID>": "user", "<Item_ID>": "item", "<Warm_ID>": "warm"}

    def __init__(self, split: CTRSplit, cfg: LMCTRConfig):
        super().__init__()
        self.text_only = False  # step 1: the plain text prompt, no soft tokens
        # semcollab.methods.lm_ctr.steering.AttentionControl once installed (SAILRec steering, the attention diagnostic):
        # every forward then tells it where the collaborative tokens are
        self.attn_control = None
        from ...lm import LoRAConfig, add_lora, add_special_tokens, answer_token_ids, load_causal_lm

        self.cfg, self.titles = cfg, [t[: cfg.title_chars] for t in split.titles]
        # resolved for the device a run gets by default (train.device=auto); the LM is moved there later
        self.dtype_info = describe_dtype(cfg.dtype, resolve_device("auto"), key="model_params.dtype")
        lm, self.tokenizer = load_causal_lm(cfg.lm, dtype=self.dtype_info["dtype"])
        # every LM model adds the same tokens, so step-1 adapters are interchangeable between them
        from ...lm import SOFT_TOKENS

        self.token_ids = add_special_tokens(self.tokenizer, lm, SOFT_TOKENS)
        self.yes_id, self.no_id = answer_token_ids(self.tokenizer)
        self.lora_cfg = LoRAConfig(rank=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
        with torch.random.fork_rng(devices=[]):  # the initial adapter depends on model_params.seed only
            torch.manual_seed(cfg.seed)
            self.lm = add_lora(lm, self.lora_cfg)
        keep_lora_outputs_fp32(self.lm)  # over bf16 weights: the adapter's delta is not rounded away (lm/dtype.py)
        with torch.no_grad():  # the scale of real token embeddings, for soft vectors
            emb = self.lm.get_input_embeddings()(torch.arange(min(4096, len(self.tokenizer))))
            self.register_buffer("emb_norm", emb.float().norm(dim=-1).median().reshape(1), persistent=False)

    @classmethod
    def from_split(cls, split: CTRSplit, cfg: LMCTRConfig) -> LMCTRModel:
        return cls(split, cfg)

    # ------------------------------------------------------------------ prompts
    def prompt(self, history: np.ndarray, item: int) -> str:
        from .prompts import TALLREC_MOVIE

        titles = [self.titles[i] for i in history if i > 0]
        template = TALLREC_MOVIE if self.text_only else self.template
        return template.render(history=", ".join(titles) if titles else "(none)", title=self.titles[item])

    def fitted_prompts(self, history: np.ndarray, items) -> tuple[list[str], list[int]]:
        """Prompts that fit ``max_length`` tokens, and their token lengths: the oldest history titles go first
        (cutting tokens off the front would drop the BOS token and half a title; the end holds the target and
        the answer). One batched tokenizer call; only the rows that are too long are tokenized again."""
        hists = [[x for x in h if x > 0] for h in history]
        items = [int(i) for i in items]
        prompts = [self.prompt(np.asarray(h, dtype=np.int64), i) for h, i in zip(hists, items)]
        lengths = [len(x) for x in self.tokenizer(prompts)["input_ids"]] if prompts else []
        for r, (h, i) in enumerate(zip(hists, items)):
            while lengths[r] > self.cfg.max_length and h:
                h = h[1:]
                prompts[r] = self.prompt(np.asarray(h, dtype=np.int64), i)
                lengths[r] = len(self.tokenizer(prompts[r])["input_ids"])
        return prompts, lengths

    def encode(self, batch: dict) -> dict:
        prompts, _ = self.fitted_prompts(batch["history"].cpu().numpy(), batch["items"].cpu().tolist())
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, truncation=True,
                             max_length=self.cfg.max_length)
        device = next(self.lm.parameters()).device
        return {k: v.to(device) for k, v in enc.items()}

    def prompt_lengths(self, part: CTRPart) -> list[int]:
        return self.fitted_prompts(part.history, part.items)[1]

    # ------------------------------------------------------------------ scoring
    def soft_vectors(self, batch: dict) -> dict[int, torch.Tensor]:
        """``{token_id: (B, d_LM)}`` for the special tokens in this model's prompt (none for TALLRec)."""
        return {}

    def scaled(self, vecs: torch.Tensor) -> torch.Tensor:
        """Soft vectors on the scale of real token embeddings (direction learned, norm fixed): the LM reads
        them like words from the first step instead of having to learn the scale on a small CPU budget."""
        return torch.nn.functional.normalize(vecs, dim=-1) * self.emb_norm

    def collab_key_masks(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{kind: (B, T) bool}``: where each kind of collaborative soft token sits in the prompts."""
        out = {}
        for token, kind in self.TOKEN_KINDS.items():
            hits = input_ids == self.token_ids[token]
            if bool(hits.any()):
                out[kind] = hits
        return out

    def install_attention_control(self):
        """Route the LM's attention through :mod:`semcollab.methods.lm_ctr.steering` (steering bias, recording)."""
        from .steering import install_attention_control

        if self.attn_control is None:
            self.attn_control = install_attention_control(self.lm)
        return self.attn_control

    def logits(self, batch: dict, enc: dict | None = None) -> torch.Tensor:
        from ...lm import embed_with_soft_tokens, yes_no_logits

        enc = self.encode(batch) if enc is None else enc
        if self.attn_control is not None:
            self.attn_control.set_keys(None if self.text_only else self.collab_key_masks(enc["input_ids"]))
        soft = {} if self.text_only else self.soft_vectors(batch)
        embeds = embed_with_soft_tokens(self.lm, enc["input_ids"], soft) if soft else None
        ll = yes_no_logits(self.lm, None if soft else enc["input_ids"], enc["attention_mask"], self.yes_id,
                           self.no_id, inputs_embeds=embeds)
        return ll[:, 0] - ll[:, 1]  # log P(yes)/P(no): sigmoid of it is the two-way softmax

    @torch.no_grad()
    def predict(self, part: CTRPart, device=None) -> np.ndarray:
        """P(yes) per row, scored in length-sorted batches (little padding), returned in row order, on the
        device the model lives on (``device`` is accepted for the common ``predict`` signature).

        Inside :func:`~semcollab.runs.shards.inference_shards` under torchrun each rank scores whole batches
        (balanced by padded tokens) and the shards are merged: the same scores, bit for bit."""
        self.eval()
        device = next(self.parameters()).device
        from ...lm import longest_first_batches
        from ...runs.shards import active_site, compute_sharded

        lengths = self.prompt_lengths(part)
        batches = longest_first_batches(lengths, self.cfg.score_batch_size)

        def score(own: list[np.ndarray]) -> np.ndarray:
            out = [torch.sigmoid(self.logits(part.batch(idx, device))).float().cpu().numpy() for idx in own]
            return np.concatenate(out).astype(np.float64) if out else np.zeros(0, dtype=np.float64)

        site = active_site()
        costs = [len(b) * max((lengths[i] for i in b), default=0) for b in batches]
        return compute_sharded(site and site.child("lm_ctr.predict", type(self).__name__, len(part)), len(part),
                               batches, score, costs, what="CTR scores")

    # ------------------------------------------------------------------ training
    def lm_train_config(self, lr: float, epochs: int, train_cfg):
        from ...train.lm_steps import LMTrainConfig

        return LMTrainConfig(epochs=epochs, batch_size=self.cfg.batch_size, grad_accum=self.cfg.grad_accum, lr=lr,
                             seed=self.cfg.seed, max_minutes=self.cfg.max_minutes,
                             checkpoint_every=self.cfg.checkpoint_every, device=train_cfg.device,
                             progress=train_cfg.progress)

    def run_stage(self, stage: str, key: dict, trainable, split: CTRSplit, lr: float, epochs: int, train_cfg, log,
                  max_rows: int | None = None, lr_scale: dict | None = None):
        """Train ``trainable`` on the training rows (a fixed random ``max_rows`` of them, if given) with the
        model's loss; resumable under a cache folder named by ``key`` (settings + data). Raises
        :class:`TrainingIncomplete` at the time cap."""
        from ...hub.wheels import default_cache_dir
        from ...train.lm_steps import train_lm

        part = split.parts["train"]
        if max_rows is not None and max_rows < len(part):
            keep = np.sort(np.random.default_rng(self.cfg.seed).permutation(len(part))[:max_rows])
            part = part.take(keep)
            key = {**key, "rows": max_rows}
        key = {**key, **self.dtype_key()}
        ckpt = Path(default_cache_dir()) / "lm-ctr" / f"{stage}-{_hash(key)}"
        lcfg = self.lm_train_config(lr, epochs, train_cfg)
        if log:
            scaled = "".join(f", {k} at lr {lr * v:g}" for k, v in (lr_scale or {}).items())
            log(f"{stage}: {len(part)} rows, {epochs} epoch(s), lr {lr}{scaled}, checkpoints in {ckpt}")
        res = train_lm(lambda b: self.loss(b), trainable, list(range(len(part))), self.prompt_lengths(part),
                       lambda rows: part.batch(np.asarray(rows)), lcfg, checkpoint_dir=ckpt, model=self.lm, log=log,
                       lr_scale=lr_scale)
        if not res.finished:
            raise TrainingIncomplete(f"{stage} stopped at step {res.steps}/{res.total_steps} "
                                     f"({res.stopped_by}); run the same command again to continue from {ckpt}")
        return res, ckpt

    def step1_key(self, split: CTRSplit) -> dict:
        c = self.cfg
        return {"lm": c.lm, "lora": asdict(self.lora_cfg), "lr": c.lm_lr, "epochs": c.lm_epochs,
                "batch": c.batch_size, "accum": c.grad_accum, "max_length": c.max_length, "title_chars": c.title_chars,
                "seed": c.seed, "history_len": split.history_len, "data": split.name,
                "train": part_fingerprint(split.parts["train"]),
                "titles": hashlib.sha256("\x00".join(self.titles).encode()).hexdigest()[:16], "prompt": "tallrec-v2",
                **self.dtype_key()}

    def dtype_key(self) -> dict:
        """The LM dtype for cache and resume keys; nothing for float32, so caches made before the policy (all
        float32) keep their keys and load."""
        return {} if self.dtype_info["dtype"] == "float32" else {"dtype": self.dtype_info["dtype"]}

    def fit_step1(self, split: CTRSplit, train_cfg, log):
        """TALLRec: LoRA on "MovieList: ... TargetMovie: ..." -> Yes/No (no soft tokens in the prompt)."""
        self.text_only = True
        try:
            res, _ = self.run_stage("step1-lora", self.step1_key(split), {"lora": self.lm}, split,
                                    self.cfg.lm_lr, self.cfg.lm_epochs, train_cfg, log)
        finally:
            self.text_only = False
        return res

    def fit_ctr(self, split: CTRSplit, train_cfg, device, log=print) -> LMFitResult:
        """TALLRec's schedule, the default: step 1 alone (LoRA on the text prompt)."""
        out = LMFitResult(dtype=self.dtype_info)
        out.add("step1-lora", self.fit_step1(split, train_cfg, log))
        return out

    def freeze_lm(self) -> None:
        """Freeze the LM and its adapter; eval mode keeps LoRA dropout off in later steps (train_lm puts the
        modules it trains, not the LM, into train mode)."""
        for p in self.lm.parameters():
            p.requires_grad_(False)
        self.lm.eval()

    # ------------------------------------------------------------------ saving only what was trained
    def trainable_state_dict(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("lm.") or "lora_" in k}

    def load_trainable_state_dict(self, state: dict) -> None:
        missing = [k for k in self.trainable_state_dict() if k not in state]
        unexpected = [k for k in state if k not in self.state_dict()]
        if missing or unexpected:
            raise RuntimeError(f"saved state does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        self.load_state_dict(state, strict=False)
