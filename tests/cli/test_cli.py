import json

from typer.testing import CliRunner

from semcollab.cli import app

runner = CliRunner()


def test_train_then_evaluate_saved_run(toy_dir, tmp_path):
    out = tmp_path / "runs"
    r = runner.invoke(app, ["train", "--model", "gru4rec", "--dataset", "atomic:toy", f"--data.path={toy_dir}",
                            "--train.epochs=2", "--train.progress=false", f"--output_dir={out}"])
    assert r.exit_code == 0, r.output
    (run_dir,) = list(out.iterdir())
    meta = json.loads((run_dir / "run.json").read_text())
    assert {"seed", "git", "versions", "hardware"} <= set(meta)
    assert "torch" in meta["versions"]
    assert (run_dir / "config.yaml").exists() and (run_dir / "model.safetensors").exists()
    saved = json.loads((run_dir / "metrics.json").read_text())
    r = runner.invoke(app, ["evaluate", str(run_dir)])
    assert r.exit_code == 0, r.output
    tail = r.output[r.output.index("{"):]
    assert json.loads(tail)["overall"]["ndcg@10"] == saved["test"]["overall"]["ndcg@10"]
    r = runner.invoke(app, ["evaluate", str(run_dir), "--eval.protocol=sampled", "--eval.n_negatives=5"])
    assert r.exit_code == 0 and "sampled-uniform-5" in r.output
    # weights that no longer fit the model (an older version's run) get a message naming the tensors
    from safetensors.torch import load_file, save_file

    state = load_file(str(run_dir / "model.safetensors"))
    state["item_emb.weight"] = state["item_emb.weight"][:, :3].contiguous()
    save_file(state, str(run_dir / "model.safetensors"))
    r = runner.invoke(app, ["evaluate", str(run_dir)])
    assert r.exit_code != 0 and "does not fit" in r.output and "item_emb.weight" in r.output


def test_cli_errors_are_clear(toy_dir):
    r = runner.invoke(app, ["train", "--model", "sasrec", "--dataset", "atomic:toy", f"--data.path={toy_dir}", "--train.epoch=1"])
    assert r.exit_code == 2 and "unknown config key" in r.output
    r = runner.invoke(app, ["data", "prepare", "nosuch"])
    assert r.exit_code == 2 and "unknown dataset" in r.output


def test_data_prepare(toy_dir):
    r = runner.invoke(app, ["data", "prepare", "atomic:toy", f"--data.path={toy_dir}"])
    assert r.exit_code == 0, r.output
    assert '"users": 30' in r.output


