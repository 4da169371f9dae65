"""What a recording of :class:`~semcollab.methods.lm_ctr.steering.AttentionControl` measured: per layer, the
attention mass of the answer position (and of the text positions) on each kind of collaborative key."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class AttentionRecord:
    """What ``AttentionControl.recording`` measured; the tensors are filled when the ``with`` block ends.

    ``answer`` ``(n_layers, B, H, K)``: attention mass of each row's answer query (its last real token) on
    each kind's keys; ``text`` the same averaged over the ``text_queries`` positions (NaN for a row with none;
    ``None`` when no ``text_queries`` were given); ``total_answer`` ``(n_layers, B, H)``: the answer row's
    total mass (about 1; less for models with attention sinks). Several forwards inside one recording are
    concatenated along the batch dimension. All float32 on the model's device; ``None`` if nothing ran."""

    kinds: list[str]
    answer: torch.Tensor | None = None
    text: torch.Tensor | None = None
    total_answer: torch.Tensor | None = None
    _parts: dict[int, list[tuple]] = field(default_factory=dict, repr=False)
    _kinds_fixed: bool = field(default=False, repr=False)

    def _add(self, layer: int, kinds: list[str], answer, text, total) -> None:
        if not self._kinds_fixed:
            self.kinds, self._kinds_fixed = list(kinds), True
        elif list(kinds) != self.kinds:
            raise RuntimeError(f"collaborative key kinds changed during one recording: {self.kinds} -> {list(kinds)}")
        self._parts.setdefault(layer, []).append((answer, text, total))

    def _finish(self, n_layers: int) -> None:
        if not self._parts:
            return
        counts = {layer: len(self._parts.get(layer, ())) for layer in range(n_layers)}
        if len(set(counts.values())) != 1:
            raise RuntimeError(f"attention layers ran unequally often while recording (layer -> calls: {counts}); "
                               "record one full forward (or several) without a KV cache")
        layers = [self._parts[i] for i in range(n_layers)]

        def stack(j):
            if any(p[j] is None for parts in layers for p in parts):
                return None
            return torch.stack([torch.cat([p[j] for p in parts], 0) for parts in layers])

        self.answer, self.text, self.total_answer = stack(0), stack(1), stack(2)
        self._parts = {}
