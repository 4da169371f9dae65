"""One dtype policy for every LM path (issue 32): ``auto | float32 | bfloat16 | float16``.

The rule: the frozen base weights are held in the resolved dtype; everything trained (LoRA -- PEFT's
``autocast_adapter_dtype`` keeps adapters float32 over a bf16 base --, mappers, soft-token projections, the
thought module) and the optimizer state stay float32, and losses, softmaxes and the yes/no logits are computed
in float32 (bf16 rounds near-equal scores to ties). ``auto`` = bfloat16 on CUDA and on CPUs that report bf16
matrix units (AMX ``amx_bf16``/``amx_tile``) or AVX512-BF16 (``avx512_bf16``); float32 elsewhere.

How the CPU is read: ``SEMCOLLAB_CPU_BF16=1``/``0`` overrides everything (tests, or a user who measured
otherwise); then the ``flags`` line of ``/proc/cpuinfo`` (Linux); where that file is missing,
``torch.backends.cpu.get_cpu_capability()`` reporting AMX is taken as a hint.

Why the flag rule holds on a CPU with AVX512-BF16 but no AMX (AMD EPYC, family 25 model 17, 2 cores, torch 2.13,
2 threads; the machine shared with other jobs, so ratios rather than absolute figures): a 1024x1024 matmul ran
at 384 GFLOP/s in bf16 vs 117-127 in fp32 (3.1x); ``benchmarks/bench_lm_core.py --dtype float32,bfloat16`` on
smollm2-135m (1 thread, interleaved, two runs under different load) gave bf16/fp32 ratios of 1.67-1.99x for
yes/no scoring, 1.42-1.76x for hidden states and 1.18-1.37x for LoRA training tokens/s, and a lower peak RSS
(1.74 vs 2.18 GB). bf16 is faster for every path there, so ``auto`` keeps the flag rule (no training/inference
split). A CPU without any of the flags (the older AMD machines) resolves to float32, as before.

:func:`keep_lora_outputs_fp32` is part of the rule: PEFT adds the float32 LoRA delta to the bf16 base output and
rounds back to bf16, which erased most of a young adapter's effect (parity below).

A legacy ``None`` means ``auto`` as well. Under float32 nothing changes from the code before the policy:
same weights, no autocast, same numbers to the digit.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import ConfigError

POLICIES = ("auto", "float32", "bfloat16", "float16")
CPU_BF16_ENV = "SEMCOLLAB_CPU_BF16"
CPUINFO = Path("/proc/cpuinfo")
# any one of these: the CPU has bf16 dot products in hardware (AMX tiles, or AVX512's vdpbf16ps)
BF16_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16")


def cpu_flags(cpuinfo: str | os.PathLike | None = None) -> set[str] | None:
    """The CPU's feature flags from the first ``flags`` line of ``cpuinfo`` (default ``/proc/cpuinfo``);
    None when the file is missing or has no flags line (not Linux)."""
    path = Path(cpuinfo) if cpuinfo is not None else CPUINFO
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def cpu_bf16(cpuinfo: str | os.PathLike | None = None) -> bool:
    """Whether bf16 pays on this CPU: the environment override, else the cpuinfo flags, else torch's hint."""
    env = os.environ.get(CPU_BF16_ENV, "").strip()
    if env:
        if env not in ("0", "1"):
            raise ConfigError(f"environment variable {CPU_BF16_ENV}={env!r}: use 1 (bf16 on CPU) or 0 (float32)")
        return env == "1"
    flags = cpu_flags(cpuinfo)
    if flags is not None:
        return any(f in flags for f in BF16_FLAGS)
    return "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper()


def check_policy(policy, key: str = "dtype") -> str:
    """The policy as a name (None -> ``auto``); anything else is a ConfigError naming ``key``."""
    if policy is None:
        return "auto"
    if isinstance(policy, torch.dtype):
        policy = str(policy).replace("torch.", "")
    if policy not in POLICIES:
        raise ConfigError(f"{key}={policy!r} is not a dtype policy: one of {', '.join(POLICIES)}")
    return policy


def resolve_dtype(policy, device: str | torch.device = "cpu", key: str = "dtype",
                  cpuinfo: str | os.PathLike | None = None) -> torch.dtype:
    """The dtype the frozen LM weights are held in on ``device`` under ``policy``."""
    policy = check_policy(policy, key)
    device = torch.device(device)
    if policy != "auto":  # float16 on a CPU is allowed as before, though rarely worth it
        return getattr(torch, policy)
    if device.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if cpu_bf16(cpuinfo) else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def describe_dtype(policy, device: str | torch.device = "cpu", key: str = "dtype") -> dict:
    """What run.json records: ``{"dtype": "bfloat16", "dtype_policy": "auto", "cpu_bf16": true}``
    (``cpu_bf16`` only for a CPU device: whether ``auto`` found bf16 support)."""
    device = torch.device(device)
    out = {"dtype": dtype_name(resolve_dtype(policy, device, key)), "dtype_policy": check_policy(policy, key)}
    if device.type == "cpu":
        out["cpu_bf16"] = cpu_bf16()
    return out


def module_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of a model's frozen weights: its input embedding's, else its first parameter's."""
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    if emb is not None and getattr(emb, "weight", None) is not None:
        return emb.weight.dtype
    return next(model.parameters()).dtype


def low_precision(dtype: torch.dtype) -> bool:
    return dtype in (torch.bfloat16, torch.float16)


def autocast_wanted(device: torch.device, model: torch.nn.Module | None, bf16: bool = True) -> bool:
    """bf16 autocast while training: on CUDA whenever ``bf16`` (as before the policy); on a CPU only when the
    frozen weights are already bf16 (casting float32 weights on every call was slower than float32 itself, and
    a float32 run must stay as it was)."""
    if not bf16:
        return False
    if device.type == "cuda":
        return True
    return model is not None and module_dtype(model) == torch.bfloat16


def _lora_forward_fp32(self, x, *args, **kwargs):
    """PEFT ``lora.Linear.forward`` that returns float32: base output (bf16 matmul) plus the float32 adapter delta,
    not rounded back to bf16 (there a small adapter's delta, under half a bf16 ulp of the output, vanished)."""
    result = self.base_layer(x.to(self.base_layer.weight.dtype), *args, **kwargs)
    if self.disable_adapters or self.merged:
        return result
    out = result.float()
    for name in self.active_adapters:
        if name in self.lora_A:
            a = self.lora_A[name]
            out = out + self.lora_B[name](a(self.lora_dropout[name](x.to(a.weight.dtype)))) * self.scaling[name]
    return out


def keep_lora_outputs_fp32(model: torch.nn.Module) -> int:
    """Make every LoRA linear layer over 16-bit base weights return float32 (the residual stream then stays
    float32; the matmuls stay 16-bit). Without it, the same adapter scored over bf16 weights lost about two thirds
    of its effect after 4 training steps on smollm2-135m (max |yes-no logit| difference to float32 0.33, 0.05 with
    it: the base model's own bf16 noise). Returns how many layers were patched; float32 layers are left alone."""
    from peft.tuners.lora import Linear

    n = 0
    for m in model.modules():
        if isinstance(m, Linear) and low_precision(m.base_layer.weight.dtype):
            m.forward = _lora_forward_fp32.__get__(m)
            n += 1
    return n
