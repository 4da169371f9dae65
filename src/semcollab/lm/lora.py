"""LoRA adapters through PEFT: a validated config, attach, save and load."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..config import allowed, fraction, one_of, positive, validate


def _module_names(v) -> bool:
    if isinstance(v, str):
        return v == "all-linear"
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(m, str) and m for m in v)


@dataclass
class LoRAConfig:
    """LoRA settings. ``target_modules="all-linear"`` is PEFT's shortcut for every linear layer except the
    output head, i.e. the attention and MLP projections (what SeLLa-Rec / TALLRec adapt)."""

    rank: int = allowed(8, lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer")
    alpha: float = positive(16.0)
    dropout: float = fraction(0.05)
    target_modules: list[str] | str = allowed("all-linear", _module_names,
                                              "'all-linear' or a non-empty list of module names")
    bias: str = one_of("none", "none", "all", "lora_only")

    def validate(self) -> LoRAConfig:
        """:func:`semcollab.config.validate` with the keys named ``lora.<key>`` (a ConfigError)."""
        validate(self, prefix="lora.")
        return self

    def to_peft(self):
        from peft import LoraConfig, TaskType

        self.validate()
        tm = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=self.rank, lora_alpha=self.alpha,
                          lora_dropout=self.dropout, target_modules=tm, bias=self.bias)


def add_lora(model: nn.Module, cfg: LoRAConfig):
    """Wrap ``model`` with a fresh LoRA adapter; only the adapter is trainable afterwards."""
    from peft import get_peft_model

    try:
        return get_peft_model(model, cfg.to_peft())
    except ValueError as exc:  # e.g. a target module name that matches nothing
        raise ValueError(f"lora.target_modules {cfg.target_modules!r}: {exc}") from exc


def save_adapter(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write the adapter (weights + config) to ``directory``, atomically replacing an older one.

    Embedding layers are not saved: tokens added for soft prompts get deterministic rows (see
    ``prompts.add_special_tokens``) and are overwritten at run time, so the base model rebuilds them."""
    if not hasattr(model, "peft_config"):
        raise TypeError("save_adapter needs a PEFT model (from add_lora or load_adapter)")
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        model.save_pretrained(tmp, save_embedding_layers=False)
        old = directory.with_name(f".{directory.name}.old")
        if directory.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_adapter(model: nn.Module, directory: str | os.PathLike, trainable: bool = False):
    """Attach a saved adapter to a base model; frozen unless ``trainable`` (SeLLa-Rec step 3 freezes it)."""
    from peft import PeftModel

    directory = Path(directory)
    if not (directory / "adapter_config.json").exists():
        raise FileNotFoundError(f"no LoRA adapter at {directory} (adapter_config.json missing)")
    return PeftModel.from_pretrained(model, str(directory), is_trainable=trainable)
