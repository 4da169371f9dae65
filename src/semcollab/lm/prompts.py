"""Prompt templates with named slots, and the special tokens that mark soft-token positions."""

from __future__ import annotations

import string
from dataclasses import dataclass

import torch

USER_TOKEN, ITEM_TOKEN, WARM_TOKEN = "<User_ID>", "<Item_ID>", "<Warm_ID>"
SOFT_TOKENS = (USER_TOKEN, ITEM_TOKEN, WARM_TOKEN)


@dataclass(frozen=True)
class PromptTemplate:
    """``template`` has ``{slot}`` fields; ``answer_lead`` follows it, so the next token is the answer
    (" Yes"/" No"), scored at the last position of the rendered prompt."""

    template: str
    answer_lead: str = " Answer:"

    def slots(self) -> list[str]:
        """Slot names in order of appearance (each once)."""
        names = [f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None]
        if any(n == "" or n.isdigit() for n in names):
            raise ValueError(f"prompt template {self.template!r} has a positional field; name every slot")
        return list(dict.fromkeys(names))

    def render(self, **values) -> str:
        missing = [s for s in self.slots() if s not in values]
        if missing:
            raise KeyError(f"prompt slot(s) {missing} not given for template {self.template!r}")
        return self.template.format(**values) + self.answer_lead


def add_special_tokens(tokenizer, model, tokens=SOFT_TOKENS) -> dict[str, int]:
    """Add ``tokens`` as single special tokens; resize the embeddings; return ``{token: id}``.

    New input (and untied output) rows are set to the mean of the existing rows rather than sampled,
    so a reloaded base model gets the same rows and adapters need not store the embedding matrix; the
    input rows are replaced by soft tokens anyway."""
    tokenizer.add_tokens(list(tokens), special_tokens=True)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tokens}
    for t, i in ids.items():
        if tokenizer(t, add_special_tokens=False)["input_ids"] != [i]:
            raise ValueError(f"special token {t!r} does not tokenize to a single id")
    emb = model.get_input_embeddings()
    old = emb.weight.shape[0]
    if len(tokenizer) > old:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            layers = [model.get_input_embeddings()]
            out = model.get_output_embeddings()
            if out is not None and out.weight is not layers[0].weight:
                layers.append(out)
            for layer in layers:
                w = layer.weight
                w[old:] = w[:old].mean(0, keepdim=True)
                if getattr(layer, "bias", None) is not None:
                    layer.bias[old:] = 0
    return ids


def token_positions(input_ids: torch.Tensor, token_id: int, name: str | None = None,
                    count: int | None = None) -> torch.Tensor:
    """Positions of ``token_id`` in each row.

    ``count`` None: every row must hold it exactly once; returns ``(B,)``. ``count`` n >= 1: every row must
    hold it exactly n times; returns ``(B, n)``, each row's positions in increasing order."""
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"count must be None or a positive integer, got {count!r}")
    need = 1 if count is None else count
    hits = input_ids == token_id
    counts = hits.sum(1)
    bad = (counts != need).nonzero().flatten()
    if len(bad):
        r = int(bad[0])
        label = name or f"token id {token_id}"
        times = "once" if need == 1 else f"{need} times"
        raise ValueError(f"row {r} holds {label} {int(counts[r])} times (need exactly {times}); "
                         f"{len(bad)} of {len(counts)} rows are affected")
    if count is None:
        return hits.long().argmax(1)
    # nonzero() walks row-major: row by row, positions increasing
    return hits.nonzero()[:, 1].reshape(input_ids.shape[0], count)
