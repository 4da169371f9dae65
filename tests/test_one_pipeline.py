"""One pipeline for every task: ``semcollab.run`` / ``load_run`` / ``evaluate`` / ``recommend`` on ranking, CTR and
item-table runs, and an LM-CTR model added from outside the package (one file, one decorator) that runs through the
API, the CLI and ``load_run``."""

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import semcollab
from semcollab import registry
from semcollab.config import ConfigError
from semcollab.pipeline import choose_task
from semcollab.tasks import load_task_config
from semcollab.tasks.base import Run
from tests.tasks.test_ctr_cli import write_collm_folder

SRC = Path(semcollab.__file__).resolve().parents[1]

PLUGIN = '''"""A toy LM-CTR model, written outside semcollab: a config dataclass, a class and its decorator."""
from dataclasses import dataclass

from semcollab import register
from semcollab.methods.lm_ctr.base import LMCTRConfig, LMCTRModel
from semcollab.methods.lm_ctr.tallrec import TALLRec


@dataclass
class ToyConfig(LMCTRConfig):
    pass


@register("toy", task="ctr", config=ToyConfig)
class Toy(LMCTRModel):
    template = TALLRec.template  # scored with TALLRec's prompt; trained by LMCTRModel's default schedule
'''

LM_PARAMS = ["model_params.batch_size=16", "model_params.score_batch_size=32", "model_params.max_length=64",
             "model_params.lm_lr=1e-3", "model_params.lora_rank=2", "model_params.checkpoint_every=0"]


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    """The plugin module on sys.path and imported (as SEMCOLLAB_PLUGINS would), unregistered afterwards."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "toy_ctr_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("toy_ctr_plugin", None)
    module = importlib.import_module("toy_ctr_plugin")
    yield folder, module
    registry._models.pop(("ctr", "toy"), None)
    sys.modules.pop("toy_ctr_plugin", None)


def test_import_is_cheap_and_names_the_api():
    code = "import sys, semcollab; assert 'torch' not in sys.modules, 'torch imported'; print(sorted(semcollab.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ,
                         "PYTHONPATH": str(SRC)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert {"run", "evaluate", "recommend", "load_run", "list_models", "register"} <= set(ast.literal_eval(out.stdout))
    assert callable(semcollab.evaluate)  # the function (the metrics live in semcollab.evaluation)
    import semcollab.evaluation.metrics as metrics

    assert metrics.auc is not None and callable(semcollab.evaluate)


def test_task_is_chosen_once_and_recorded():
    assert choose_task(None, "sasrec") == "ranking" and choose_task(None, "mf") == "ranking"  # mf: MF-BPR as always
    assert choose_task("ctr", "mf") == "ctr" and choose_task(None, "tallrec") == "ctr"
    assert choose_task(None, "reaemb") == "item-table"
    assert choose_task(None, None, {"task": "ctr", "model": "mf"}) == "ctr"
    assert choose_task(None, None, None, ["model=sasrec-ctr"]) == "ctr"
    assert choose_task(None, None, {"stage1": {"max_steps": 3}}) == "item-table"
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        choose_task(None, "nope")
    with pytest.raises(ConfigError, match="task"):
        choose_task("clustering", "sasrec")
    # one entry for every schema; a saved config without `task` (written before it was recorded) infers it
    assert load_task_config({"model": "mf", "data": {"history_len": 5}})[0] == "ctr"
    task, cfg = load_task_config({"model": "sasrec", "eval": {"ks": [5, 10]}, "train": {"metric": "ndcg@5"}})
    assert task == "ranking" and cfg.task == "ranking" and cfg.eval.ks == [5, 10]
    task, cfg = load_task_config(None, ["dataset=s3rec:Toy", "stage1.max_steps=2"])
    assert task == "item-table" and cfg.stage1.max_steps == 2 and cfg.data.name == "s3rec:Toy"
    with pytest.raises(ConfigError, match="'task' is 'ctr', but a ranking config"):
        load_task_config({"task": "ctr", "model": "sasrec", "eval": {"ks": [10]}}, task="ranking")
    assert {"sasrec", "mf", "tallrec", "sailrec", "reaemb"} <= set(semcollab.list_models())
    assert "sasrec" not in semcollab.list_models("ctr") and "mf" in semcollab.list_models("ctr")


def test_toy_lm_ctr_plugin_through_run_cli_and_load_run(tmp_path, tiny_yes_no_lm, toy_plugin):
    folder, plugin = toy_plugin
    data = write_collm_folder(tmp_path / "collm", rows=(64, 24, 24))
    common = [f"data.path={data}", "data.allow_pickle=true", "train.progress=false", f"model_params.lm={tiny_yes_no_lm}",
              *LM_PARAMS]
    res = semcollab.run(model="toy", overrides=[*common, f"output_dir={tmp_path / 'api'}"], log=None)
    assert res.task == "ctr" and isinstance(res.model, plugin.Toy)
    assert set(res.metrics) == {"valid", "test"} and res.test["all"]["auc"] is not None
    assert yaml.safe_load((res.run_dir / "config.yaml").read_text())["task"] == "ctr"
    assert set(json.loads((res.run_dir / "run.json").read_text())["fit"]["stages"]) == {"step1-lora"}

    # the CLI finds the plugin through SEMCOLLAB_PLUGINS, in a fresh process
    env = {**os.environ, "SEMCOLLAB_PLUGINS": "toy_ctr_plugin",
           "PYTHONPATH": os.pathsep.join([str(folder), str(SRC), os.environ.get("PYTHONPATH", "")])}
    cli_out = tmp_path / "cli"
    out = subprocess.run([sys.executable, "-m", "semcollab", "ctr", "train", "--model", "toy",
                          *[f"--{a}" for a in common], f"--output_dir={cli_out}"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (cli_run,) = cli_out.iterdir()
    cli_metrics = json.loads((cli_run / "metrics.json").read_text())
    assert cli_metrics["test"]["all"]["auc"] == pytest.approx(res.test["all"]["auc"], abs=1e-6)  # same seed

    run = semcollab.load_run(cli_run, allow_pickle=True)
    assert isinstance(run, Run) and run.task == "ctr" and isinstance(run.model, plugin.Toy)
    assert run.config.model == "toy" and run.metrics == cli_metrics
    _check_ctr_scores(run)


def _check_ctr_scores(run):
    """``score`` is P(like) given the user's most recent row's history: for that row it is what evaluation
    predicted; ``recommend`` ranks every item by it, the user's rows left out."""
    from semcollab.evaluation.ctr import predict

    part = run.split.parts["test"]
    row = len(part) - 1
    user, item = run.split.user_vocab.decode(part.users[row]), run.split.item_vocab.decode(part.items[row])
    expected = predict(run.model, part.take(np.asarray([row])))[0]
    (got,) = run.score(user, [item])
    assert got == pytest.approx(expected, abs=1e-5) and 0 < got < 1
    assert run.score(user).shape == (run.split.n_items,)
    # the tiny data's users have rated most of its 15 items: recommend to the one with the most left
    users = [str(u) for u in run.split.user_vocab.ids]
    user = min(users, key=lambda u: len(run.seen(u)))
    seen = {run.split.item_vocab.decode(i) for i in run.seen(user)}
    k = min(3, run.split.n_items - len(seen))
    assert k >= 1
    top = run.recommend(user, k)
    assert len(top) == k and not seen & {i for i, _ in top}
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    unseen = [s for i, s in zip(run.item_ids, run.score(user)) if i not in seen]
    assert top[0][1] == pytest.approx(max(unseen))
    assert len(run.recommend(user, k, exclude_seen=False)) == k


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory):
    """A tiny SASRec run and a tiny CTR MF run, trained once (as tests/serve does)."""
    from tests.serve.conftest import train_ctr_mf, train_sasrec

    base = tmp_path_factory.mktemp("one-pipeline")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMCOLLAB_CACHE", str(tmp_path_factory.mktemp("one-pipeline-cache")))
        yield {"ranking": train_sasrec(base), "ctr": train_ctr_mf(base)}


