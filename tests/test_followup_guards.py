"""Follow-ups of issue 28: data printed as data in every command, ``--empty-text`` for embed / intents, a saved
CTR run cannot opt itself in to pickles, one dataset source in the Python API, saerec's ``sae.k`` checked
against the SAE width, and a run's config.yaml read with the guards of ``--config`` files."""

import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

import semcollab
from semcollab.cli import app
from semcollab.cli.common import console as cli_console
from semcollab.cli.ctr import ctr_rich_table
from semcollab.config import CONFIG_MAX_BYTES, ConfigError, RunConfig
from tests.conftest import write_atomic
from tests.tasks.test_ctr_cli import write_collm_folder
from tests.test_file_safety import Payload

runner = CliRunner()
RAW = ("\x1b", "\x07", "\u202e")  # ESC, BEL, RIGHT-TO-LEFT OVERRIDE: must never reach the terminal raw
HOSTILE = "[bold]B[/b] \x1b]0;x\x07 \u202eR\nL"  # markup, an OSC title sequence, a bidi override, a newline
SHOWN = "[bold]B[/b] \\x1b]0;x\\x07 \\u202eR\\nL"  # how it must print


@pytest.fixture
def wide(monkeypatch):
    """No wrapping of table cells or long lines: the output can be searched for whole values."""
    monkeypatch.setattr(cli_console, "_width", 400)


