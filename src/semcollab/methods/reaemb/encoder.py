"""ReaEmb, the LM side: a causal LM that "thinks" one latent token before it embeds an item.

Method facts: ``/work/shared/methods/reaemb.md`` (paper: Liu, Huang et al., "Harmonizing Semantic and
Collaborative in LLMs: Reasoning-based Embedding Generator for Sequential Recommendation").

The item text is followed by ``<|Thought|>`` and then EOS, as in the authors' tokenisation (their
``tokenize_chat_text_generation`` appends both). Pass 1 runs the LM; a single-head attention
(:class:`ThoughtAttention`) reads the last-layer states before the thought token and writes a "latent
thought" vector that replaces the thought token's input embedding; pass 2 runs the LM again and the item
embedding is the mean of its last-layer states over the real tokens (thought and EOS included).

* Stage 1 (LRCL, :func:`train_stage1`): two attribute-dropout views per item, a symmetric in-batch
  InfoNCE with a learnable temperature and soft targets (:func:`lrcl_loss`); LoRA + the thought module
  (+ the temperature) are trained.
* Stage 2 (CRRL, :func:`train_stage2`): LoRA merged (over float32 weights; else kept unmerged) and frozen;
  only the thought module is trained, by a GRPO-like policy gradient where the policy is a Gaussian around
  the thought vector and the reward is the rank of the item's top co-occurring item among 10 candidates
  (:func:`rank_reward`).
* Inference (:func:`generate_table`): because attention is causal and everything before the thought is
  identical in both passes, pass 2 only has to compute the thought and EOS positions on top of pass 1's
  key/value cache (``mode="kv_reuse"``), which equals the full second pass.

Inputs are left-padded (as :func:`semcollab.lm.load_causal_lm` sets up); positions are counted over real
tokens (:func:`position_ids_from_mask`), so padding never shifts them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...config import at_least, fraction, one_of, positive, resolve_device, validate
from ...lm.body import body_hidden, lm_body, position_ids_from_mask, unwrap_peft
from ...lm.lora import LoRAConfig, add_lora
from ...lm.prompts import add_special_tokens, token_positions
from ...lm.soft_tokens import embed_with_soft_tokens
from ...train.lm_steps import LMTrainConfig, LMTrainResult, longest_first_batches, train_lm

THOUGHT_TOKEN = "<|Thought|>"
MODES = ("plain", "two_pass", "kv_reuse")
# the authors' user prefix (they also wrap it in the Qwen chat template with a system prompt; see
# ReaEmbConfig.chat_template)
DEFAULT_PROMPT = "Please provide the item description. The item information is:\n{text}"


def add_thought_token(tokenizer, model) -> int:
    """Add ``<|Thought|>`` as one special token (embedding row = mean row, see ``add_special_tokens``);
    idempotent. Its input row is never used by the two-pass modes (the thought vector replaces it)."""
    return add_special_tokens(tokenizer, model, (THOUGHT_TOKEN,))[THOUGHT_TOKEN]


# ---------------------------------------------------------------------------------------------- config
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


@dataclass
class LRCLSettings:
    """The stage-1 objective's own settings (shared by :class:`Stage1Config` and the pipeline's stage-1 section)."""

    view_drop: float = fraction(0.4)
    soft_targets: bool = True
    detach_targets: bool = False
    normalize: bool = False


@dataclass
class Stage1Config(LRCLSettings):
    """LRCL. Paper: LoRA r=8, alpha=32, dropout .1 on all projections; lr 2e-4; 2,000 steps; 64 pairs per
    GPU on 4 GPUs; views drop 40% of the attributes. ``soft_targets``: the authors' targets
    ``softmax((A A^T + B B^T) / (2 tau))`` instead of the identity; ``detach_targets=False`` lets the
    gradient flow through them as in their code. ``normalize``: cosine instead of the authors' raw dot
    products. The temperature is clamped to ``[temp_min, temp_max]`` (authors: tau >= 1e-3)."""

    train: LMTrainConfig = field(default_factory=lambda: LMTrainConfig(lr=2e-4, batch_size=64, epochs=100,
                                                                      max_steps=2000))
    lora: LoRAConfig = field(default_factory=lambda: LoRAConfig(rank=8, alpha=32.0, dropout=0.1))
    temp_min: float = positive(1e-3)
    temp_max: float = positive(100.0)

    def _check(self):
        if self.temp_min >= self.temp_max:
            yield "temp_min", f"must be < temp_max, got {self.temp_min} >= {self.temp_max}"

    def validate(self) -> Stage1Config:
        validate(self)
        self.train.validate()
        self.lora.validate()
        return self


@dataclass
class CRRLSettings:
    """The stage-2 objective's own settings (shared by :class:`Stage2Config` and the pipeline's stage-2 section)."""

    rollouts: int = at_least(8, 2)
    noise_sigma: float = positive(0.1)
    noise_units: str = one_of("relative", "relative", "absolute")
    eps_low: float = fraction(0.2)
    eps_high: float = at_least(0.28, 0, integer=False)
    advantage_l2_norm: bool = True


@dataclass
class Stage2Config(CRRLSettings):
    """CRRL. Paper/authors: 8 rollouts per item, the first noise-free, Gaussian noise sigma .1 on the
    thought vector, PPO clip .2/.28, no KL term, lr 1e-4, one epoch over the items.

    ``noise_units``: ``"relative"`` (default) scales sigma by each thought vector's RMS, ``"absolute"``
    uses sigma as is. Our thought vector starts on the scale of token embeddings, far smaller than the
    authors' (their module outputs on the scale of last-layer states), so an absolute .1 would drown it.
    ``advantage_l2_norm``: divide the advantages by their L2 norm over the batch, as the authors' trainer
    does. ``candidate_mode``: how the candidates' embeddings are computed (no gradient either way)."""

    train: LMTrainConfig = field(default_factory=lambda: LMTrainConfig(lr=1e-4, batch_size=4, epochs=1))
    candidate_mode: str = one_of("kv_reuse", "kv_reuse", "two_pass")

    def validate(self) -> Stage2Config:
        validate(self)
        self.train.validate()
        return self


