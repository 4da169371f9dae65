"""Issue 28: dataset names that would escape their folders, data printed as data, stale prepare temporaries,
moved data for a saved run (section 5); an unknown --lm name fails at once (section 4); symlink loops are
named as such (section 6). The model-cache repair cases are in tests/test_modelhub_repair.py."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from semcollab.cli import app
from semcollab.data import DataError
from tests.conftest import write_atomic

runner = CliRunner()


def _flat(r) -> str:
    """The output with rich's line wrapping (80 columns under the test runner) undone."""
    return " ".join(r.output.split())


# ------------------------------------------------------------------ 5: dataset names never escape their folders

def test_atomic_name_with_dot_dot_is_refused_and_writes_nothing_outside_the_cache(tmp_path):
    data = write_atomic(tmp_path / "d" / "a" / "b")
    shutil.copy(data / "toy.inter", tmp_path / "d" / "x.inter")  # what "../../x" would reach from d/a/b
    cache = tmp_path / "w" / "c"
    r = runner.invoke(app, ["data", "prepare", "atomic:../../x", f"--data.path={data}", f"--data.cache_dir={cache}"])
    assert r.exit_code == 2, r.output
    assert "dataset name atomic:'../../x' is not allowed" in _flat(r)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if "prepared" in p.as_posix()
                  or p.name.startswith("x-")) == []


