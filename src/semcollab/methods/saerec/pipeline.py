"""The SAE intent library of a dataset, as one call: item texts -> text vectors -> TopK SAE (trained or reused)
-> named intents (optionally named and judged by a causal LM) -> ``intents.json`` + ``sae_quality.json``.

``semcollab intents`` is a thin call of :func:`build_intents`; a library written here is what
``--model_params.intents_file`` and ``semcollab recommend --intents`` read."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from ...config import ConfigError, apply_overrides, dataset_name, from_dict, load_config
from ...data import Split, load_split
from ...hub.wheels import default_cache_dir
from ...text import EmbedConfig, item_embeddings
from .explain import build_library, item_activations, public_intents
from .intents import IntentLibrary
from .lm_labels import LMLabeler, judge_library, label_library
from .sae import SAEConfig, fit_or_load_sae


@dataclass
class IntentsResult:
    split: Split
    library: IntentLibrary
    texts: list[str]  # the rendered item texts, index i - 1 for item i
    quality: dict  # the SAE's reconstruction / sparsity figures (sae_quality.json)
    n_latents: int
    out_dir: Path  # where intents.json and sae_quality.json were written
    judged_kept: dict | None = None  # latent -> kept as a shopping intent (with judge)


def build_intents(dataset: str | None = None, *, encoder: str = "minilm", template: str | None = None,
                  empty_text: str = "template", overrides: list[str] | None = None, lm_labels: str | None = None,
                  lm_top: int = 50, judge: str | None = None, judge_top: int | None = None,
                  out: str | Path = "intents", log=print, status=None) -> IntentsResult:
    """Train (or reuse) the TopK SAE over item text vectors and write the named intent library to
    ``out/<dataset>/``.

    ``overrides`` are ``key=value`` strings: ``sae.*`` set the SAE (``sae.k=15``, ``sae.steps=2000``), the others
    the data (``data.path=...``). ``lm_labels`` also names the ``lm_top`` most used intents with that causal LM;
    ``judge`` asks a causal LM whether each intent is a shopping intent (``judge_top``: only the most used).
    ``status(message)`` returns a context manager shown while an LM works (a spinner on the command line)."""
    if empty_text == "skip":  # as for saerec: an all-zero row would be fitted as one shared intent
        raise ConfigError("--empty-text skip is not supported by intents (the SAE needs a text vector for every "
                          "item); use template or refuse")
    status = status or (lambda message: contextlib.nullcontext())
    overrides = list(overrides or [])
    sae_args = [a for a in overrides if a.lstrip("-").startswith("sae.")]
    rest = [a for a in overrides if a not in sae_args]
    cfg = load_config(None, rest)
    cfg.data.name = dataset_name(dataset, None, rest) or cfg.data.name
    sae_cfg = from_dict(SAEConfig, apply_overrides({}, sae_args).get("sae", {}), prefix="sae.")
    split = load_split(cfg.data)
    vecs, _ = item_embeddings(split, EmbedConfig(encoder=encoder, template=template, empty_text=empty_text))
    width = sae_cfg.expansion * vecs.shape[1]  # the SAE's latents; top-k of fewer is undefined
    if sae_cfg.k > width:
        raise ConfigError(f"config key 'sae.k' must be between 1 and the SAE width (sae.expansion "
                          f"{sae_cfg.expansion} x encoder dim {vecs.shape[1]} = {width}), got {sae_cfg.k}")
    sae, quality = fit_or_load_sae(vecs, split, sae_cfg, Path(cfg.data.cache_dir or default_cache_dir()), log=log)
    idx, val = item_activations(sae, vecs)
    texts = split.render_texts(template)
    lib = build_library(idx, val, texts, sae.n_latents)
    kept = None
    if lm_labels or judge:
        # the intents with most activation mass over training interactions: the ones explanations show most
        by_mass = public_intents(idx, val, split.train["item"].to_numpy(), sae.n_latents, sae.n_latents)
        if lm_labels:
            with status(f"naming {lm_top} intents with {lm_labels}"):
                label_library(lib, texts, LMLabeler(lm_labels), top=lm_top, priority=by_mass)
        if judge:
            with status(f"judging intents with {judge}"):
                kept = judge_library(lib, texts, LMLabeler(judge), top=judge_top, priority=by_mass)
            if log:
                log(f"{sum(kept.values())} of {len(kept)} judged intents kept as shopping intents")
    out_dir = Path(out) / split.name
    out_dir.mkdir(parents=True, exist_ok=True)
    lib.save(out_dir / "intents.json", list(split.item_vocab.ids), texts)
    (out_dir / "sae_quality.json").write_text(json.dumps(quality, indent=2))
    return IntentsResult(split, lib, texts, quality, sae.n_latents, out_dir, kept)
