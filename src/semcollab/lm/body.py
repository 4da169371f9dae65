"""Shared plumbing: reach the transformer body of any HF causal LM (PEFT-wrapped or not) and handle padding.

The body is ``model.base_model`` after unwrapping PEFT: transformers' ``base_model`` property returns the
submodule named by ``base_model_prefix`` (``model`` for Llama/Qwen/Gemma, ``transformer`` for GPT-2), which is
exactly what the causal-LM head class calls in its own forward. Using it means the LM head is never run, and
LoRA layers (injected in place by PEFT) are still applied. ``get_decoder()`` is not used: on multimodal
wrappers it returns the text tower only and would skip the wrapper's own input handling.
"""

from __future__ import annotations

import torch
from torch import nn


def unwrap_peft(model: nn.Module) -> nn.Module:
    """The transformers model under a PEFT wrapper (LoRA layers stay injected), or ``model`` itself."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def lm_body(model: nn.Module) -> nn.Module | None:
    """The transformer body that yields ``last_hidden_state``; ``None`` when the model exposes none."""
    inner = unwrap_peft(model)
    body = getattr(inner, "base_model", None)
    return None if body is None or body is inner else body


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left padding does not shift them (as ``generate`` does)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, for left or right padding alike."""
    t = attention_mask.shape[1]
    return t - 1 - attention_mask.long().flip(1).argmax(1)


def body_hidden(model: nn.Module, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, layer: int = -1) -> torch.Tensor:
    """Hidden states ``(B, T, d)`` of ``layer`` (-1: the final, normed output) without the LM head.

    Falls back to a full forward with ``output_hidden_states`` for models without a separate body."""
    ref = input_ids if input_ids is not None else inputs_embeds
    if ref is None:
        raise ValueError("give input_ids or inputs_embeds")
    if attention_mask is None:
        attention_mask = torch.ones(ref.shape[:2], dtype=torch.long, device=ref.device)
    kw = dict(input_ids=None if inputs_embeds is not None else input_ids, inputs_embeds=inputs_embeds,
              attention_mask=attention_mask, position_ids=position_ids_from_mask(attention_mask), use_cache=False)
    body = lm_body(model)
    if body is not None:
        out = body(**kw, output_hidden_states=layer != -1)
        return out.last_hidden_state if layer == -1 else out.hidden_states[layer]
    out = unwrap_peft(model)(**kw, output_hidden_states=True, logits_to_keep=1)
    return out.hidden_states[layer]