# ----------------------------------------------------------------------------------- thought attention
def rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 1000.0) -> torch.Tensor:
    """Rotary position embedding of ``x`` ``(..., d)`` at integer ``positions`` ``(...)``: dimension ``i``
    and ``i + d/2`` form a pair rotated by ``position * base^(-2i/d)``, so ``<rotary(q, p), rotary(k, s)>``
    depends on ``p - s`` only (the "rotate half" layout of Llama/Qwen)."""
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"rotary needs an even size, got {d}")
    inv_freq = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq  # (..., d/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).to(x.dtype)


def embedding_rms(model: nn.Module, n_rows: int = 4096) -> torch.Tensor:
    """Per-dimension RMS ``(d,)`` of the LM's input embeddings over up to ``n_rows`` evenly spaced token
    ids, read through the embedding module (so models that scale embeddings inside it are covered)."""
    emb = model.get_input_embeddings()
    v = emb.weight.shape[0]
    ids = torch.linspace(0, v - 1, steps=min(v, n_rows), device=emb.weight.device).round().long().unique()
    with torch.no_grad():
        rows = emb(ids).float()
    return rows.pow(2).mean(0).sqrt()


class ThoughtAttention(nn.Module):
    """Single-head attention that turns pass-1 states into the latent thought vector ``(B, d)``.

    Query: the last-layer state just before ``<|Thought|>``; keys/values: the states of every earlier
    real position (the query's own included, as in the authors' mask ``[0, t)``); rotary positions on Q
    and K; scale ``1/sqrt(d)``. Q/K/V/O are ``d x d`` with biases.

    Output scale: the attention output is RMS-normalised and multiplied by a learnable per-dimension
    ``gain`` initialised to the per-dimension RMS of the LM's token embeddings, so the thought vector starts
    exactly on the scale of a real input embedding whatever the scale of the last-layer states (Qwen's
    final states are orders of magnitude larger than its embeddings and have a few huge dimensions).
    The authors' module has no O map and no rescaling; its output starts on the scale of the states."""

    def __init__(self, hidden_size: int, embed_scale: torch.Tensor | float = 1.0, rope_base: float = 1000.0,
                 eps: float = 1e-6):
        super().__init__()
        if hidden_size % 2:
            raise ValueError(f"ThoughtAttention needs an even hidden size (rotary pairs), got {hidden_size}")
        self.hidden_size, self.rope_base, self.eps = hidden_size, float(rope_base), eps
        self.q, self.k, self.v, self.o = (nn.Linear(hidden_size, hidden_size) for _ in range(4))
        gain = torch.as_tensor(embed_scale, dtype=torch.float32).detach().clone().cpu()
        self.gain = nn.Parameter(gain.expand(hidden_size).clone())

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, thought_pos: torch.Tensor) -> torch.Tensor:
        """``hidden`` ``(B, T, d)`` pass-1 last-layer states, ``attention_mask`` ``(B, T)``, ``thought_pos``
        ``(B,)`` the column of ``<|Thought|>`` (it may be ``T`` when ``hidden`` holds only the prefix)."""
        b, t, _ = hidden.shape
        rows = torch.arange(b, device=hidden.device)
        q_idx = thought_pos.long() - 1
        real = attention_mask.bool()
        if (q_idx < 0).any() or not real[rows, q_idx.clamp(min=0)].all():
            raise ValueError("every row needs a real token before <|Thought|> (an empty item text?)")
        positions = position_ids_from_mask(attention_mask)
        keys_ok = real & (torch.arange(t, device=hidden.device) < thought_pos.unsqueeze(1))
        # padded states are zeroed, so a NaN or inf an attention kernel leaves there cannot reach the output
        h = hidden.to(self.q.weight.dtype).masked_fill(~real.unsqueeze(-1), 0.0)
        q = rotary(self.q(h[rows, q_idx]), positions[rows, q_idx], self.rope_base)  # (B, d)
        k = rotary(self.k(h), positions, self.rope_base)  # (B, T, d)
        scores = torch.einsum("bd,btd->bt", q, k).float() / math.sqrt(self.hidden_size)
        weights = scores.masked_fill(~keys_ok, float("-inf")).softmax(-1)
        out = self.o(torch.einsum("bt,btd->bd", weights.to(h.dtype), self.v(h))).float()
        out = out * torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + self.eps)
        return out * self.gain


