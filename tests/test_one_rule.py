"""One rule, one copy: every device option refuses and accepts the same strings, and the one hidden-state
embedder gives the vectors the text encoder's own loop gave (bit for bit)."""

import dataclasses

import numpy as np
import pytest
import torch

from semcollab.config import ConfigError, TrainConfig, from_dict, resolve_device
from semcollab.config.ctr import CTRTrainConfig
from semcollab.lm import encode_texts, load_causal_lm
from semcollab.methods.reaemb import ReaEmbPipelineConfig
from semcollab.text import TextEncoder, resolve_encoder
from semcollab.train.lm_steps import LMTrainConfig

GOOD = ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"]
BAD = ["gpu", "cuda:", "cuda:x", "CPU", "cuda0", " cpu", "tpu", ""]
DEVICE_CONFIGS = [TrainConfig, CTRTrainConfig, LMTrainConfig, ReaEmbPipelineConfig]
TEXTS = ["toy story", "golden eye of the war and love", "a", "space war drama comedy action thriller movie",
         "the love of drama", "war"]


@pytest.mark.parametrize("schema", DEVICE_CONFIGS, ids=lambda c: c.__name__)
def test_every_device_option_accepts_and_refuses_the_same_strings(schema):
    for value in GOOD:
        from_dict(schema, {"device": value})
    for value in BAD:
        with pytest.raises(ConfigError, match="device"):
            from_dict(schema, {"device": value})
    # LMTrainConfig is also built in code, not only from a dict: its own validate applies the same rule
    if schema is LMTrainConfig:
        for value in BAD:
            with pytest.raises(ConfigError, match="LMTrainConfig.device"):
                LMTrainConfig(device=value).validate()


def test_device_resolution_is_shared_by_the_text_encoder(tiny_llama, monkeypatch):
    assert TextEncoder(resolve_encoder(str(tiny_llama)), device="auto").device == resolve_device("auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device=cuda"):
        TextEncoder(resolve_encoder(str(tiny_llama)), device="cuda")


def _old_text_encoder_loop(enc: TextEncoder, texts: list[str]) -> np.ndarray:
    """TextEncoder.encode's hand-written loop before it called the shared embedder (verbatim, for comparison)."""
    texts = [enc.spec.prompt + t for t in texts]
    lengths = [len(enc.tokenizer.tokenize(t)) for t in texts]
    order = np.argsort(lengths, kind="stable")[::-1]
    out = np.zeros((len(texts), enc.dim), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, len(texts), enc.batch_size):
            idx = order[s:s + enc.batch_size]
            batch = enc.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                  max_length=enc.spec.max_length, return_tensors="pt").to(enc.device)
            hidden = enc.model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            if enc.spec.pooling == "mean":
                vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            else:
                vec = hidden[torch.arange(len(idx), device=enc.device), batch["attention_mask"].sum(1) - 1]
            if enc.spec.normalize:
                vec = torch.nn.functional.normalize(vec, dim=-1)
            out[idx] = vec.cpu().numpy()
    return out


@pytest.mark.parametrize("pooling", ["mean", "last"])
@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_bert"])
def test_text_encoder_through_the_one_embedder_is_bit_identical(request, fixture, pooling):
    enc = TextEncoder(resolve_encoder(str(request.getfixturevalue(fixture)), pooling=pooling), device="cpu",
                      batch_size=4)
    new = enc.encode(TEXTS)
    assert new.dtype == np.float32 and new.shape == (len(TEXTS), enc.dim)
    np.testing.assert_array_equal(new, _old_text_encoder_loop(enc, TEXTS))


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_the_public_paths_agree_on_one_text_at_a_time(tiny_llama, pooling):
    """text.TextEncoder (AutoModel, right padding) and lm.encode_texts (causal LM, left padding) embed through one
    function; with nothing to pad, both give the same bits for the same weights."""
    enc = TextEncoder(dataclasses.replace(resolve_encoder(str(tiny_llama), pooling=pooling), normalize=False),
                      device="cpu", batch_size=1)
    model, tok = load_causal_lm(str(tiny_llama))
    via_lm = encode_texts(model, tok, TEXTS, pooling=pooling, batch_size=1)
    np.testing.assert_array_equal(enc.encode(TEXTS), via_lm)