def test_saerec_train_intents_and_explained_recommendation(toy_dir, tiny_bert, tmp_path):
    out = tmp_path / "runs"
    common = [f"--data.path={toy_dir}"]
    r = runner.invoke(app, ["train", "--model", "saerec", "--dataset", "atomic:toy", *common, "--train.epochs=2",
                            "--train.progress=false", f"--output_dir={out}", f"--model_params.encoder={tiny_bert}",
                            "--model_params.sae.steps=30", "--model_params.sae.expansion=2", "--model_params.sae.k=3",
                            "--model_params.hidden=16", "--model_params.layers=1"])
    assert r.exit_code == 0, r.output
    (run_dir,) = list(out.iterdir())
    r = runner.invoke(app, ["recommend", str(run_dir), "--user", "3", "--k", "3", "--explain"])
    assert r.exit_code == 0, r.output
    assert "gate: sequence" in r.output and "intent #" in r.output
    r = runner.invoke(app, ["recommend", str(run_dir), "--user", "nobody"])
    assert r.exit_code == 2 and "unknown user id 'nobody'" in r.output
    r = runner.invoke(app, ["branch-stats", str(run_dir), "--max-users", "0", "--out", str(tmp_path / "bs.json")])
    assert r.exit_code == 0, r.output
    (stats,) = json.loads((tmp_path / "bs.json").read_text())
    assert stats["users"] == 30 and 0 <= stats["weight_personal_mean"] <= 1 and stats["fusion"] == "gate"
    r = runner.invoke(app, ["intents", "--dataset", "atomic:toy", *common, "--encoder", str(tiny_bert),
                            "--sae.steps=30", "--sae.expansion=2", "--sae.k=3", "--out", str(tmp_path / "lib")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "lib" / "toy" / "intents.json").exists()
    assert "explained_variance" in r.output
    # LM names from a saved library of the same SAE show beside the TF-IDF labels (the LM itself: test_lm_labels)
    lib_file = tmp_path / "lib" / "toy" / "intents.json"
    recs = json.loads(lib_file.read_text())
    lib_file.write_text(json.dumps([{**r, "lm_label": f"theme {r['latent']}"} for r in recs]))
    r = runner.invoke(app, ["recommend", str(run_dir), "--user", "3", "--k", "3", "--explain", "--intents", str(lib_file)])
    assert r.exit_code == 0, r.output
    assert "(LM: theme " in r.output
    recs[0]["label"] = "not this SAE"
    lib_file.write_text(json.dumps(recs))
    r = runner.invoke(app, ["recommend", str(run_dir), "--user", "3", "--explain", "--intents", str(lib_file)])
    assert r.exit_code == 2 and "different SAE" in r.output
    lib_file.write_text("{not json")
    r = runner.invoke(app, ["recommend", str(run_dir), "--user", "3", "--explain", "--intents", str(lib_file)])
    assert r.exit_code == 2 and "is not an intents.json" in r.output


def test_intents_judge_writes_keep_flags(toy_dir, tiny_bert, tiny_yes_no_lm, tmp_path):
    r = runner.invoke(app, ["intents", "--dataset", "atomic:toy", f"--data.path={toy_dir}", "--encoder", str(tiny_bert),
                            "--sae.steps=30", "--sae.expansion=2", "--sae.k=3", "--out", str(tmp_path / "lib"),
                            "--judge", str(tiny_yes_no_lm), "--judge-top", "4"])
    assert r.exit_code == 0, r.output
    assert "judged intents kept" in r.output
    recs = json.loads((tmp_path / "lib" / "toy" / "intents.json").read_text())
    judged = [x for x in recs if "keep" in x]
    assert len(judged) == 4 and all(isinstance(x["keep"], bool) for x in judged)


def test_explain_refused_for_models_without_intents(toy_dir, tmp_path):
    out = tmp_path / "runs"
    r = runner.invoke(app, ["train", "--model", "pop", "--dataset", "atomic:toy", f"--data.path={toy_dir}",
                            f"--output_dir={out}"])
    assert r.exit_code == 0, r.output
    (run_dir,) = list(out.iterdir())
    r = runner.invoke(app, ["recommend", str(run_dir), "--user", "3", "--explain"])
    assert r.exit_code != 0 and "intent model" in r.output


def test_table_labels_variants_and_refuses_unfinished_runs(toy_dir, tmp_path):
    out = tmp_path / "runs"
    for hidden in (8, 16):
        r = runner.invoke(app, ["train", "--model", "gru4rec", "--dataset", "atomic:toy", f"--data.path={toy_dir}",
                                "--train.epochs=1", "--train.progress=false", f"--output_dir={out}",
                                f"--model_params.hidden={hidden}", "--save_model=false"])
        assert r.exit_code == 0, r.output
    md = tmp_path / "t.md"
    r = runner.invoke(app, ["table", *map(str, sorted(out.iterdir())), "--out", str(md)])
    assert r.exit_code == 0, r.output
    rows = [line for line in md.read_text().splitlines() if line.startswith("| gru4rec")]
    assert len(rows) == 2 and rows[0] != rows[1]
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["table", str(tmp_path / "empty")])
    assert r.exit_code != 0 and "metrics.json is missing" in r.output
