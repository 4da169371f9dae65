"""Steer and record the attention an HF causal LM pays to collaborative (soft-token) key positions
(SAILRec's steering and the LM-CTR attention diagnostic; the generic LM machinery is in :mod:`semcollab.lm`).

No model is forked: an attention function is registered in transformers' ``AttentionInterface`` under
``STEER_ATTENTION`` (and transformers' eager mask builder under the same name in ``AttentionMaskInterface``;
an implementation name missing there gets no mask at all), and the model is switched to it. For every
attention module the function calls that module's own ``eager_attention_forward`` (the function the
model's file uses for ``"eager"``, so soft-capping, sliding windows, GQA and sinks stay as the model
defines them) with the steering bias added to the additive float mask, and reduces the probabilities
the eager function returns when recording. The state lives in one ``AttentionControl`` per model,
attached to each attention module; the registration is the only global.

Typical use::

    control = install_attention_control(model)            # PEFT-wrapped or not
    control.set_keys({"user": ids == user_id, "item": ids == item_id})   # (B, T) bool, this batch
    control.set_bias(steering_schedule(control.n_layers))  # per-layer logit bias toward those keys
    with control.recording(text_queries=text_mask) as rec:  # optional diagnostic
        logits = yes_no_logits(model, ...)
    rec.answer  # (n_layers, B, H, K) attention mass of the answer position on each kind's keys

Key masks cover the key (KV) length of the forward: score and train with ``use_cache=False`` (as
``semcollab.lm`` does); a mismatch raises.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ...lm.body import unwrap_peft
from .attention_record import AttentionRecord
from .schedule import SCHEDULE_KINDS, steering_schedule  # noqa: F401  (re-exported: set_bias takes one)

STEER_ATTENTION = "semcollab_steer"

_CONTROL_ATTR = "_semcollab_attention_control"
_EAGER_BY_CLASS: dict[type, Callable] = {}


# ---------------------------------------------------------------------------------------------- control
def _in_backward() -> bool:
    """True while autograd runs a backward pass (e.g. a gradient-checkpointing recompute)."""
    fn = getattr(torch._C, "_current_graph_task_id", None)
    return fn is not None and fn() != -1


class AttentionControl:
    """Per-model steering and recording state, attached to each attention module by
    ``install_attention_control``. Keys and bias persist until changed (backward and gradient-checkpointing
    recomputes see the same state as the forward)."""

    def __init__(self, n_layers: int):
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.n_layers = int(n_layers)
        self._keys: dict[str, torch.Tensor] | None = None
        self._bias: list[float] = [0.0] * self.n_layers
        self._cache: dict = {}
        self._record: AttentionRecord | None = None
        self._text_queries: torch.Tensor | None = None
        self._answer_index: torch.Tensor | None = None

    def __repr__(self) -> str:
        return (f"AttentionControl(n_layers={self.n_layers}, kinds={self.kinds}, bias={self._bias}, "
                f"recording={self._record is not None})")

    # -- state
    @property
    def kinds(self) -> list[str]:
        return list(self._keys) if self._keys else []

    @property
    def bias(self) -> list[float]:
        return list(self._bias)

    @property
    def steering(self) -> bool:
        """Whether the next forward is steered (keys set and a nonzero bias somewhere)."""
        return bool(self._keys) and any(b != 0.0 for b in self._bias)

    def set_keys(self, keys: Mapping[str, torch.Tensor] | None) -> None:
        """``{kind: (B, T) bool}``: key positions holding each kind of collaborative token, for the next
        forward(s); ``None`` (or ``{}``) clears them (no steering, K = 0 when recording)."""
        self._cache = {}
        if not keys:
            self._keys = None
            return
        out: dict[str, torch.Tensor] = {}
        shape = None
        for name, mask in keys.items():
            if not isinstance(name, str):
                raise TypeError(f"collaborative key kinds must be named by strings, got {name!r}")
            if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
                raise ValueError(f"key mask {name!r} must be a (B, T) tensor, got "
                                 f"{tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}")
            if mask.dtype != torch.bool:
                if mask.is_floating_point() or mask.is_complex():
                    raise ValueError(f"key mask {name!r} must be bool (or 0/1 integers), got {mask.dtype}")
                mask = mask != 0
            if shape is not None and mask.shape != shape:
                raise ValueError(f"key masks differ in shape: {name!r} is {tuple(mask.shape)}, "
                                 f"the first is {tuple(shape)}")
            shape = mask.shape
            out[name] = mask.detach()
        self._keys = out

    def set_bias(self, bias: Sequence[float] | torch.Tensor | None) -> None:
        """Per-layer additive bias (``n_layers`` values) on the logits from every query to every key of any
        collaborative kind. May hold ``-inf`` (blocks those keys); ``None`` or all zeros: no steering."""
        if bias is None:
            self._bias = [0.0] * self.n_layers
            return
        if isinstance(bias, torch.Tensor):
            if bias.dim() != 1:
                raise ValueError(f"bias must be 1-D (one value per layer), got shape {tuple(bias.shape)}")
            values = [float(v) for v in bias.detach().cpu().double().tolist()]
        else:
            values = [float(v) for v in bias]
        if len(values) != self.n_layers:
            raise ValueError(f"bias has {len(values)} values, the model has {self.n_layers} attention layers")
        bad = [i for i, v in enumerate(values) if math.isnan(v) or v == math.inf]
        if bad:
            raise ValueError(f"bias of layer(s) {bad} is NaN or +inf (softmax would be NaN); -inf is allowed")
        self._bias = [v + 0.0 for v in values]  # -0.0 -> 0.0

    @contextmanager
    def recording(self, text_queries: torch.Tensor | None = None,
                  answer_index: torch.Tensor | None = None) -> Iterator[AttentionRecord]:
        """Reduce each layer's real attention probabilities on the fly into an ``AttentionRecord``.

        ``text_queries`` ``(B, T)`` bool: the query positions averaged into ``rec.text``; or ``(B, K, T)``: one
        set of query positions per kind (in ``kinds`` order; e.g. only the positions that can see that kind's
        tokens under causal attention). ``answer_index``
        ``(B,)``: the answer query of each row; by default each row's last real token, read off the diagonal
        of the 4-D mask the model builds (correct for left and right padding; the last column without a
        mask). The probabilities are those the model's eager function returns (after dropout in train mode).
        Nothing is recorded during backward (gradient-checkpointing recomputes)."""
        if self._record is not None:
            raise RuntimeError("this model is already recording attention (recordings do not nest)")
        if text_queries is not None:
            if not isinstance(text_queries, torch.Tensor) or text_queries.dim() not in (2, 3):
                raise ValueError("text_queries must be a (B, T) bool tensor, or (B, K, T): one mask per kind")
            if text_queries.dim() == 3 and text_queries.shape[1] != len(self.kinds):
                raise ValueError(f"text_queries has {text_queries.shape[1]} per-kind masks, the keys have "
                                 f"{len(self.kinds)} kinds {self.kinds}")
            if text_queries.is_floating_point():
                raise ValueError(f"text_queries must be bool (or 0/1 integers), got {text_queries.dtype}")
            text_queries = text_queries.detach() != 0
        if answer_index is not None:
            if not isinstance(answer_index, torch.Tensor) or answer_index.dim() != 1:
                raise ValueError("answer_index must be a (B,) integer tensor")
            answer_index = answer_index.detach().long()
        rec = AttentionRecord(kinds=self.kinds)
        self._record, self._text_queries, self._answer_index = rec, text_queries, answer_index
        try:
            yield rec
        finally:
            self._record, self._text_queries, self._answer_index = None, None, None
        rec._finish(self.n_layers)

    # -- the attention call
    def _key_tensors(self, layer: int, batch: int, n_keys: int, device: torch.device):
        """(union (B, Tk) bool, kinds (B, K, Tk) bool) on ``device``, cached per device."""
        first = next(iter(self._keys.values()))
        if tuple(first.shape) != (batch, n_keys):
            raise ValueError(f"collaborative key masks have shape {tuple(first.shape)}, but attention layer {layer} "
                             f"attends over batch {batch} x {n_keys} keys: call set_keys for the current batch "
                             "(and run without a KV cache, use_cache=False)")
        hit = self._cache.get(device)
        if hit is None:
            kinds = torch.stack([m.to(device) for m in self._keys.values()], 1)
            hit = self._cache[device] = (kinds.any(1), kinds)
        return hit

    def _attend(self, eager: Callable, module: nn.Module, query, key, value, attention_mask, args, kwargs):
        layer = int(module.layer_idx)
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"attention layer index {layer} outside the control's {self.n_layers} layers")
        bias = self._bias[layer] if self._keys else 0.0
        rec = self._record if (self._record is not None and not _in_backward()) else None
        if bias == 0.0 and rec is None:
            return eager(module, query, key, value, attention_mask, *args, **kwargs)
        batch, n_keys = key.shape[0], key.shape[-2]
        mask = attention_mask
        if mask is not None and mask.shape[-1] != n_keys:
            raise ValueError(f"attention layer {layer}: the mask covers {mask.shape[-1]} keys but there are {n_keys}; "
                             "steering and recording need use_cache=False")
        if bias != 0.0:
            union, _ = self._key_tensors(layer, batch, n_keys, key.device)
            dtype = mask.dtype if mask is not None and mask.is_floating_point() else query.dtype
            # where, not multiply: -inf * 0 would be NaN
            add = torch.where(union, bias, 0.0).to(dtype)[:, None, None, :]
            if mask is None:
                mask = add
            elif mask.dtype == torch.bool:
                mask = torch.where(mask, 0.0, torch.finfo(dtype).min).to(dtype) + add
            else:
                mask = mask + add
        out, probs = eager(module, query, key, value, mask, *args, **kwargs)
        if rec is not None:
            self._reduce(rec, layer, probs, attention_mask, type(module).__name__)
        return out, probs

    def _answer_rows(self, attention_mask, batch: int, n_q: int, n_k: int, device) -> torch.Tensor:
        if self._answer_index is not None:
            if self._answer_index.shape[0] != batch:
                raise ValueError(f"answer_index has {self._answer_index.shape[0]} rows, the batch has {batch}")
            return self._answer_index.to(device)
        if attention_mask is not None and attention_mask.dim() == 4 and n_q == n_k:
            diag = attention_mask[:, 0].diagonal(dim1=-2, dim2=-1)  # (B, T): a real token may attend to itself
            real = diag if diag.dtype == torch.bool else diag > torch.finfo(diag.dtype).min / 2
            real = real.expand(batch, n_q)
            return n_q - 1 - real.flip(-1).long().argmax(-1)
        return torch.full((batch,), n_q - 1, device=device, dtype=torch.long)

    def _reduce(self, rec: AttentionRecord, layer: int, probs, attention_mask, who: str) -> None:
        if probs is None:
            raise RuntimeError(f"the eager attention of {who} returned no probabilities; cannot record")
        p = probs.detach()
        batch, heads, n_q, n_k = p.shape
        if self._keys:
            _, kinds = self._key_tensors(layer, batch, n_k, p.device)
            kinds_f = kinds.float().transpose(1, 2)  # (B, Tk, K)
        else:
            kinds_f = p.new_zeros((batch, n_k, 0), dtype=torch.float32)
        ans = self._answer_rows(attention_mask, batch, n_q, n_k, p.device)
        rows = p[torch.arange(batch, device=p.device), :, ans].float()  # (B, H, Tk)
        total = rows.sum(-1)
        answer = rows @ kinds_f  # (B, H, K)
        text = None
        tq = self._text_queries
        if tq is not None:
            if (tq.shape[0], tq.shape[-1]) != (batch, n_q):
                raise ValueError(f"text_queries has shape {tuple(tq.shape)}, attention layer {layer} has "
                                 f"batch {batch} x {n_q} queries")
            tq = tq.to(p.device)
            per_kind = tq.dim() == 3
            m = tq.float() if per_kind else tq.float()[:, None, :]  # (B, K or 1, Tq)
            n = m.sum(-1)  # (B, K or 1); rows without text queries: 0/0 = NaN
            if p.dtype == torch.float32:
                summed = m[:, None] @ p  # (B, H, K or 1, Tk)
            else:  # sum in float32 one head at a time (no (B, H, T, T) float32 copy)
                summed = torch.stack([m @ p[:, h].float() for h in range(heads)], 1)
            if per_kind:  # kind k's mass averaged over kind k's own queries
                text = (summed * kinds_f.transpose(1, 2)[:, None]).sum(-1) / n[:, None, :]
            else:
                text = (summed[:, :, 0] @ kinds_f) / n[:, None, :]
        rec._add(layer, self.kinds, answer, text, total)


# ---------------------------------------------------------------------------------------------- dispatch
def generic_eager_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                            softcap: float | None = None, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention for modules whose file defines no ``eager_attention_forward`` (the usual HF shape)."""
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # GQA: the same layout as transformers' repeat_kv
        key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    w = (query @ key.transpose(2, 3)) * scaling
    if softcap is not None:
        w = torch.tanh(w / softcap) * softcap
    if attention_mask is not None:
        m = attention_mask[..., : key.shape[-2]]
        w = w.masked_fill(~m, torch.finfo(w.dtype).min) if m.dtype == torch.bool else w + m
    w = nn.functional.softmax(w, dim=-1, dtype=torch.float32).to(query.dtype)
    w = nn.functional.dropout(w, p=dropout, training=module.training)
    return (w @ value).transpose(1, 2).contiguous(), w