def _clean(r, code=0) -> str:
    assert r.exit_code == code, (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output and "MarkupError" not in r.output
    for c in RAW:
        assert c not in r.output, (c, r.output)
    return r.output


def _hostile_data(directory, n_items=12):
    d = write_atomic(directory, n_users=20, n_items=n_items, per_user=8)
    items = pd.read_csv(d / "toy.item", sep="\t", dtype=str)
    items.iloc[:, 1] = [f"{HOSTILE} {i}" for i in range(1, n_items + 1)]  # every title: any example shown is hostile
    items.to_csv(d / "toy.item", sep="\t", index=False)
    return d


# ------------------------------------------------------------------ 1. print data as data
def test_an_unknown_hostile_user_id_is_one_error_line_shown_as_data(tmp_path, wide):
    data = _hostile_data(tmp_path / "toy")
    out = tmp_path / "runs"
    r = runner.invoke(app, ["train", "--model", "pop", "--dataset", "atomic:toy", f"--data.path={data}",
                            "--train.progress=false", f"--output_dir={out}", "--data.user_k=1", "--data.item_k=1",
                            "--eval.ks=[5,10]"])
    _clean(r)
    (run,) = out.iterdir()
    r = runner.invoke(app, ["recommend", str(run), "--user", f"u{HOSTILE}", "--k", "3"])
    text = _clean(r, 2)
    assert text.startswith("error:") and f"u{SHOWN}" in text  # the id quoted literally: markup and escapes visible
    # an error quoting a path as it is (not repr'd as the unknown id is): one line, shown as data
    r = runner.invoke(app, ["recommend", str(run) + HOSTILE, "--user", "1"])
    text = _clean(r, 2)
    assert text.startswith("error:") and f"{run}{SHOWN} is not a folder" in text and text.count("\n") == 1


def test_train_log_lines_and_table_show_a_hostile_folder_name_as_data(tmp_path, wide):
    """Log lines (data preparation, the run folder) and the results table carry paths and names."""
    folder = tmp_path / f"data {HOSTILE}"
    data = _hostile_data(folder / "toy")
    out = tmp_path / f"runs {HOSTILE}"
    r = runner.invoke(app, ["train", "--model", "pop", "--dataset", "atomic:toy", f"--data.path={data}",
                            "--train.progress=false", f"--output_dir={out}", "--data.user_k=1", "--data.item_k=1",
                            "--eval.ks=[5,10]"])
    text = _clean(r)
    assert f"run saved to {tmp_path}/runs {SHOWN}/" in text
    r = runner.invoke(app, ["data", "prepare", "atomic:toy", f"--data.path={data}",
                            f"--data.cache_dir={tmp_path / f'cache {HOSTILE}'}"])
    _clean(r)


def test_intents_table_shows_labels_and_item_texts_as_data(tmp_path, tiny_bert, wide):
    data = _hostile_data(tmp_path / "toy")
    r = runner.invoke(app, ["intents", "--dataset", "atomic:toy", f"--data.path={data}", "--encoder", str(tiny_bert),
                            "--sae.steps=5", "--sae.expansion=2", "--sae.k=4", "--sae.aux_k=8", "--top", "3",
                            "--out", str(tmp_path / "o")])
    text = _clean(r)
    assert "[bold]B[/b] \\x1b]0;x\\x07" in text  # an example item text, cut at 60 characters


def test_result_tables_show_titles_and_run_names_as_data():
    from semcollab.report.table import rich_table

    res = {"overall": {"hr@10": 0.5}}
    console = Console(width=400, record=True, color_system=None)
    console.print(rich_table({f"pop {HOSTILE}": res}, title=f"{HOSTILE} test"))
    ctr = {g: {"auc": 0.5} for g in ("all", "warm", "cold")}
    console.print(ctr_rich_table({f"mf {HOSTILE}": ctr}, f"{HOSTILE} (CTR)"))
    text = console.export_text()
    assert text.count(SHOWN) == 4, text
    assert not any(c in text for c in RAW)


# ------------------------------------------------------------------ 2. --empty-text for embed and intents
def _with_empty_titles(directory, empty=(2, 5)):
    d = write_atomic(directory)
    items = pd.read_csv(d / "toy.item", sep="\t", dtype=str, keep_default_na=False)
    items.iloc[[i - 1 for i in empty], 1] = ""
    items.to_csv(d / "toy.item", sep="\t", index=False)
    return d


def test_embed_empty_text_choices(tmp_path, tiny_bert):
    data = _with_empty_titles(tmp_path / "toy")
    base = ["embed", "--dataset", "atomic:toy", f"--data.path={data}", "--encoder", str(tiny_bert),
            "--template", "{title}"]
    r = runner.invoke(app, [*base, "--empty-text", "refuse", "--out", str(tmp_path / "r")])
    text = " ".join(_clean(r, 2).split())
    assert re.search(r"toy: 2 of \d+ items have an empty text.*empty_text=refuse", text), text
    assert not (tmp_path / "r").exists()
    for choice in ("skip", "template"):
        r = runner.invoke(app, [*base, "--empty-text", choice, "--out", str(tmp_path / choice)])
        _clean(r)
        stats = json.loads((tmp_path / choice / "toy" / "embed_stats.json").read_text())
        assert stats["empty_texts"] == 2 and stats["empty_text"] == choice
    rows = [json.loads(x) for x in (tmp_path / "template" / "toy" / "item_texts.jsonl").read_text().splitlines()]
    empty = [r for r in rows if r["text"] == ""]
    assert len(empty) == 2 and all(r["encoded_text"].startswith("genres: ") for r in empty)  # the fallback text
    skip = np.load(tmp_path / "skip" / "toy" / "item_embeddings.npy")
    idx = [r["index"] for r in empty]
    assert not skip[idx].any() and skip[[i for i in range(1, len(skip)) if i not in idx]].any(-1).all()  # no text vector
    r = runner.invoke(app, [*base, "--empty-text", "drop"])
    assert r.exit_code == 2 and "drop" in r.output


def test_intents_empty_text_refuse_and_skip(tmp_path, tiny_bert):
    data = _with_empty_titles(tmp_path / "toy")
    base = ["intents", "--dataset", "atomic:toy", f"--data.path={data}", "--encoder", str(tiny_bert),
            "--template", "{title}", "--sae.steps=5", "--out", str(tmp_path / "o")]
    text = " ".join(_clean(runner.invoke(app, [*base, "--empty-text", "refuse"]), 2).split())
    assert re.search(r"toy: 2 of \d+ items have an empty text.*empty_text=refuse", text), text
    text = " ".join(_clean(runner.invoke(app, [*base, "--empty-text", "skip"]), 2).split())
    assert "--empty-text skip is not supported by intents" in text


# ------------------------------------------------------------------ 3. a saved CTR run cannot opt in to pickles
def test_ctr_evaluate_ignores_the_allow_pickle_a_run_folder_records(tmp_path):
    data = write_collm_folder(tmp_path / "collm")
    out = tmp_path / "runs"
    r = runner.invoke(app, ["ctr", "train", "--model", "mf", f"--data.path={data}", "--data.allow_pickle=true",
                            "--train.epochs=1", "--train.progress=false", f"--output_dir={out}",
                            "--model_params.dim=8"])
    assert r.exit_code == 0, r.output
    (run,) = out.iterdir()
    assert "allow_pickle: true" in (run / "config.yaml").read_text()
    # the user's own opt-in, given now, still works
    r = runner.invoke(app, ["ctr", "evaluate", str(run), "--data.allow_pickle=true"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["ctr", "evaluate", "--data.allow_pickle=true", str(run)])
    assert r.exit_code == 0, r.output
    # a hostile run folder: its config points at a pickle payload and records the opt-in
    marker = tmp_path / "MARKER"
    for split in ("train", "valid", "test"):
        (data / f"{split}_ood2.pkl").write_bytes(pickle.dumps(Payload(marker)))
    r = runner.invoke(app, ["ctr", "evaluate", str(run)])
    assert not marker.exists(), "the recorded opt-in let a run folder unpickle its data"
    text = "".join(r.output.split())
    assert r.exit_code == 2 and f"CTRrun{run}".replace(" ", "") in text and "--data.allow_pickle=true" in text, r.output
    from semcollab.data import DataError
    from semcollab.tasks.ctr import load_ctr_run

    with pytest.raises(DataError, match="allow_pickle=True"):
        load_ctr_run(run)
    assert not marker.exists()
    r = runner.invoke(app, ["ctr", "evaluate", str(run), "--data.allow_pickle=maybe"])
    assert r.exit_code == 2 and "--data.allow_pickle=true|false" in r.output


# ------------------------------------------------------------------ 4. one dataset source in the Python API
def test_api_dataset_and_a_config_data_name_must_agree(tmp_path, toy_dir):
    from semcollab.tasks.ctr import run_ctr

    yml = tmp_path / "c.yaml"
    yml.write_text("data:\n  name: atomic:toy\n")
    for kw in ({"overrides": ["data.name=atomic:toy"]}, {"config": {"data": {"name": "atomic:toy"}}},
               {"config": str(yml)}):
        with pytest.raises(ConfigError, match=r"dataset= argument ml-100k and data\.name=atomic:toy"):
            semcollab.run(model="pop", dataset="ml-100k", save=False, log=None, **kw)
        with pytest.raises(ConfigError, match=r"dataset= argument collm-ml-1m and data\.name=atomic:toy"):
            run_ctr(model="mf", dataset="collm-ml-1m", save=False, log=None, **kw)
    # agreeing names, or a config object whose data.name is the default, are fine
    over = [f"data.path={toy_dir}", "train.progress=false"]
    res = semcollab.run(model="pop", dataset="atomic:toy", overrides=["data.name=atomic:toy", *over], save=False,
                        log=None)
    assert res.split.name == "toy"
    cfg = RunConfig()
    cfg.data.path = str(toy_dir)
    assert semcollab.run(model="pop", dataset="atomic:toy", config=cfg, save=False, log=None).split.name == "toy"


# ------------------------------------------------------------------ 5. saerec: sae.k above the SAE width
def test_saerec_sae_k_above_the_width_is_a_config_error_before_the_sae_trains(toy_dir, tiny_bert, monkeypatch):
    import semcollab.methods.saerec.sae as sae

    def no_training(*a, **kw):
        raise AssertionError("the SAE started training")

    monkeypatch.setattr(sae, "train_sae", no_training)
    with pytest.raises(ConfigError, match=r"'model_params\.sae\.k'.*model_params\.sae\.expansion 2 x text vector "
                                          r"dim 32 = 64\), got 65"):
        semcollab.run(model="saerec", dataset="atomic:toy", save=False, log=None,
                      overrides=[f"data.path={toy_dir}", f"model_params.encoder={tiny_bert}",
                                 "model_params.sae.k=65", "model_params.sae.expansion=2", "train.progress=false"])


# ------------------------------------------------------------------ 6. a run's config.yaml: FIFO, oversize
def _cli(*args, timeout=120):
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "semcollab", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("command", [["evaluate"], ["ctr", "evaluate"], ["recommend", "--user", "1"]])
def test_a_run_config_that_is_a_fifo_or_oversized_is_refused_without_blocking(tmp_path, command):
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "config.yaml")
    p = _cli(*command, run)  # blocked forever before (the FIFO has no writer): TimeoutExpired
    text = " ".join(p.stdout.split())
    assert p.returncode == 2 and "Traceback" not in p.stderr, (p.stdout, p.stderr)
    assert f"{run / 'config.yaml'} is not a regular file" in text
    (run / "config.yaml").unlink()
    (run / "config.yaml").write_text("model: pop\n#" + "x" * CONFIG_MAX_BYTES + "\n")
    p = _cli(*command, run)
    text = " ".join(p.stdout.split())
    assert p.returncode == 2 and f"more than the {CONFIG_MAX_BYTES}" in text, (p.stdout, p.stderr)


def test_read_run_config_names_a_symlink_loop_in_the_run_folder(tmp_path):
    from semcollab.errors import RunFileError
    from semcollab.tasks.ranking import read_run_config

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").symlink_to(run / "config.yaml")
    with pytest.raises(RunFileError, match="config.yaml cannot be read: Too many levels of symbolic links"):
        read_run_config(run)


def test_an_override_typed_before_the_run_folder_is_not_taken_for_the_folder(toy_dir, tmp_path):
    """Click hands an override given first to the required RUN argument: evaluate and recommend once tried to
    open a run folder named '--data.path=...'; ctr evaluate had its own copy of the repair."""
    runner = CliRunner()
    r = runner.invoke(app, ["train", "--model", "pop", "--dataset", "atomic:toy", f"--data.path={toy_dir}",
                            f"--output_dir={tmp_path}"])
    assert r.exit_code == 0, r.output
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir() and (p / "config.yaml").is_file()]
    r = runner.invoke(app, ["evaluate", f"--data.path={toy_dir}", str(run)])
    assert r.exit_code == 0 and "toy test (full)" in r.output, r.output
    r = runner.invoke(app, ["recommend", f"--data.path={toy_dir}", str(run), "--user", "1", "--k", "3"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["evaluate", f"--data.path={toy_dir}", str(run), str(run)])
    assert r.exit_code == 2 and "give one run folder" in r.output


def test_ctr_table_shows_a_run_without_warm_or_cold_rows_as_dashes():
    """A CTR metrics.json with only 'all' (no warm / cold split) once raised KeyError in the table."""
    t = ctr_rich_table({"mf": {"all": {"auc": 0.7, "uauc": 0.6, "logloss": 0.5}}}, "test")
    out = Console(width=200, record=True)
    out.print(t)
    text = out.export_text()
    assert "0.7000" in text and text.count("-") >= 4
