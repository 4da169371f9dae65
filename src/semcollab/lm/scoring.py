"""Yes/No scoring: P(yes) from the two answer logits at the answer position, using two head rows only.

The answer position is each row's last real token (the last column under left padding). Only the rows
of the " Yes" and " No" tokens of the LM head are multiplied with the final hidden state, so a 262k-token
vocabulary (Gemma 3) costs nothing; any final logit transform of the head class (Gemma's soft-capping,
Cohere's ``logit_scale``, Granite's ``logits_scaling``) is applied the same way the model applies it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .body import body_hidden, last_token_index, lm_body, position_ids_from_mask, unwrap_peft


def answer_token_ids(tokenizer, yes: str = " Yes", no: str = " No") -> tuple[int, int]:
    """Ids of the first sub-token of the answers (with their leading space); they must differ."""
    ids = []
    for word in (yes, no):
        toks = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not toks:
            raise ValueError(f"answer {word!r} tokenizes to nothing")
        ids.append(int(toks[0]))
    if ids[0] == ids[1] or ids[0] == tokenizer.unk_token_id:
        raise ValueError(f"answers {yes!r} and {no!r} give first tokens {ids} (unk={tokenizer.unk_token_id}); "
                         "they must be distinct known tokens")
    return ids[0], ids[1]


def _logit_transform(config, logits: torch.Tensor) -> torch.Tensor:
    cap = getattr(config, "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    scale = getattr(config, "logit_scale", None)  # Cohere multiplies
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        logits = logits * scale
    scaling = getattr(config, "logits_scaling", None)  # Granite divides
    if isinstance(scaling, (int, float)) and not isinstance(scaling, bool):
        logits = logits / scaling
    return logits


def yes_no_logits(model: nn.Module, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                  yes_id: int, no_id: int, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, 2)`` float32 logits of (yes, no) at each row's last real token, without the full head.

    Give ``input_ids`` or ``inputs_embeds`` (e.g. from ``embed_with_soft_tokens``) and the attention mask."""
    inner = unwrap_peft(model)
    if lm_body(model) is None:  # no separate body: full forward, head on the last position only
        return yes_no_logits_full_head(model, input_ids, attention_mask, yes_id, no_id, inputs_embeds)
    ref = input_ids if inputs_embeds is None else inputs_embeds
    if attention_mask is None:
        attention_mask = torch.ones(ref.shape[:2], dtype=torch.long, device=ref.device)
    hidden = body_hidden(model, input_ids, attention_mask, inputs_embeds)
    h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_token_index(attention_mask)]
    head = inner.get_output_embeddings()  # the embedding matrix itself when weights are tied
    # float32 for the two dot products, autocast or not: bf16 logits would round many scores to ties (bad for AUC)
    with torch.autocast(h.device.type, enabled=False):
        logits = h.float() @ head.weight[[yes_id, no_id]].float().T
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[[yes_id, no_id]].float()
        return _logit_transform(inner.config, logits)


def yes_no_logits_full_head(model: nn.Module, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                            yes_id: int, no_id: int, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Reference: the model's own forward (full vocabulary head), then the two columns."""
    ref = input_ids if inputs_embeds is None else inputs_embeds
    if attention_mask is None:
        attention_mask = torch.ones(ref.shape[:2], dtype=torch.long, device=ref.device)
    out = model(input_ids=None if inputs_embeds is not None else input_ids, inputs_embeds=inputs_embeds,
                attention_mask=attention_mask, position_ids=position_ids_from_mask(attention_mask), use_cache=False)
    last = last_token_index(attention_mask)
    return out.logits[torch.arange(out.logits.shape[0], device=out.logits.device), last][:, [yes_id, no_id]].float()


def yes_probability(logits: torch.Tensor) -> torch.Tensor:
    """P(yes) = softmax over the (yes, no) pair = sigmoid of their difference."""
    return torch.sigmoid(logits[:, 0].float() - logits[:, 1].float())


def yes_no_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the two-way softmax against 0/1 labels (1 = yes)."""
    return F.binary_cross_entropy_with_logits(logits[:, 0].float() - logits[:, 1].float(), labels.float())


@torch.no_grad()
def score_prompts(model: nn.Module, tokenizer, prompts: list[str], yes_id: int, no_id: int, batch_size: int = 16,
                  max_length: int | None = None) -> torch.Tensor:
    """P(yes) for plain-text prompts (no soft tokens), length-sorted batches, original order kept."""
    device = next(model.parameters()).device
    lengths = [len(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    out = torch.empty(len(prompts))
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"  # keep the answer lead when truncating
    try:
        for s in range(0, len(prompts), batch_size):
            idx = order[s:s + batch_size]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                            truncation=max_length is not None, max_length=max_length).to(device)
            out[idx] = yes_probability(yes_no_logits(model, enc["input_ids"], enc["attention_mask"], yes_id, no_id)).cpu()
    finally:
        tokenizer.truncation_side = side
    return out
