"""`semcollab ctr train / evaluate / table` on a tiny CoLLM-format folder of pickles."""

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from semcollab.cli import app
from tests.conftest import Killed, kill_after

runner = CliRunner()


def write_collm_folder(directory, n_users=12, n_items=15, rows=(240, 60, 60), seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    t = 0
    train_items = set()
    for split, n in zip(("train", "valid", "test"), rows):
        recs = []
        for _ in range(n):
            u, i = int(rng.integers(1, n_users + 1)), int(rng.integers(1, n_items + 1))
            his = [0] * 3 + [int(x) for x in rng.integers(1, n_items + 1, 4)]
            recs.append({"uid": u, "iid": i, "label": int((u + i) % 2 == 0), "timestamp": t, "his": his,
                         "his_title": ["" if h == 0 else f"Film {h}" for h in his], "title": f"Film {i}",
                         "flag": 1.0, "not_cold": int(i in train_items or split == "train")})
            t += 1
            if split == "train":
                train_items.add(i)
        pd.DataFrame(recs).to_pickle(directory / f"{split}_ood2.pkl")
    return directory


def test_ctr_train_evaluate_table(tmp_path):
    data = write_collm_folder(tmp_path / "collm")
    out = tmp_path / "runs"
    r = runner.invoke(app, ["ctr", "train", "--model", "mf", f"--data.path={data}", "--data.allow_pickle=true",
                            "--train.epochs=3", "--train.progress=false", f"--output_dir={out}", "--model_params.dim=8"])
    assert r.exit_code == 0, r.output
    (run,) = out.iterdir()
    saved = json.loads((run / "metrics.json").read_text())
    assert {"all", "warm", "cold"} <= set(saved["test"])
    meta = json.loads((run / "run.json").read_text())
    assert meta["task"] == "ctr" and len(meta["data_fingerprint"]) == 64
    r = runner.invoke(app, ["ctr", "evaluate", str(run), "--data.allow_pickle=true"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output[r.output.index("{"):])
    assert res["all"]["auc"] == saved["test"]["all"]["auc"]
    md = tmp_path / "t.md"
    r = runner.invoke(app, ["ctr", "table", str(run), "--out", str(md)])
    assert r.exit_code == 0 and md.read_text().count("|") > 10
    r = runner.invoke(app, ["ctr", "train", "--model", "nosuch", f"--data.path={data}", "--data.allow_pickle=true"])
    assert r.exit_code == 2 and "unknown CTR model" in r.output
    r = runner.invoke(app, ["ctr", "train", "--model", "mf", f"--data.path={data}", "--data.allow_pickle=true",
                            "--data.history_len=0"])
    assert r.exit_code == 2 and "data.history_len" in r.output


def test_ctr_evaluate_on_the_subset_an_lm_run_uses(tmp_path):
    from semcollab.config.ctr import CTRDataConfig
    from semcollab.data.ctr import subsample_index
    from semcollab.tasks.ctr import evaluate_ctr_run, prepare_ctr

    data = write_collm_folder(tmp_path / "collm")
    out = tmp_path / "runs"
    r = runner.invoke(app, ["ctr", "train", "--model", "mf", f"--data.path={data}", "--data.allow_pickle=true",
                            "--train.epochs=2", "--train.progress=false", f"--output_dir={out}", "--model_params.dim=8"])
    assert r.exit_code == 0, r.output
    (run,) = out.iterdir()
    res = evaluate_ctr_run(run, max_rows=20, subsample_seed=3, allow_pickle=True)
    assert res["rows"]["scored"] == 20 and res["all"]["n"] == 20
    # exactly the rows that data.max_test_rows=20, data.subsample_seed=3 give an LM run
    from semcollab.config import DataConfig
    from semcollab.data import load_ctr

    raw = load_ctr(DataConfig(name="collm-ml-1m", path=str(data)), allow_pickle=True)
    lm_split = prepare_ctr(raw, CTRDataConfig().history_len, {"test": 20}, seed=3)
    full = prepare_ctr(raw, CTRDataConfig().history_len)
    idx = subsample_index(len(full.parts["test"]), 20, 3)
    assert (full.parts["test"].items[idx] == lm_split.parts["test"].items).all()
    r = runner.invoke(app, ["ctr", "evaluate", str(run), "--max-rows", "0", "--data.allow_pickle=true"])
    assert r.exit_code == 2 and "--max-rows" in r.output


def test_killed_ctr_run_resumes_from_output_dir(tmp_path):
    import pytest

    from semcollab.tasks.ctr import run_ctr

    data = write_collm_folder(tmp_path / "collm")
    over = [f"data.path={data}", "data.allow_pickle=true", "train.epochs=4", "train.progress=false",
            "train.checkpoint_minutes=0", "model_params.dim=8"]
    whole = run_ctr(model="mf", overrides=[*over, f"output_dir={tmp_path / 'whole'}"], log=None)
    out = tmp_path / "out"
    with pytest.raises(Killed):
        run_ctr(model="mf", overrides=[*over, f"output_dir={out}"], log=kill_after(2))
    assert len(list((out / ".resume").glob("mf-*.pt"))) == 1
    res = run_ctr(model="mf", overrides=[*over, f"output_dir={out}"], log=None)
    assert res.fit.resumed_from_epoch == 2 and res.test == whole.test and res.fit.history == whole.fit.history
    assert not (out / ".resume").exists()