def test_load_run_ranking(saved_runs):
    from semcollab.methods.saerec.explain import explain_recommendations

    path = saved_runs["ranking"]
    run = semcollab.load_run(path)
    assert isinstance(run, Run) and run.task == "ranking" and run.config.model == "sasrec"
    assert run.metrics == json.loads((path / "metrics.json").read_text())
    user = run.split.user_vocab.decode(3)
    # what `semcollab recommend` shows for the user (history masked)
    want = explain_recommendations(run.model, run.split, user, 5)["recommendations"]
    got = semcollab.recommend(path, user, 5)
    assert [i for i, _ in got] == [r["item"] for r in want]
    assert [s for _, s in got] == pytest.approx([r["score"] for r in want], abs=1e-5)
    scores = run.score(user)
    assert scores.shape == (run.split.n_items,)
    assert run.score(user, [got[0][0]])[0] == pytest.approx(got[0][1], abs=1e-5)
    again = semcollab.evaluate(path, "test")
    assert again["overall"] == pytest.approx(run.metrics["test"]["overall"])


def test_load_run_ctr_and_runs_written_before_task_was_recorded(saved_runs, tmp_path):
    import shutil

    run = semcollab.load_run(saved_runs["ctr"], allow_pickle=True)
    assert run.task == "ctr" and run.config.model == "mf"
    _check_ctr_scores(run)
    assert semcollab.evaluate(saved_runs["ctr"], "test", allow_pickle=True)["all"]["auc"] == \
        pytest.approx(run.metrics["test"]["all"]["auc"])
    # config.yaml without `task` (today's runs): ranking by its keys, CTR by run.json's task
    for task, path in saved_runs.items():
        old = tmp_path / task
        shutil.copytree(path, old)
        cfg = yaml.safe_load((old / "config.yaml").read_text())
        del cfg["task"]
        (old / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        loaded = semcollab.load_run(old, allow_pickle=True)
        assert loaded.task == task and loaded.config.task == task


def test_item_table_run_through_run_and_load_run(tmp_path, tiny_causal_lm):
    from tests.methods.reaemb.test_pipeline import base_overrides, write_toy_s3rec

    data = write_toy_s3rec(tmp_path / "data")
    ov = [o for o in base_overrides(data, tiny_causal_lm, tmp_path / "reaemb") if not o.startswith("dataset=")]
    res = semcollab.run(model="reaemb", dataset="s3rec:Toy", overrides=ov, log=None)
    assert res.task == "item-table" and res.fit.stages["stage2"]["steps"] == 2
    assert res.metrics["stage2"]["finished"] and res.config.dataset == "s3rec:Toy"

    run = semcollab.load_run(res.run_dir)
    assert isinstance(run, Run) and run.task == "item-table" and run.stage == "stage2"
    table = run.item_table()
    assert table.shape == (run.split.n_items + 1, 32) and not table[0].any()
    user = run.split.user_vocab.decode(0)
    hist = run.seen(user)
    # nearest items to the mean of the user's history vectors (cosine), history and items without text left out
    unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    query = table[hist[np.abs(table[hist]).sum(1) > 0]].mean(0)
    sims = unit @ (query / np.linalg.norm(query))
    sims[0] = -np.inf
    sims[hist] = -np.inf
    sims[np.abs(table).sum(1) == 0] = -np.inf
    want = [run.split.item_vocab.decode(i) for i in np.argsort(-sims, kind="stable")[:3]]
    got = semcollab.recommend(res.run_dir, user, 3)
    assert [i for i, _ in got] == want
    assert [s for _, s in got] == pytest.approx(sorted(sims, reverse=True)[:3], abs=1e-6)
    with pytest.raises(ConfigError, match="item-table run"):
        semcollab.evaluate(res.run_dir)
