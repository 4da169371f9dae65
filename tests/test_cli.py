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


def test_cli_errors_are_clear(toy_dir):
    r = runner.invoke(app, ["train", "--model", "sasrec", "--dataset", "atomic:toy", f"--data.path={toy_dir}", "--train.epoch=1"])
    assert r.exit_code == 2 and "unknown config key" in r.output
    r = runner.invoke(app, ["data", "prepare", "nosuch"])
    assert r.exit_code == 2 and "unknown dataset" in r.output


def test_data_prepare(toy_dir):
    r = runner.invoke(app, ["data", "prepare", "atomic:toy", f"--data.path={toy_dir}"])
    assert r.exit_code == 0, r.output
    assert '"users": 30' in r.output