# --------------------------------------------------------------------------------------------- encoder
def _body_forward(model: nn.Module, attention_mask, position_ids, input_ids=None, inputs_embeds=None,
                  past_key_values=None, use_cache: bool = False):
    """``(last-layer states, cache)`` with explicit positions (and an optional cache to continue from)."""
    kw = dict(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
              position_ids=position_ids, past_key_values=past_key_values, use_cache=use_cache)
    body = lm_body(model)
    if body is not None:
        out = body(**kw)
        return out.last_hidden_state, out.past_key_values
    out = unwrap_peft(model)(**kw, output_hidden_states=True, logits_to_keep=1)
    return out.hidden_states[-1], out.past_key_values


def _masked_sum(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over real positions in float32; ``where`` rather than a product so padded garbage never leaks."""
    return torch.where(mask.bool().unsqueeze(-1), hidden.float(), 0.0).sum(1)


class ReaEmbEncoder(nn.Module):
    """An LM (plain or PEFT-wrapped, as ``self.lm``) + :class:`ThoughtAttention` (``self.thought``) + the
    contrastive log-temperature (``self.log_temp``). Adds ``<|Thought|>`` to the tokenizer/model if absent
    (do that before wrapping with LoRA: PEFT does not save the resized embedding; the added row is the
    deterministic mean row, so a reloaded base model gets it back)."""

    def __init__(self, model: nn.Module, tokenizer, cfg: ReaEmbConfig | None = None):
        super().__init__()
        self.cfg = (cfg or ReaEmbConfig()).validate()
        self.tokenizer = tokenizer
        self.thought_id = add_thought_token(tokenizer, model)  # no-op when tokenizer and model have it
        self.lm = model
        d = model.get_input_embeddings().weight.shape[1]
        device = model.get_input_embeddings().weight.device
        self.thought = ThoughtAttention(d, embedding_rms(model), self.cfg.rope_base).to(device)
        self.log_temp = nn.Parameter(torch.tensor(math.log(self.cfg.init_temp), device=device))

    @property
    def hidden_size(self) -> int:
        return self.thought.hidden_size

    @property
    def device(self) -> torch.device:
        return self.lm.get_input_embeddings().weight.device

    # ------------------------------------------------------------------------------------ tokenization
    def _tail(self) -> list[int]:
        eos = self.tokenizer.eos_token_id if self.cfg.append_eos else None
        return [self.thought_id] + ([eos] if eos is not None else [])

    def _prompts(self, texts: Sequence[str]) -> tuple[list[str], bool]:
        prompts = [self.cfg.prompt.replace("{text}", str(t)) for t in texts]
        if not self.cfg.chat_template:
            return prompts, True
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("ReaEmbConfig.chat_template=True but the tokenizer has no chat template")
        return [self.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                   add_generation_prompt=False) for p in prompts], False

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Unpadded ids per text: the prompt cut to leave room for ``<|Thought|>`` [+ EOS], then those."""
        tail = self._tail()
        prompts, special = self._prompts(texts)
        ids = self.tokenizer(prompts, add_special_tokens=special, truncation=True,
                             max_length=self.cfg.max_length - len(tail))["input_ids"]
        return [list(r) + tail for r in ids]

    def tokenize(self, texts: Sequence[str], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Left-padded ``input_ids`` / ``attention_mask``: every row ends with ``<|Thought|>`` [+ EOS]."""
        rows = self.token_ids(texts)
        t = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        ids = torch.tensor([[pad] * (t - len(r)) + r for r in rows], dtype=torch.long)
        mask = torch.tensor([[0] * (t - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
        device = self.device if device is None else device
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}

    # ----------------------------------------------------------------------------------------- passes
    def thought_vector(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pass 1 (no gradient into the LM) and the thought vector ``(B, d)`` (gradient into the module)."""
        pos = token_positions(input_ids, self.thought_id, THOUGHT_TOKEN)
        with torch.no_grad():
            hidden = body_hidden(self.lm, input_ids, attention_mask)
        return self.thought(hidden, attention_mask, pos)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mode: str = "two_pass",
              thought: torch.Tensor | None = None) -> torch.Tensor:
        """Item embeddings ``(B, d)`` float32, the mean of last-layer states over real tokens.

        * ``"plain"``: one pass with the thought token masked out (as if it were not there): the
          LLMEmb-style baseline.
        * ``"two_pass"``: pass 1 without gradient -> thought vector -> written over the thought token's
          input embedding -> full pass 2 (gradient into LM/LoRA and the thought module).
        * ``"kv_reuse"``: inference only (no gradient; the LM must be in eval mode so dropout cannot make
          the passes differ): pass 1 over the prefix before the thought with a cache, pass 2 only over
          the thought [+ EOS] on top of it. Needs the left-padded layout of :meth:`tokenize`.

        ``thought``: a given thought vector ``(B, d)`` to use instead of computing one (two_pass/kv_reuse)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "kv_reuse":
            with torch.no_grad():
                prefix = self.prefix_pass(input_ids, attention_mask)
                if thought is None:
                    thought = self.thought(prefix.hidden, prefix.mask, prefix.thought_pos)
                return self.finish(prefix, thought)
        pos = token_positions(input_ids, self.thought_id, THOUGHT_TOKEN)
        rows = torch.arange(len(input_ids), device=input_ids.device)
        if mode == "plain":
            mask = attention_mask.clone()
            mask[rows, pos] = 0
            hidden = body_hidden(self.lm, input_ids, mask)
        else:
            if thought is None:
                thought = self.thought_vector(input_ids, attention_mask)
            embeds = embed_with_soft_tokens(self.lm, input_ids, {self.thought_id: thought})
            mask = attention_mask
            hidden = body_hidden(self.lm, inputs_embeds=embeds, attention_mask=mask)
        return _masked_sum(hidden, mask) / mask.sum(1, keepdim=True).float()

    @torch.no_grad()
    def prefix_pass(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> _Prefix:
        """Pass 1 over the columns before the thought token, keeping the key/value cache."""
        pos = token_positions(input_ids, self.thought_id, THOUGHT_TOKEN)
        t = input_ids.shape[1]
        p = int(pos[0])
        if (pos != p).any() or not attention_mask[:, p:].bool().all():
            raise ValueError("kv_reuse needs left-padded rows that all end with <|Thought|> [+ EOS] in the same "
                             "columns (ReaEmbEncoder.tokenize); use mode='two_pass' otherwise")
        if p == 0:
            raise ValueError("every row needs a real token before <|Thought|>")
        positions = position_ids_from_mask(attention_mask)
        hidden, cache = _body_forward(self.lm, attention_mask[:, :p], positions[:, :p], input_ids=input_ids[:, :p],
                                      use_cache=True)
        return _Prefix(hidden, cache, attention_mask, positions, input_ids[:, p:], pos, p, t)

    @torch.no_grad()
    def finish(self, prefix: _Prefix, thought: torch.Tensor) -> torch.Tensor:
        """Pass 2 over the thought [+ EOS] columns on top of ``prefix``'s cache -> item embeddings ``(B, d)``;
        the cache is cropped back afterwards, so one prefix serves many thought vectors (rollouts)."""
        tail = self.lm.get_input_embeddings()(prefix.tail_ids).clone()
        tail[:, 0] = thought.to(tail.dtype)
        new, _ = _body_forward(self.lm, prefix.full_mask, prefix.positions[:, prefix.p:], inputs_embeds=tail,
                               past_key_values=prefix.cache, use_cache=True)
        prefix.cache.crop(-(prefix.t - prefix.p))  # negative: drop that many tokens (transformers 4 and 5)
        total = _masked_sum(prefix.hidden, prefix.mask) + new.float().sum(1)
        return total / prefix.full_mask.sum(1, keepdim=True).float()

    def embed_texts(self, texts: Sequence[str], mode: str = "two_pass") -> torch.Tensor:
        enc = self.tokenize(texts)
        return self.embed(enc["input_ids"], enc["attention_mask"], mode)


@dataclass
class _Prefix:
    """Pass-1 result over the prefix: states, cache, masks/positions of the whole row, the tail ids."""

    hidden: torch.Tensor  # (B, p, d)
    cache: object
    full_mask: torch.Tensor  # (B, T)
    positions: torch.Tensor  # (B, T)
    tail_ids: torch.Tensor  # (B, T - p): <|Thought|> [+ EOS]
    thought_pos: torch.Tensor  # (B,) all == p
    p: int
    t: int

    @property
    def mask(self) -> torch.Tensor:
        return self.full_mask[:, :self.p]


# ------------------------------------------------------------------------------------------ stage-1 loss
def lrcl_loss(emb_a: torch.Tensor, emb_b: torch.Tensor, log_temp: torch.Tensor, soft_targets: bool = True,
              detach_targets: bool = False, normalize: bool = False, temp_min: float = 1e-3,
              temp_max: float = 100.0) -> torch.Tensor:
    """Symmetric in-batch InfoNCE between two views ``(B, d)``: row ``i`` of ``emb_a`` should pick row ``i``
    of ``emb_b`` and vice versa; logits ``A B^T / tau`` with ``tau = exp(log_temp)`` clamped.

    Targets: hard (the identity) or, as in the authors' ``Contrastive_Loss`` (the "simple CLIP" recipe),
    soft: ``softmax((A A^T + B B^T) / (2 tau))`` row-wise, so two different items whose views look alike
    are not pushed apart as hard as unrelated ones. The loss is the mean of the row-wise cross-entropies
    of ``logits`` and ``logits^T`` against the targets (symmetric). The authors use raw dot products of
    the mean-pooled states and let the gradient flow through the targets (``detach_targets=False``)."""
    if emb_a.shape != emb_b.shape or emb_a.dim() != 2:
        raise ValueError(f"views must both be (B, d), got {tuple(emb_a.shape)} and {tuple(emb_b.shape)}")
    with torch.autocast(emb_a.device.type, enabled=False):  # bf16 autocast (CUDA) would round the logits
        a, b = emb_a.float(), emb_b.float()
        if normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        temp = log_temp.float().exp().clamp(temp_min, temp_max)
        logits = a @ b.T / temp
        if soft_targets:
            targets = ((a @ a.T + b @ b.T) / (2 * temp)).softmax(-1)
            if detach_targets:
                targets = targets.detach()
        else:
            targets = torch.eye(len(a), device=a.device)
        loss_a = -(targets * logits.log_softmax(-1)).sum(-1)
        loss_b = -(targets.T * logits.T.log_softmax(-1)).sum(-1)
        return ((loss_a + loss_b) / 2).mean()


# ------------------------------------------------------------------------------------------ stage-2 math
def rank_reward(anchor: torch.Tensor, candidates: torch.Tensor, positive_index: int | torch.Tensor = 0) -> torch.Tensor:
    """``1 / (1 + log2(rank + 2))`` per row, ``rank`` = 0-based rank of the positive among the candidates
    by dot product with the anchor (the authors' ``pos_rank`` is an ``argsort`` index, so 0-based: rank 0
    earns 0.5, rank 9 of 10 about .23). Ties count against the positive (every other candidate scoring
    at least as high ranks above it), so a collapsed embedding cannot earn the top reward.

    ``anchor`` ``(B, d)``, ``candidates`` ``(B, K, d)``, ``positive_index`` an int or ``(B,)``."""
    with torch.autocast(anchor.device.type, enabled=False):  # bf16 would tie near-equal LM embeddings
        scores = torch.einsum("bd,bkd->bk", anchor.float(), candidates.float())
    b, k = scores.shape
    pos = torch.as_tensor(positive_index, device=scores.device).long().expand(b)
    pos_score = scores.gather(1, pos.unsqueeze(1))
    others = torch.ones_like(scores, dtype=torch.bool).scatter(1, pos.unsqueeze(1), False)
    rank = ((scores >= pos_score) & others).sum(1).float()
    return 1.0 / (1.0 + torch.log2(rank + 2.0))


def group_advantage(rewards: torch.Tensor, baseline_rewards: torch.Tensor, l2_normalize: bool = False) -> torch.Tensor:
    """``rewards - mean(baseline_rewards)``: every rollout's reward minus the batch mean of the noise-free
    rollouts' rewards (the authors' trainer). ``l2_normalize``: then divide by the L2 norm of all the
    advantages (+1e-6), as their trainer also does."""
    adv = rewards.float() - baseline_rewards.float().mean()
    if l2_normalize:
        adv = adv / (adv.norm() + 1e-6)
    return adv


def clipped_policy_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, advantage: torch.Tensor,
                        eps_low: float = 0.2, eps_high: float = 0.28) -> torch.Tensor:
    """PPO's clipped surrogate with an asymmetric clip (DAPO's "clip-higher"), negated and averaged:
    ``-mean(min(r A, clip(r, 1 - eps_low, 1 + eps_high) A))``, ``r = exp(logp_new - logp_old)``."""
    ratio = torch.exp(logp_new - logp_old)
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high)
    return -torch.minimum(ratio * advantage, clipped * advantage).mean()


def rollout_sigma(mu: torch.Tensor, sigma: float, units: str = "relative") -> torch.Tensor:
    """The rollouts' noise scale per row ``(B, 1)``: ``sigma``, times each thought vector's RMS when
    ``units`` is ``"relative"`` (see :class:`Stage2Config`); no gradient flows through it."""
    scale = torch.full((len(mu), 1), float(sigma), device=mu.device)
    if units == "relative":
        scale = scale * mu.detach().pow(2).mean(-1, keepdim=True).sqrt()
    return scale


def gaussian_log_prob(sample: torch.Tensor, mean: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Log-density of an isotropic Gaussian rollout ``sample ~ N(mean, sigma^2 I)``, summed over the last
    dimension. The policy is the thought module's output perturbed by noise, so this is the log-prob a
    policy-gradient step needs (gradient through ``mean``). The authors' trainer instead reuses TRL's
    per-token log-probs of the LM's own input tokens under the noisy thought as a surrogate."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=mean.device)  # broadcastable to ``sample``
    z = (sample.float() - mean.float()) / sigma
    log_sigma = torch.broadcast_to(torch.log(sigma), z.shape).sum(-1)
    return -0.5 * z.pow(2).sum(-1) - log_sigma - 0.5 * z.shape[-1] * math.log(2 * math.pi)


@dataclass
class Candidates:
    """Stage-2 candidate lists (item indices 1..n_items): ``candidates[r, 0]`` is the top co-occurring
    item of ``anchors[r]``, the rest random items that never co-occur with it."""

    anchors: np.ndarray  # (m,)
    candidates: np.ndarray  # (m, 1 + n_random)
    no_cooccurrence: int  # items skipped: they share no user sequence with any other item
    fallback_negatives: int  # anchors whose negatives had to include co-occurring items (tiny catalogues)


def co_occurrence_candidates(sequences: Sequence[Sequence[int]], n_items: int, n_random: int = 9,
                             rng: np.random.Generator | int | None = 0) -> Candidates:
    """Per item: its top co-occurring item + ``n_random`` random non-co-occurring items.

    Two items co-occur when they are in the same user's sequence; the count is the number of users that
    have both (the authors count position pairs in the whole interaction file; pass training sequences
    only, e.g. ``split.train_sequences()``, so no held-out event leaks). Ties go to the smaller index.
    Items with no co-occurring item are skipped and counted; when fewer than ``n_random`` items never
    co-occur with an anchor, the negatives are filled with other items (but never the anchor or its
    positive), as the authors do, and counted."""
    from scipy import sparse

    if n_random < 1 or n_items < n_random + 2:
        raise ValueError(f"need n_random >= 1 and n_items >= n_random + 2, got {n_random}, {n_items}")
    rng = np.random.default_rng(rng)
    rows, cols = [], []
    for u, seq in enumerate(sequences):
        items = np.unique(np.asarray(seq, dtype=np.int64))
        items = items[items > 0]
        if items.size and items.max() > n_items:
            raise ValueError(f"sequence {u} holds item {items.max()} > n_items={n_items}")
        rows.append(np.full(items.size, u))
        cols.append(items)
    rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    cols = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    x = sparse.csr_matrix((np.ones(rows.size, dtype=np.int64), (rows, cols)), shape=(len(sequences), n_items + 1))
    co = (x.T @ x).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    anchors, cands, skipped, fallback = [], [], 0, 0
    for i in range(1, n_items + 1):
        nbr = co.indices[co.indptr[i]:co.indptr[i + 1]]
        cnt = co.data[co.indptr[i]:co.indptr[i + 1]]
        if nbr.size == 0:
            skipped += 1
            continue
        best = cnt.max()
        pos = int(nbr[cnt == best].min())
        banned = np.zeros(n_items + 1, dtype=bool)
        banned[0] = banned[i] = True
        banned[nbr] = True
        pool = np.flatnonzero(~banned)
        if pool.size >= n_random:
            neg = rng.choice(pool, n_random, replace=False)
        else:
            fallback += 1
            extra = np.setdiff1d(nbr, [pos])
            neg = np.concatenate([rng.permutation(pool), rng.permutation(extra)])[:n_random]
        anchors.append(i)
        cands.append(np.concatenate([[pos], neg]))
    return Candidates(np.asarray(anchors, dtype=np.int64),
                      np.asarray(cands, dtype=np.int64).reshape(-1, 1 + n_random), skipped, fallback)


# --------------------------------------------------------------------------------------------- training
def _seed_from_torch() -> int:
    """A seed drawn from torch's RNG, which ``train_lm`` seeds and restores on resume, so data drawn with
    it (the attribute views) repeat exactly when a run is resumed."""
    return int(torch.randint(0, 2**31 - 1, (1,)).item())


def train_stage1(encoder: ReaEmbEncoder, texts: Sequence[str], cfg: Stage1Config | None = None,
                 checkpoint_dir: str | os.PathLike | None = None, log: Callable[[str], None] | None = print,
                 should_stop: Callable[[int], bool] | None = None) -> LMTrainResult:
    """LRCL: train LoRA (added here when ``encoder.lm`` has none, seeded by ``cfg.train.seed``), the
    thought module and the temperature on two attribute-dropout views per item (``texts`` in
    ``"attribute is value; ..."`` form, see :mod:`semcollab.text.attribute_text`; empty texts skipped).

    Resumable: the same call with the same ``checkpoint_dir`` continues where a stopped run ended (views
    are drawn from the RNG that ``train_lm`` restores). Returns ``train_lm``'s result; the trained
    parameters are in ``encoder`` (and in the checkpoint)."""
    from ...text.attribute_text import attribute_views

    cfg = (cfg or Stage1Config()).validate()
    say = log or (lambda _m: None)
    if not hasattr(encoder.lm, "peft_config"):
        torch.manual_seed(cfg.train.seed)
        encoder.lm = add_lora(encoder.lm, cfg.lora)
    rows = [i for i, t in enumerate(texts) if str(t).strip()]
    if len(rows) < 2:
        raise ValueError(f"stage 1 needs at least 2 non-empty item texts, got {len(rows)}")
    if len(rows) < len(texts):
        say(f"stage 1: skipping {len(texts) - len(rows)} items with empty text")
    lengths = [len(r) for r in encoder.token_ids([texts[i] for i in rows])]
    encoder.to(resolve_device(cfg.train.device))

    def collate(batch: list[int]) -> dict:
        rng = np.random.default_rng(_seed_from_torch())
        views = [attribute_views(texts[i], cfg.view_drop, rng) for i in batch]
        return encoder.tokenize([v[0] for v in views] + [v[1] for v in views], device="cpu")

    def loss_fn(batch: dict) -> torch.Tensor:
        emb = encoder.embed(batch["input_ids"], batch["attention_mask"], "two_pass")
        a, b = emb.chunk(2)
        return lrcl_loss(a, b, encoder.log_temp, cfg.soft_targets, cfg.detach_targets, cfg.normalize,
                         cfg.temp_min, cfg.temp_max)

    trainable = {"lm": encoder.lm, "thought": encoder.thought, "log_temp": encoder.log_temp}
    return train_lm(loss_fn, trainable, rows, lengths, collate, cfg.train, checkpoint_dir, model=encoder.lm,
                    should_stop=should_stop, log=log)


@dataclass
class Stage2Result:
    train: LMTrainResult
    anchors: int  # anchors trained on
    no_cooccurrence: int  # from the candidates
    rewards: list[float] = field(default_factory=list)  # mean noise-free reward per batch, this call


def freeze_lm(encoder: ReaEmbEncoder) -> None:
    """Merge LoRA into the base weights (when present), freeze the LM and put it in eval mode.

    The merge happens only over float32 weights: added to bfloat16 / float16 weights, a small LoRA update
    is mostly rounded away (after 4 stage-1 steps on SmolLM2 in bfloat16, the merged weights' error was 89%
    of the update's norm), so there the adapter stays, unmerged and frozen (a rank-r matmul per projection)."""
    lm = encoder.lm
    if hasattr(lm, "merge_and_unload") and lm.get_input_embeddings().weight.dtype == torch.float32:
        encoder.lm = lm.merge_and_unload()
    encoder.lm.requires_grad_(False).eval()
    encoder.log_temp.requires_grad_(False)


def train_stage2(encoder: ReaEmbEncoder, texts: Sequence[str], candidates: Candidates,
                 cfg: Stage2Config | None = None, checkpoint_dir: str | os.PathLike | None = None,
                 log: Callable[[str], None] | None = print,
                 should_stop: Callable[[int], bool] | None = None) -> Stage2Result:
    """CRRL: LoRA merged and the LM frozen (:func:`freeze_lm`); only the thought module is trained.

    ``texts[i]`` describes item index ``i + 1`` (``candidates`` hold item indices). Per anchor and step:
    candidates embedded without gradient; pass 1 over the anchor's prefix once; the thought vector ``mu``;
    ``rollouts`` samples ``mu + sigma * eps`` (the first with ``eps = 0``), each finished on pass 1's cache;
    rewards by :func:`rank_reward` (positive at column 0); advantages by :func:`group_advantage` over the
    batch; loss :func:`clipped_policy_loss` of the Gaussian log-probs (:func:`gaussian_log_prob`).

    Each batch is used for one optimizer step, so the old policy is the current one (``logp_old =
    logp.detach()``, ratio 1, the gradient is the plain policy gradient) — the authors reuse each batch
    for two steps (TRL ``num_iterations=2``), which ``train_lm`` cannot express. Resumable like stage 1."""
    cfg = (cfg or Stage2Config()).validate()
    if len(texts) < candidates.candidates.max(initial=0):
        raise ValueError(f"candidates name item {candidates.candidates.max()} but only {len(texts)} texts were given")
    freeze_lm(encoder)
    encoder.to(resolve_device(cfg.train.device))
    rows = list(range(len(candidates.anchors)))
    if not rows:
        raise ValueError("no stage-2 anchors (no item co-occurs with another)")
    anchor_texts = [texts[int(a) - 1] for a in candidates.anchors]
    lengths = [len(r) for r in encoder.token_ids(anchor_texts)]
    k = candidates.candidates.shape[1]
    g = cfg.rollouts
    rewards_log: list[float] = []

    def collate(batch: list[int]) -> dict:
        anchor = encoder.tokenize([anchor_texts[r] for r in batch], device="cpu")
        cand = encoder.tokenize([texts[int(c) - 1] for r in batch for c in candidates.candidates[r]], device="cpu")
        return {"input_ids": anchor["input_ids"], "attention_mask": anchor["attention_mask"],
                "cand_ids": cand["input_ids"], "cand_mask": cand["attention_mask"]}

    def loss_fn(batch: dict) -> torch.Tensor:
        b = len(batch["input_ids"])
        with torch.no_grad():
            cand = encoder.embed(batch["cand_ids"], batch["cand_mask"], cfg.candidate_mode).view(b, k, -1)
            prefix = encoder.prefix_pass(batch["input_ids"], batch["attention_mask"])
        mu = encoder.thought(prefix.hidden, prefix.mask, prefix.thought_pos)  # (B, d), gradient
        sigma = rollout_sigma(mu, cfg.noise_sigma, cfg.noise_units).unsqueeze(-1)  # (B, 1, 1)
        eps = torch.randn(b, g, mu.shape[-1], device=mu.device)
        eps[:, 0] = 0
        sample = mu.detach().unsqueeze(1) + sigma * eps  # (B, G, d)
        with torch.no_grad():
            items = torch.stack([encoder.finish(prefix, sample[:, j]) for j in range(g)], 1)  # (B, G, d)
            rewards = rank_reward(items.reshape(b * g, -1), cand.repeat_interleave(g, 0), 0).view(b, g)
        rewards_log.append(float(rewards[:, 0].mean()))
        adv = group_advantage(rewards, rewards[:, 0], cfg.advantage_l2_norm)
        logp = gaussian_log_prob(sample, mu.unsqueeze(1), sigma)  # (B, G)
        return clipped_policy_loss(logp, logp.detach(), adv, cfg.eps_low, cfg.eps_high)

    res = train_lm(loss_fn, {"thought": encoder.thought}, rows, lengths, collate, cfg.train, checkpoint_dir,
                   should_stop=should_stop, log=log)
    return Stage2Result(res, len(rows), candidates.no_cooccurrence, rewards_log)


# --------------------------------------------------------------------------------------------- inference
@torch.no_grad()
def generate_table(encoder: ReaEmbEncoder, texts: Sequence[str], mode: str = "kv_reuse", batch_size: int = 32,
                   progress: bool = False) -> np.ndarray:
    """``(n, d)`` float32 item embeddings of a whole catalogue, rows in the order of ``texts``. Batches are
    length-sorted (little padding); the LM and thought module are in eval mode meanwhile."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    out = np.zeros((len(texts), encoder.hidden_size), dtype=np.float32)
    if not len(texts):
        return out
    from tqdm.auto import tqdm

    batches = longest_first_batches([len(r) for r in encoder.token_ids(texts)], batch_size)
    was = encoder.training
    encoder.eval()
    try:
        for idx in tqdm(batches, disable=not progress, desc="reaemb"):
            out[idx] = encoder.embed_texts([texts[i] for i in idx], mode).cpu().numpy()
    finally:
        encoder.train(was)
    return out


__all__ = [
    "THOUGHT_TOKEN", "Candidates", "ReaEmbConfig", "ReaEmbEncoder", "Stage1Config", "Stage2Config",
    "Stage2Result", "ThoughtAttention", "add_thought_token", "clipped_policy_loss", "co_occurrence_candidates",
    "embedding_rms", "freeze_lm", "gaussian_log_prob", "generate_table", "group_advantage", "lrcl_loss",
    "rank_reward", "rollout_sigma", "rotary", "train_stage1", "train_stage2",
]
