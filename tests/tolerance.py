"""Tolerances for comparing two float computations of the same math done by different kernel paths.

Two paths (batched vs one row, a key/value cache vs a full pass, SDPA vs eager attention, ...) run different
kernels: other blocking, vector width, summation order, thread split, approximate ``exp``. Which kernels run depends
on the CPU (oneDNN picks AVX2 / AVX-512 / AMX code at run time) and on the thread count, so a constant such as
``1e-5`` tuned on one machine fails on another. The tolerance here follows from the dtype and the numbers instead.

The bound: a dot product of length ``n`` computed in floating point carries a relative error of at most ``n * u``
of the sum of its terms' magnitudes, ``u = eps / 2`` (Higham, *Accuracy and Stability of Numerical Algorithms*,
section 3.1). Two computations differ by at most twice that, ``n * eps``; a chain of reductions (projection,
attention scores, softmax sum, attention-weighted sum, MLP, norm, mean over tokens) adds their lengths to first
order. Relative to the largest magnitude compared, the allowed difference is therefore
``eps(dtype) * sum(reduction lengths) * max|reference|``. Measured differences sit one to two orders of magnitude
below it (see each test); a real bug (a wrong position, a wrong cache, a dropped token) moves the numbers by far more.
"""

from __future__ import annotations

import os

import numpy as np
import torch


def _eps(dtype) -> float:
    if isinstance(dtype, torch.dtype):
        return float(torch.finfo(dtype).eps)
    return float(np.finfo(dtype).eps)


def _max_abs(x) -> float:
    if isinstance(x, torch.Tensor):
        return float(x.detach().abs().max()) if x.numel() else 0.0
    x = np.asarray(x)
    return float(np.abs(x).max()) if x.size else 0.0


def rounding_tol(reference, reductions: int | list[int] | tuple[int, ...], dtype=None, scale=None) -> float:
    """The largest difference two kernel paths may show on ``reference`` (a tensor or array; its dtype unless
    ``dtype`` is given) after a chain of reductions of the given lengths: ``eps * sum(lengths) * max|reference|``.
    ``scale``: the values whose magnitude sets the error when it is not ``reference`` (e.g. the logits behind a
    probability)."""
    lengths = [reductions] if isinstance(reductions, int) else list(reductions)
    if dtype is None:
        dtype = reference.dtype if isinstance(reference, torch.Tensor) else np.asarray(reference).dtype
    scale = _max_abs(reference if scale is None else scale)
    return _eps(dtype) * sum(lengths) * max(scale, _eps(dtype))


def transformer_reductions(config, seq_len: int, lora_rank: int = 0, pooled: bool = True,
                           head: bool = False) -> list[int]:
    """The reduction lengths along one forward pass of a Llama/BERT-style model with ``config`` over ``seq_len``
    tokens: per layer the Q/K/V and output projections and the MLP input (hidden size each), the attention scores
    (head size), softmax normaliser and weighted sum (sequence length), the MLP output (intermediate size), the
    norms (hidden size), a LoRA adapter (its rank); then the final norm and, when ``pooled``, the mean over tokens,
    when ``head``, the LM head (hidden size)."""
    hidden, inter = config.hidden_size, config.intermediate_size
    head_size = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    per_layer = [hidden] * 4 + [head_size, seq_len, seq_len] + [hidden, inter] + [hidden] * 2
    if lora_rank:
        per_layer += [hidden + lora_rank] * 4
    return per_layer * config.num_hidden_layers + [hidden] + ([seq_len] if pooled else []) + ([hidden] if head else [])


def assert_close_rounding(actual, expected, reductions, what: str = "", dtype=None, scale=None) -> float:
    """``|actual - expected| <= rounding_tol(expected, reductions, dtype)`` element-wise; the message gives both
    numbers. Returns the measured difference."""
    assert tuple(np.shape(actual)) == tuple(np.shape(expected)), f"{what} shapes {np.shape(actual)} != {np.shape(expected)}"
    tol = rounding_tol(expected, reductions, dtype, scale)
    if isinstance(actual, torch.Tensor):
        diff = float((actual.detach().double() - torch.as_tensor(expected).detach().double()).abs().max())
    else:
        diff = float(np.abs(np.asarray(actual, dtype=np.float64) - np.asarray(expected, dtype=np.float64)).max())
    if os.environ.get("SEMCOLLAB_SHOW_TOL"):
        print(f"rounding check {what}: max |difference| {diff:.3e}, tolerance {tol:.3e}")
    assert diff <= tol, f"{what} max |difference| {diff:.3e} > rounding tolerance {tol:.3e}"
    return diff
