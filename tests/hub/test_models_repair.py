"""Issue 28 section 5: a damaged cached model is found on load (sizes), listed as damaged, and rebuilt by
``models fetch`` (sizes, then sha256); temporaries a killed fetch left behind are removed at the next fetch.

A tiny fake registry entry (tests/test_modelhub.py's fake part wheels and injected GGUF loader) stands in
for the real wheels: nothing is downloaded."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from semcollab.hub import models as modelhub
from semcollab.hub.models import MODELS, ModelIntegrityError, model_status, resolve_model, verify_model
from tests.hub.test_models import install_fake_lm


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def fake_lm(tiny_causal_lm, tmp_path, monkeypatch):
    """``fake-lm`` in the registry, fetchable from local fake wheels; returns (root, download log)."""
    _, downloads = install_fake_lm(tiny_causal_lm, tmp_path, monkeypatch)
    return modelhub.model_root("fake-lm"), downloads


def test_a_truncated_cached_model_is_found_listed_as_damaged_and_repaired_by_fetch(fake_lm, capsys):
    from rich.console import Console

    from semcollab.cli.models import fetch_command, models_command

    root, downloads = fake_lm
    path = Path(resolve_model("fake-lm"))
    weights = path / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])  # a truncated copy (disk full, killed copy, ...)

    # on load: a message naming the file and the repair, not a raw SafetensorError later
    with pytest.raises(ModelIntegrityError, match=r"fake-lm.*damaged \(model\.safetensors.*semcollab models fetch "
                                                  r"fake-lm"):
        resolve_model("fake-lm")
    assert model_status("fake-lm")["state"] == "damaged"
    models_command(Console(width=200))
    assert "damaged" in capsys.readouterr().out

    # models fetch rebuilds it (the sources were tidied away: fetched again) and it loads again
    fetch_command("fake-lm", Console(width=200))
    assert "rebuilding" in capsys.readouterr().out
    assert len(downloads) == 2
    assert weights.stat().st_size == len(whole) and verify_model(str(path))["ok"]
    assert model_status("fake-lm")["state"] == "cached"
    assert resolve_model("fake-lm") == str(path)


def test_fetch_finds_an_altered_file_of_the_right_size_by_its_hash(fake_lm):
    root, downloads = fake_lm
    path = Path(resolve_model("fake-lm"))
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert resolve_model("fake-lm") == str(path)  # a load checks sizes only (cheap)
    logs = []
    assert resolve_model("fake-lm", log=logs.append, repair=True) == str(path)
    assert any("damaged (model.safetensors" in m and "rebuilding" in m for m in logs), logs
    assert verify_model(str(path))["ok"] and len(downloads) == 2


def test_stale_temporaries_of_a_killed_fetch_are_removed_at_the_next_fetch(fake_lm):
    root, _ = fake_lm
    root.mkdir(parents=True)
    dead = _dead_pid()
    stale_dir = root / f"dense.tmp-{dead}"  # what a killed conversion leaves (517 MB for real)
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"\0" * 1000)
    stale_file = root / f"fake.gguf.tmp-{dead}"  # a killed assembly
    stale_file.write_bytes(b"GGUF")
    old = root / "dense.tmp-1234567"  # a PID that may be alive: removed only because it is old
    old.mkdir()
    week_ago = time.time() - 7 * 24 * 3600
    os.utime(old, (week_ago, week_ago))
    live = root / f"dense.tmp-{os.getppid()}"  # a live process's fresh temporary: kept
    live.mkdir()
    logs = []
    resolve_model("fake-lm", log=logs.append)
    assert not stale_dir.exists() and not stale_file.exists() and not old.exists()
    assert live.exists()
    assert sum("removed a stale temporary" in m for m in logs) == 3, logs
    assert any(f"process {dead} is gone" in m for m in logs)


def test_a_damaged_kept_source_gguf_is_reported(fake_lm, monkeypatch):
    """smollm2's GGUF is kept (the text encoder reads it): a truncated copy is damaged too."""
    entry = MODELS["fake-lm"]
    monkeypatch.setitem(MODELS, "fake-lm", modelhub.ModelEntry(**{**entry.__dict__, "keep_source": True}))
    root, _ = fake_lm
    resolve_model("fake-lm")
    gguf = root / "gguf" / "fake.gguf"
    gguf.write_bytes(gguf.read_bytes()[:10])
    assert model_status("fake-lm")["state"] == "damaged"
    with pytest.raises(ModelIntegrityError, match="fake.gguf"):
        modelhub.source_file("fake-lm")
    resolve_model("fake-lm", repair=True)
    assert gguf.stat().st_size == entry.size and model_status("fake-lm")["state"] == "cached"
