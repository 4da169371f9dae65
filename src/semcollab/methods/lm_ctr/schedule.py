"""SAILRec's depth-wise steering schedules: the per-layer attention-logit bias toward the collaborative keys that
:meth:`semcollab.methods.lm_ctr.steering.AttentionControl.set_bias` applies (suppressed in shallow layers, enhanced
growing with depth in the deep ones, or one sign for all)."""

from __future__ import annotations

import math

SCHEDULE_KINDS = ("suppress-neutral-enhance", "neutral", "enhance", "suppress")


def steering_schedule(n_layers: int, kind: str = "suppress-neutral-enhance", magnitude: float = 1.0,
                      shallow: float = 0.3, deep: float = 0.2) -> list[float]:
    """Per-layer additive attention-logit bias toward collaborative keys (for ``AttentionControl.set_bias``).

    ``"suppress-neutral-enhance"``: the first ``round(shallow * n)`` layers get ``-magnitude``, the last
    ``n_deep = round(deep * n)`` layers get ``magnitude * i / n_deep`` for ``i = 1..n_deep`` (growing with
    depth; the deepest layer gets ``+magnitude``), the middle 0. ``"neutral"``: all 0; ``"enhance"``: all
    ``+magnitude``; ``"suppress"``: all ``-magnitude`` (``magnitude=inf`` blocks the keys entirely).
    Python's ``round`` (half to even) is used; should the two rounded parts overlap (only possible when
    ``shallow + deep`` is close to 1 on very few layers), the deep part is shortened."""
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"unknown steering schedule {kind!r}; allowed: {', '.join(SCHEDULE_KINDS)}")
    magnitude = float(magnitude)
    if math.isnan(magnitude) or magnitude < 0:
        raise ValueError(f"magnitude must be >= 0 (the schedule kind sets the sign), got {magnitude!r}")
    for name, frac in (("shallow", shallow), ("deep", deep)):
        if not (isinstance(frac, (int, float)) and not isinstance(frac, bool) and 0.0 <= frac <= 1.0):
            raise ValueError(f"{name} must be a fraction of the layers in [0, 1], got {frac!r}")
    if shallow + deep > 1.0 + 1e-9:
        raise ValueError(f"shallow + deep must be <= 1 (the suppressed and enhanced layers cannot overlap), "
                         f"got {shallow} + {deep} = {shallow + deep}")
    if kind == "neutral":
        return [0.0] * n_layers
    if math.isinf(magnitude) and kind != "suppress":
        raise ValueError(f"magnitude=inf is only allowed for kind 'suppress' (a +inf bias makes softmax NaN); "
                         f"got kind {kind!r}")
    if kind == "enhance":
        return [magnitude] * n_layers
    if kind == "suppress":
        return [-magnitude] * n_layers
    n_shallow = min(round(shallow * n_layers), n_layers)
    n_deep = min(round(deep * n_layers), n_layers - n_shallow)
    out = [0.0] * n_layers
    for i in range(n_shallow):
        out[i] = -magnitude
    for i in range(1, n_deep + 1):
        out[n_layers - n_deep + i - 1] = magnitude * i / n_deep
    return out