def test_s3rec_name_with_a_path_is_a_message_not_a_traceback(tmp_path):
    seq = tmp_path / "seq.txt"
    seq.write_text("1 1 2 3\n2 1 2 3\n")
    r = runner.invoke(app, ["data", "prepare", "s3rec:../../x", f"--data.path={seq}",
                            f"--data.cache_dir={tmp_path / 'c'}"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output  # was a ValueError traceback
    assert "dataset name s3rec:'../../x' is not allowed" in _flat(r)


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", "/etc/passwd", "..", "a\0b", "x..y"])
def test_check_dataset_name_refuses_path_like_names(name):
    from semcollab.data.sources.files import check_dataset_name

    with pytest.raises(DataError, match="must be a plain file name"):
        check_dataset_name(name, "atomic")
    assert check_dataset_name("Sports_and_Outdoors", "s3rec") == "Sports_and_Outdoors"


def test_cache_entry_path_must_stay_inside_the_cache(tmp_path):
    from semcollab.data.cache import entry_dir

    assert entry_dir(tmp_path, "toy", "abc") == tmp_path / "prepared" / "toy-abc"
    for name in ("../../x", "a/b", ".tmp-1"):
        with pytest.raises(DataError, match="outside data.cache_dir|plain file name"):
            entry_dir(tmp_path, name, "abc")


# ------------------------------------------------------------------ 5: stale temporaries of a killed prepare

def test_a_killed_prepare_temporary_is_removed_at_the_next_prepare(toy_dir, tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    prepared = tmp_path / "c" / "prepared"
    prepared.mkdir(parents=True)
    dead = prepared / f".tmp-{p.pid}-abcd1234"  # the new name carries the writer's PID
    dead.mkdir()
    (dead / "train.parquet").write_bytes(b"\0" * 100)
    legacy = prepared / ".tmp-k2j4h5g6"  # an older version's name (no PID): removed once it is old
    legacy.mkdir()
    old = time.time() - 3 * 24 * 3600
    os.utime(legacy, (old, old))
    fresh = prepared / ".tmp-q1w2e3r4"  # no PID and fresh: may be a live writer elsewhere, kept
    fresh.mkdir()
    r = runner.invoke(app, ["data", "prepare", "atomic:toy", f"--data.path={toy_dir}",
                            f"--data.cache_dir={tmp_path / 'c'}"])
    assert r.exit_code == 0, r.output
    assert not dead.exists() and not legacy.exists() and fresh.exists()
    assert "removed a stale temporary" in r.output and f"process {p.pid} is gone" in _flat(r)
    entries = [q.name for q in prepared.iterdir() if not q.name.startswith(".tmp-")]
    assert len(entries) == 1 and entries[0].startswith("toy-")


# ------------------------------------------------------------------ 5: print data as data

HOSTILE = ["Boxed set [/b] vol 1", "[bold]Loud[/bold]", "Red \x1b[31malert\x1b[0m", "Link \x1b]8;;http://evil\x07x",
           "abc\u202edef", "[link=http://evil]click[/link]"]


def _hostile_run(tmp_path) -> Path:
    d = write_atomic(tmp_path / "toy", n_users=20, n_items=len(HOSTILE) + 4, per_user=3)
    items = pd.read_csv(d / "toy.item", sep="\t", dtype=str)
    items.iloc[: len(HOSTILE), 1] = HOSTILE
    items.to_csv(d / "toy.item", sep="\t", index=False)
    out = tmp_path / "runs"
    r = runner.invoke(app, ["train", "--model", "pop", "--dataset", "atomic:toy", f"--data.path={d}",
                            "--train.progress=false", f"--output_dir={out}", "--data.user_k=1", "--data.item_k=1",
                            "--eval.ks=[5,10]"])
    assert r.exit_code == 0, r.output
    (run_dir,) = list(out.iterdir())
    return run_dir


def test_recommend_prints_hostile_titles_as_written_without_control_characters(tmp_path):
    run_dir = _hostile_run(tmp_path)
    r = runner.invoke(app, ["recommend", str(run_dir), "--user", "1", "--k", str(len(HOSTILE) + 4)])
    assert r.exit_code == 0, r.output  # was a MarkupError traceback ("closing tag '[/b]' ... doesn't match")
    assert "\x1b" not in r.output and "\x07" not in r.output and "\u202e" not in r.output
    out = _flat(r)
    assert "Boxed set [/b] vol 1" in out and "[bold]Loud[/bold]" in out and "[link=http://evil]click[/link]" in out
    assert "Red \\x1b[31malert\\x1b[0m" in out and "Link \\x1b]8;;http://evil\\x07x" in out
    assert "abc\\u202edef" in out


def test_safe_text_escapes_markup_and_every_control_character():
    from rich.console import Console

    from semcollab.textsafe import printable, safe_text

    assert printable("a\nb\tc\r\x00\x7f\x85\u2066\u2069\u200f") == "a\\nb\\tc\\r\\x00\\x7f\\x85\\u2066\\u2069\\u200f"
    console = Console(width=200, record=True, color_system=None)
    for text in ["[/]", "[b]x", "a\\", "x \\[b]y", "[@click=app.quit]q", "plain (1995)"]:
        console.print(safe_text(text) + " tail")
    lines = console.export_text().splitlines()
    assert lines == ["[/] tail", "[b]x tail", "a\\ tail", "x \\[b]y tail", "[@click=app.quit]q tail",
                     "plain (1995) tail"]
    assert safe_text("a\u202eb" * 50, 5) == "a\\u202eba\\u202e"  # cut first, so an escape is never split


# ------------------------------------------------------------------ 5: data that moved, for a saved run

def _toy_run(tmp_path, data: Path) -> Path:
    out = tmp_path / "runs"
    r = runner.invoke(app, ["train", "--model", "pop", "--dataset", "atomic:toy", f"--data.path={data}",
                            "--train.progress=false", f"--output_dir={out}"])
    assert r.exit_code == 0, r.output
    (run_dir,) = list(out.iterdir())
    return run_dir


def test_moved_data_is_accepted_with_data_path_when_its_fingerprint_matches(tmp_path):
    data = write_atomic(tmp_path / "old" / "toy")
    run_dir = _toy_run(tmp_path, data)
    saved = json.loads((run_dir / "metrics.json").read_text())["test"]["overall"]["ndcg@10"]
    moved = tmp_path / "new" / "toy"
    moved.parent.mkdir()
    data.rename(moved)

    r = runner.invoke(app, ["evaluate", str(run_dir)])
    assert r.exit_code == 2 and "folder not found" in _flat(r) and "--data.path=" in _flat(r), r.output
    r = runner.invoke(app, ["evaluate", str(run_dir), f"--data.path={moved}"])
    assert r.exit_code == 0, r.output  # was: "evaluate takes only eval.* overrides"
    assert "same content" in _flat(r)
    assert json.loads(r.output[r.output.index("{"):])["overall"]["ndcg@10"] == saved
    r = runner.invoke(app, ["recommend", str(run_dir), "--user", "3", f"--data.path={moved}"])
    assert r.exit_code == 0 and " 1. " in r.output, r.output

    # other content at the new place: refused as a data change, allowed only with --allow-data-change
    other = tmp_path / "other" / "toy"
    shutil.copytree(moved, other)
    (other / "toy.item").write_text((other / "toy.item").read_text().replace("Movie 3\t", "Movie Three\t"))
    r = runner.invoke(app, ["evaluate", str(run_dir), f"--data.path={other}"])
    assert r.exit_code == 2 and "has changed since it was trained" in _flat(r), r.output
    r = runner.invoke(app, ["recommend", str(run_dir), "--user", "3", f"--data.path={other}",
                            "--allow-data-change"])
    assert r.exit_code == 0 and "warning" in r.output, r.output
    # a data setting other than a path is still refused
    r = runner.invoke(app, ["evaluate", str(run_dir), f"--data.path={moved}", "--data.user_k=2"])
    assert r.exit_code == 2 and "data.user_k" in _flat(r)


def test_load_run_data_paths_check_the_fingerprint(tmp_path):
    from semcollab.errors import DataChangedError
    from semcollab.tasks.ranking import load_ranking_run

    data = write_atomic(tmp_path / "old" / "toy")
    run_dir = _toy_run(tmp_path, data)
    copy = tmp_path / "copy" / "toy"
    shutil.copytree(data, copy)
    cfg, _, split = load_ranking_run(run_dir, data_paths={"path": str(copy)})
    assert cfg.data.path == str(copy.resolve())
    (copy / "toy.item").write_text((copy / "toy.item").read_text().replace("Movie 3\t", "Movie Three\t"))
    with pytest.raises(DataChangedError):
        load_ranking_run(run_dir, data_paths={"path": str(copy)})


# ------------------------------------------------------------------ 4: an unknown --lm name fails at once

def test_an_unknown_lm_name_fails_at_once_without_a_hub_call(monkeypatch):
    import huggingface_hub
    import transformers

    from semcollab.lm import load_causal_lm

    def no_hub(*a, **k):
        raise AssertionError("a hub / from_pretrained call was made for an unknown name")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_hub)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_hub)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    t0 = time.perf_counter()
    for name in ("no-such-model", "someone/no-such-model"):
        with pytest.raises(FileNotFoundError, match=r"neither a registry name \(minilm, mpnet, smollm2-135m"):
            load_causal_lm(name)
    assert time.perf_counter() - t0 < 5


def test_a_local_folder_is_loaded_without_asking_the_hub(tiny_causal_lm, monkeypatch):
    import transformers

    from semcollab.lm import load_causal_lm

    seen = []
    real_tok, real_model = transformers.AutoTokenizer.from_pretrained, transformers.AutoModelForCausalLM.from_pretrained

    def tok(*a, **k):
        seen.append(k.get("local_files_only"))
        return real_tok(*a, **k)

    def model(*a, **k):
        seen.append(k.get("local_files_only"))
        return real_model(*a, **k)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tok)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model)
    load_causal_lm(str(tiny_causal_lm))
    assert seen == [True, True]


# ------------------------------------------------------------------ 6: a symlink loop is named as such

def test_a_symlink_loop_is_reported_as_a_loop_not_as_file_not_found(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    r = runner.invoke(app, ["data", "prepare", "atomic:toy", f"--data.path={loop}"])
    assert r.exit_code == 2 and f"{loop}: symlink loop" in _flat(r), r.output
    r = runner.invoke(app, ["data", "prepare", "table", f"--data.path={loop}", "--data.user_col=u",
                            "--data.item_col=i", "--data.time_col=t"])
    assert r.exit_code == 2 and "symlink loop" in _flat(r), r.output
    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    r = runner.invoke(app, ["evaluate", str(a)])
    assert r.exit_code == 2 and f"{a}: symlink loop" in _flat(r), r.output
    r = runner.invoke(app, ["recommend", str(a), "--user", "1"])
    assert r.exit_code == 2 and "symlink loop" in _flat(r), r.output
