"""Bad input at the command line ends in one clear message (exit code 2), never a traceback."""

import json

import pytest
from typer.testing import CliRunner

from semcollab.cli import app

runner = CliRunner()


@pytest.fixture
def trained(toy_dir, tmp_path):
    """Two finished runs (SASRec, GRU4Rec) on the toy data."""
    out = tmp_path / "runs"
    for model in ("sasrec", "gru4rec"):
        r = runner.invoke(app, ["train", "--model", model, "--dataset", "atomic:toy", f"--data.path={toy_dir}",
                                "--train.epochs=1", "--train.progress=false", f"--output_dir={out}",
                                "--model_params.hidden=16", "--model_params.layers=1"])
        assert r.exit_code == 0, r.output
    return sorted(out.iterdir(), key=lambda d: "gru4rec" in d.name)


def _fails(args, *needles):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output
    text = " ".join(r.output.split())  # rich wraps long lines
    for n in needles:
        assert n in text, (n, r.output)
    return text


def test_bad_sizes_fail_before_data_is_read(tmp_path):
    _fails(["train", "--dataset", "table", f"--data.path={tmp_path / 'none.csv'}", "--model_params.max_len=0"],
           "model_params.max_len", ">= 1")
    _fails(["train", "--dataset", "table", f"--data.path={tmp_path / 'none.csv'}", "--train.batch_size=-5"],
           "train.batch_size")


def test_damaged_run_files_are_named(trained):
    run, other = trained
    (run / "model.safetensors").write_bytes(b"\x00junk")
    _fails(["evaluate", run], "model.safetensors", "not a readable safetensors file")
    (other / "config.yaml").write_text("model: [unclosed")
    _fails(["evaluate", other], "config.yaml", "not valid YAML")
    (other / "config.yaml").write_bytes(b"\xff\xfe\x00binary")
    _fails(["evaluate", other], "config.yaml")
    (run / "metrics.json").write_text('{"test": ')
    _fails(["table", run], "metrics.json", "not valid JSON")
    _fails(["evaluate", run / "metrics.json"], "is not a folder")


def test_k_out_of_range_and_zero(trained):
    run, other = trained
    _fails(["recommend", run, "--user", "3", "--k", "0"], "--k must be at least 1")
    _fails(["recommend", run, "--user", "3", "--k", "-2"], "--k must be at least 1")
    _fails(["recommend", run, "--user", "3", "--k", "100000"], "between 1 and the catalogue size")
    _fails(["diagnose", run, other, "--k", "-1", "--no-probes"], "--k must be between 1")
    _fails(["diagnose", run, other, "--k", "100000", "--no-probes"], "catalogue size")
    _fails(["evaluate", run, "--eval.ks=[100000]"], "has only")
    _fails(["evaluate", run, "--eval.ks=[0]"], "eval.ks")
    _fails(["evaluate", run, "--train.epochs=3"], "only eval.* overrides")


def test_unknown_user_message_keeps_its_example_ids(trained):
    out = _fails(["recommend", trained[0], "--user", "nobody"], "unknown user id 'nobody'")
    assert "e.g. [" in out and "'1'" in out


def test_diagnose_refuses_a_run_against_itself(trained):
    _fails(["diagnose", trained[0], trained[0]], "same run")


def test_diagnose_refuses_runs_trained_on_different_contents_of_one_path(trained, toy_dir, tmp_path):
    run = trained[0]
    inter = toy_dir / "toy.inter"
    inter.write_text("\n".join(inter.read_text().splitlines()[:-1]) + "\n")
    r = runner.invoke(app, ["train", "--model", "gru4rec", "--dataset", "atomic:toy", f"--data.path={toy_dir}",
                            "--train.epochs=1", "--train.progress=false", f"--output_dir={tmp_path / 'later'}"])
    assert r.exit_code == 0, r.output
    (later,) = (tmp_path / "later").iterdir()
    _fails(["diagnose", run, later], "different data")
    _fails(["evaluate", run], "has changed since it was trained", "--allow-data-change")
    r = runner.invoke(app, ["evaluate", str(run), "--allow-data-change"])
    assert r.exit_code == 0, r.output


def test_sampled_evaluation_says_when_negatives_were_capped(trained):
    r = runner.invoke(app, ["evaluate", str(trained[0]), "--eval.protocol=sampled", "--eval.n_negatives=1000"])
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output and "fewer than 1000" in r.output
    res = json.loads(r.output[r.output.index("{"):])
    assert res["negatives_capped"]["users"] > 0


def test_unwritable_output_dir_is_reported_before_training(toy_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _fails(["train", "--model", "pop", "--dataset", "atomic:toy", f"--data.path={toy_dir}",
            f"--output_dir={blocker / 'runs'}"], "output_dir", "not writable")