def eager_function_for(module: nn.Module) -> Callable:
    """The ``eager_attention_forward`` of the file defining ``type(module)`` (or a base class), which is
    what the module itself runs for ``attn_implementation="eager"``; ``generic_eager_attention`` if none."""
    cls = type(module)
    fn = _EAGER_BY_CLASS.get(cls)
    if fn is None:
        fn = generic_eager_attention
        for c in cls.__mro__:
            cand = getattr(sys.modules.get(c.__module__), "eager_attention_forward", None)
            if callable(cand):
                fn = cand
                break
        _EAGER_BY_CLASS[cls] = fn
    return fn


def steer_attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, *args, **kwargs):
    """The function registered as ``STEER_ATTENTION``: the module's eager attention, steered/recorded by
    its ``AttentionControl`` if it has one, unchanged otherwise."""
    eager = eager_function_for(module)
    control = module.__dict__.get(_CONTROL_ATTR)
    if control is None:
        return eager(module, query, key, value, attention_mask, *args, **kwargs)
    return control._attend(eager, module, query, key, value, attention_mask, args, kwargs)


def register_steer_attention() -> None:
    """Register ``STEER_ATTENTION`` with transformers (idempotent): the attention function, and the eager
    (additive float) mask builder, without which transformers 5 builds no mask for a custom name."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, eager_mask
    except ImportError as exc:  # older transformers: no registries to hook into
        import transformers

        raise ImportError(f"attention steering / recording needs transformers >= 4.53 (AttentionInterface and "
                          f"masking_utils); installed: {transformers.__version__}") from exc

    AttentionInterface.register(STEER_ATTENTION, steer_attention_forward)
    AttentionMaskInterface.register(STEER_ATTENTION, eager_mask)


def _attention_modules(inner: nn.Module) -> list[nn.Module]:
    """Attention modules of the text decoder: classes named ``*Attention*`` with an integer ``layer_idx``
    whose config is the model's (decoder) text config; all such modules if none matches that config."""
    found = [m for m in inner.modules()
             if "Attention" in type(m).__name__ and isinstance(getattr(m, "layer_idx", None), int)]
    cfg = getattr(inner, "config", None)
    get_text = getattr(cfg, "get_text_config", None)
    if callable(get_text):
        text_cfg = get_text(decoder=True)
        own = [m for m in found if getattr(m, "config", None) is text_cfg]
        if own:
            return own
    return found


