"""Load a causal LM and its tokenizer, ready for batched scoring (left padding, eval mode)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import ModelFolderError
from .dtype import POLICIES, resolve_dtype

# the files a tokenizer is read from; all JSON, and a truncated one must be named, not a parser traceback
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json")


def check_tokenizer_files(folder: str | Path) -> None:
    """Raise :class:`ModelFolderError` naming the first tokenizer file of ``folder`` (or of its direct
    subfolders, where sentence-transformers keeps them) that is not valid JSON; nothing when it is not a
    folder (a hub id)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for f in [folder / n for n in TOKENIZER_FILES] + [d / n for d in sorted(folder.iterdir()) if d.is_dir()
                                                         for n in TOKENIZER_FILES]:
        if not f.is_file():
            continue
        try:
            json.loads(f.read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelFolderError(f"tokenizer file {f} is damaged (not valid JSON: {exc}); a truncated copy or "
                                   "download? Copy or fetch the model again") from None


def _resolve(name_or_path: str, log=None) -> str:
    """A local folder for a registry name, a folder or a hub id already in the local HF cache; any other name
    fails at once with the registry's names (no hub call: a typo must not wait on retries offline)."""
    try:
        from ..hub.models import ModelError, ModelIntegrityError, local_model_path
    except ImportError:  # the registry is optional: local folders still work
        return name_or_path
    try:
        return local_model_path(name_or_path, "causal LM", log=log)
    except ModelIntegrityError:
        raise
    except ModelError as exc:  # could not fetch or convert: for callers, the model is not there
        raise FileNotFoundError(f"causal LM {name_or_path!r} is unavailable: {exc}") from exc


def _dtype(dtype, device: torch.device) -> torch.dtype:
    """The weights' dtype: a policy name (None = ``auto``, see :mod:`semcollab.lm.dtype`), a torch dtype or
    any other torch dtype name."""
    if dtype is None or dtype in POLICIES:
        return resolve_dtype(dtype, device)
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"dtype {dtype!r} is not a torch dtype (e.g. float32, bfloat16)")
        return getattr(torch, dtype)
    return dtype


def set_padding(tokenizer, model=None) -> None:
    """Left padding (the answer position is then the last column) and a pad token that exists."""
    if tokenizer.pad_token is None:
        # eos as pad is the usual choice for decoder-only LMs; pads are masked out, so its embedding is unused
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is not None:
            tokenizer.pad_token = fallback
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
            if model is not None:
                model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    tokenizer.padding_side = "left"
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        gen = getattr(model, "generation_config", None)
        if gen is not None:
            gen.pad_token_id = tokenizer.pad_token_id


def dense_gguf_kwargs(gguf_file: str) -> dict:
    """``from_pretrained`` keywords that read a GGUF file as dense weights, as the registry's converted folders hold
    them. Recent transformers (5.2x) may keep GGUF blocks packed where it has a kernel, computing in float32 with casts
    around every matmul (and warns so when a bf16 policy asks for 16 bits); older ones (no ``GgufConfig``) always
    dequantise. On transformers 5.25 smollm2-135m's vectors are the same either way (docs/results.md 22p)."""
    kw: dict = {"gguf_file": gguf_file}
    try:
        from transformers import GgufConfig
    except ImportError:
        return kw
    kw["quantization_config"] = GgufConfig(gguf_file=gguf_file, dequantize=True)
    return kw


def load_causal_lm(name_or_path: str, dtype=None, device: str | torch.device = "cpu",
                   attn_implementation: str | None = None, log=None):
    """``(model, tokenizer)`` for a registry name (see ``semcollab.hub.models``), a local folder or a hub id
    already in the local Hugging Face cache (nothing is fetched from the hub; any other name fails at once).

    ``dtype`` None or ``auto``: the dtype policy of :mod:`semcollab.lm.dtype` (bfloat16 on CUDA and on CPUs
    with bf16 units, float32 elsewhere; ``SEMCOLLAB_CPU_BF16=0`` forces float32 on a CPU). A folder holding only a GGUF file is dequantised
    on load (slow; the model registry caches a dense copy instead)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = torch.device(device)
    path = _resolve(os.path.expanduser(str(name_or_path)), log=log)
    kw: dict = {"local_files_only": True}  # always a local folder by now: never ask the hub
    p = Path(path)
    if p.is_dir() and not (p / "config.json").exists():
        ggufs = sorted(p.glob("*.gguf"))
        if not ggufs:
            raise FileNotFoundError(f"causal LM {name_or_path!r}: folder {p} has neither config.json nor a .gguf file")
        kw.update(dense_gguf_kwargs(ggufs[0].name))
    elif not p.exists() and (p.is_absolute() or str(path).startswith(".") or str(path).count("/") > 1):
        raise FileNotFoundError(f"causal LM {name_or_path!r}: no folder at {path}")
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    check_tokenizer_files(path)  # a truncated tokenizer.json: an error naming the file, not a JSON traceback
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, **{k: v for k, v in kw.items() if k not in ("attn_implementation", "quantization_config")})
        model = AutoModelForCausalLM.from_pretrained(path, dtype=_dtype(dtype, device), **kw)
    except OSError as exc:  # transformers' "not a local folder and not on the hub" (or offline) error
        raise FileNotFoundError(f"causal LM {name_or_path!r} (resolved to {path!r}) could not be loaded: {exc}") from exc
    if "gguf_file" in kw:  # a dequantised GGUF is dense; drop the quantizer so PEFT and save_pretrained accept it
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    set_padding(tokenizer, model)
    return model.to(device).eval(), tokenizer
