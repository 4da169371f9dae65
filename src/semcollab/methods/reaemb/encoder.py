"""ReaEmb, the LM side: a causal LM that "thinks" one latent token before it embeds an item.

Method facts: ``/work/shared/methods/reaemb.md`` (paper: Liu, Huang et al., "Harmonizing Semantic and
Collaborative in LLMs: Reasoning-based Embedding Generator for Sequential Recommendation").

The item text is followed by ``<|Thought|>`` and then EOS, as in the authors' tokenisation (their
``tokenize_chat_text_generation`` appends both). Pass 1 runs the LM; a single-head attention
(:class:`ThoughtAttention`) reads the last-layer states before the thought token and writes a "latent
thought" vector that replaces the thought token's input embedding; pass 2 runs the LM again and the item
embedding is the mean of its last-layer states over the real tokens (thought and EOS included).

* Stage 1 (LRCL, :func:`~.stages.train_stage1`): two attribute-dropout views per item, a symmetric in-batch
  InfoNCE with a learnable temperature and soft targets (:func:`~.objectives.lrcl_loss`); LoRA + the thought module
  (+ the temperature) are trained.
* Stage 2 (CRRL, :func:`~.stages.train_stage2`): LoRA merged (over float32 weights; else kept unmerged) and frozen;
  only the thought module is trained, by a GRPO-like policy gradient where the policy is a Gaussian around
  the thought vector and the reward is the rank of the item's top co-occurring item among 10 candidates
  (:func:`~.objectives.rank_reward`).
* Inference (:func:`generate_table`): because attention is causal and everything before the thought is
  identical in both passes, pass 2 only has to compute the thought and EOS positions on top of pass 1's
  key/value cache (``mode="kv_reuse"``), which equals the full second pass.

Inputs are left-padded (as :func:`semcollab.lm.load_causal_lm` sets up); positions are counted over real
tokens (:func:`position_ids_from_mask`), so padding never shifts them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...lm.batching import longest_first_batches
from ...lm.body import body_hidden, lm_body, position_ids_from_mask, unwrap_peft
from ...lm.hidden import embed_in_batches
from ...lm.prompts import add_special_tokens, token_positions
from ...lm.soft_tokens import embed_with_soft_tokens
from .config import ReaEmbConfig

THOUGHT_TOKEN = "<|Thought|>"
MODES = ("plain", "two_pass", "kv_reuse")


def add_thought_token(tokenizer, model) -> int:
    """Add ``<|Thought|>`` as one special token (embedding row = mean row, see ``add_special_tokens``);
    idempotent. Its input row is never used by the two-pass modes (the thought vector replaces it)."""
    return add_special_tokens(tokenizer, model, (THOUGHT_TOKEN,))[THOUGHT_TOKEN]


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
        """``(B, d)`` embeddings of ``texts`` (one batch); :func:`generate_table` runs a catalogue through it."""
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
    if not len(texts):
        return np.zeros((0, encoder.hidden_size), dtype=np.float32)
    batches = longest_first_batches([len(r) for r in encoder.token_ids(texts)], batch_size)
    was = encoder.training
    encoder.eval()
    try:
        return embed_in_batches(len(texts), encoder.hidden_size, batches,
                                lambda idx: encoder.embed_texts([texts[i] for i in idx], mode), progress, "reaemb")
    finally:
        encoder.train(was)