def install_attention_control(model: nn.Module) -> AttentionControl:
    """Switch ``model`` (a transformers causal LM, PEFT-wrapped or not) to ``STEER_ATTENTION`` and attach one
    ``AttentionControl`` to each attention module of its text decoder; return it. Idempotent: a second call
    returns the same control. With no keys, zero bias and no recording, outputs equal ``"eager"`` exactly."""
    register_steer_attention()
    inner = unwrap_peft(model)
    modules = _attention_modules(inner)
    if not modules:
        raise ValueError(f"{type(inner).__name__} has no attention modules with a layer_idx; "
                         "cannot install attention control")
    n_layers = max(m.layer_idx for m in modules) + 1
    control = inner.__dict__.get(_CONTROL_ATTR)
    if control is None:
        control = AttentionControl(n_layers)
    elif control.n_layers != n_layers:
        raise RuntimeError(f"an attention control for {control.n_layers} layers is installed, the model now has "
                           f"{n_layers}")
    setter = getattr(inner, "set_attn_implementation", None)
    if callable(setter):  # this model and every sub-model / sub-config (e.g. a multimodal text_config)
        setter(STEER_ATTENTION)
    else:
        inner.config._attn_implementation = STEER_ATTENTION  # the setter recurses into sub-configs
    wrong = sorted({type(m).__name__ for m in modules
                    if getattr(getattr(m, "config", None), "_attn_implementation", STEER_ATTENTION) != STEER_ATTENTION})
    if wrong:
        raise RuntimeError(f"could not switch {', '.join(wrong)} to {STEER_ATTENTION!r}: the model does not "
                           "dispatch attention through transformers' AttentionInterface")
    for m in modules:
        m.__dict__[_CONTROL_ATTR] = control  # a plain attribute: not a submodule, not in the state dict
    inner.__dict__[_CONTROL_ATTR] = control
    return control
