"""resolve_encoder routes the registry names through semcollab.hub.models (no network, no real weights)."""

import time

import numpy as np
import pytest

from semcollab.hub import models as modelhub
from semcollab.text.encoders import SMOLLM2_GGUF, TextEncoder, resolve_encoder


@pytest.fixture
def fake_hub(monkeypatch, tiny_llama, tiny_bert):
    calls = []

    def fake_resolve(name, log=None):
        calls.append(name)
        return str(tiny_llama if modelhub.MODELS[name].kind == "causal-lm" else tiny_bert)

    monkeypatch.setattr(modelhub, "resolve_model", fake_resolve)
    return calls


@pytest.mark.parametrize("name,spec_name,dim", [("gemma3-270m", "gemma-3-270m", 32),
                                                ("qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct", 32)])
def test_causal_lms_get_dense_folders_and_last_token_pooling(fake_hub, tiny_llama, name, spec_name, dim):
    spec = resolve_encoder(name)
    assert fake_hub == [name]
    assert (spec.name, spec.kind, spec.path, spec.gguf_file, spec.pooling) == (spec_name, "hf", str(tiny_llama),
                                                                               None, "last")
    assert resolve_encoder(name, pooling="mean").pooling == "mean"
    vecs = TextEncoder(spec, device="cpu").encode(["toy story", "golden eye"])
    assert vecs.shape == (2, dim) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert spec.key() != resolve_encoder(name, pooling="mean").key()


def test_mpnet_is_a_sentence_transformers_encoder(fake_hub, tiny_bert):
    spec = resolve_encoder("mpnet")
    assert (spec.name, spec.kind, spec.path, spec.pooling) == ("all-mpnet-base-v2", "sentence-transformers",
                                                               str(tiny_bert), "mean")


def test_a_registry_failure_is_a_file_not_found(monkeypatch):
    def broken(name, log=None):
        raise modelhub.ModelError("model 'gemma3-270m' is unavailable: no PyPI here")

    monkeypatch.setattr(modelhub, "resolve_model", broken)
    with pytest.raises(FileNotFoundError, match="encoder 'gemma3-270m' is unavailable.*no PyPI"):
        resolve_encoder("gemma3-270m")


def test_smollm2_keeps_reading_its_gguf_with_a_stable_cache_key(monkeypatch, tmp_path):
    """smollm2 still reads the GGUF (not the dense folder), from a folder holding only that file: the key is
    the one the encoder had before the registry (it fingerprints names and sizes, not the folder path)."""
    gguf = tmp_path / "gguf" / SMOLLM2_GGUF
    gguf.parent.mkdir()
    gguf.write_bytes(b"x" * 10)
    monkeypatch.setattr(modelhub, "source_file", lambda name, cache_dir=None, log=None: gguf)
    spec = resolve_encoder("smollm2-135m")
    assert (spec.name, spec.kind, spec.path, spec.gguf_file, spec.pooling) == (
        "SmolLM2-135M-Instruct", "hf", str(gguf.parent), SMOLLM2_GGUF, "last")
    # what the pre-registry code computed for the same file in its old folder
    old = tmp_path / "old" / "smollm2-135m"
    old.mkdir(parents=True)
    (old / SMOLLM2_GGUF).write_bytes(b"x" * 10)
    from semcollab.text.encoders import EncoderSpec

    assert spec.key() == EncoderSpec("SmolLM2-135M-Instruct", "hf", str(old), SMOLLM2_GGUF, "last").key()


def test_smollm2_old_cache_layout_is_moved_not_refetched(monkeypatch):
    """A GGUF left by the pre-registry code in <cache>/models/smollm2-135m/ is moved into gguf/."""
    e = modelhub.MODELS["smollm2-135m"]
    monkeypatch.setattr(modelhub, "_installed_dir", lambda name: None)
    root = modelhub.model_root("smollm2-135m")
    root.mkdir(parents=True)
    (root / e.file_name).write_bytes(b"\0" * e.size)  # right size (verified when it was written)

    def no_download(*a, **k):
        raise AssertionError("must not download")

    monkeypatch.setattr(modelhub, "_download_wheels", no_download)
    path = modelhub.source_file("smollm2-135m")
    assert path == root / "gguf" / e.file_name and path.stat().st_size == e.size
    assert not (root / e.file_name).exists()


def test_local_folders_and_cached_hub_ids_work_and_an_unknown_name_fails_at_once(tiny_llama, monkeypatch):
    from semcollab.text.encoders import ModelFolderError

    spec = resolve_encoder(str(tiny_llama))
    assert (spec.kind, spec.path, spec.pooling) == ("hf", str(tiny_llama), "mean")
    # a hub id is used only from the local Hugging Face cache: nothing is downloaded
    monkeypatch.setattr(modelhub, "_hub_cache_folder", lambda rid: str(tiny_llama) if rid == "someone/enc" else None)
    hub = resolve_encoder("someone/enc")
    assert (hub.name, hub.kind, hub.path) == ("someone/enc", "hf", str(tiny_llama))
    for typo in ("no-such-model", "someone/not-cached"):
        t0 = time.monotonic()
        with pytest.raises(ModelFolderError, match="neither a registry name.*minilm"):
            resolve_encoder(typo)
        assert time.monotonic() - t0 < 5


def test_a_gguf_encoder_asks_transformers_for_dense_weights(monkeypatch, tiny_llama):
    """transformers 5.2x keeps GGUF blocks packed (float32 kernels, casts around each matmul) unless told to
    dequantise: the encoder must ask for dense weights, as the registry's conversion does, and not pass the
    quantisation config to the tokenizer."""
    transformers = pytest.importorskip("transformers")
    from semcollab.text.encoders import EncoderSpec

    seen = {}
    real_model, real_tok = transformers.AutoModel.from_pretrained, transformers.AutoTokenizer.from_pretrained

    def model_from(path, **kw):
        seen["model"] = kw
        return real_model(str(tiny_llama), dtype=kw.get("dtype"))

    def tok_from(path, **kw):
        seen["tokenizer"] = kw
        return real_tok(str(tiny_llama))

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", model_from)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tok_from)
    TextEncoder(EncoderSpec("x", "hf", str(tiny_llama), "model.gguf", "last"), device="cpu", dtype="float32")
    assert seen["tokenizer"] == {"gguf_file": "model.gguf"}
    assert seen["model"]["gguf_file"] == "model.gguf"
    if hasattr(transformers, "GgufConfig"):
        assert seen["model"]["quantization_config"].dequantize is True
