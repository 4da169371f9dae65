"""Issue 29, the CLI's layout: every command a thin call of the API (``evaluate_run``, ``build_intents`` give what
the commands print), one error base caught by the CLI, help texts generated from what the code knows."""

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import semcollab.cli
import semcollab.cli.ranking
import semcollab.errors
from semcollab.cli import app
from semcollab.config import EvalConfig, from_dict, to_dict
from semcollab.errors import SemcollabError
from semcollab.evaluation.ranking import evaluate_ranking
from semcollab.methods.saerec.pipeline import build_intents
from semcollab.models import REGISTRY
from semcollab.registry import list_models
from semcollab.tasks.ranking import load_ranking_run
from semcollab.tasks.ranking_eval import evaluate_run

runner = CliRunner()
WIDE = {"env": {"COLUMNS": "400", "TERM": "dumb"}, "terminal_width": 400}  # no wrapping: one line per option
REPO = Path(__file__).resolve().parents[2]


def _option_line(args, option):
    r = runner.invoke(app, [*args, "--help"], **WIDE)
    assert r.exit_code == 0, r.output
    (line,) = [ln for ln in r.output.splitlines() if f" {option} " in ln]
    return line


@pytest.mark.parametrize("args,option,names", [(["train"], "--model", REGISTRY), (["compare"], "--models", REGISTRY),
                                               (["ctr", "train"], "--model", list_models("ctr"))])
def test_model_help_names_every_registered_model(args, option, names):
    # was: "pop, mf-bpr, sasrec, gru4rec, bert4rec" for 8 ranking models
    line = _option_line(args, option)
    missing = [n for n in names if n not in line.replace(",", " ").split()]
    assert not missing, (missing, line)


def _command_paths(cmd, path=()):
    ctx = type(cmd).context_class(cmd) if hasattr(cmd, "context_class") else None
    for name in cmd.list_commands(ctx):
        sub = cmd.get_command(ctx, name)
        yield " ".join((*path, name))
        if hasattr(sub, "list_commands"):
            yield from _command_paths(sub, (*path, name))


def test_package_docstring_lists_every_command():
    import typer

    paths = list(_command_paths(typer.main.get_command(app)))
    assert len(paths) >= 25
    doc = " ".join(semcollab.cli.__doc__.split())
    assert [p for p in paths if p not in doc] == []


def test_every_error_class_derives_from_the_one_base():
    classes = [c for _, c in inspect.getmembers(semcollab.errors, inspect.isclass)
               if issubclass(c, Exception) and c.__module__ == "semcollab.errors"]
    assert len(classes) >= 16 and all(issubclass(c, SemcollabError) for c in classes)


class PluginError(SemcollabError):
    """An error class the CLI has never heard of: caught through its base."""


def test_a_semcollab_error_raised_in_a_command_is_one_error_line(monkeypatch):
    def boom(**_):
        raise PluginError("plugin model 'x' needs model_params.size")

    monkeypatch.setattr(semcollab.cli.ranking, "run", boom)
    r = runner.invoke(app, ["train", "--model", "pop"], **WIDE)
    assert r.exit_code == 2, (r.output, r.exception)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines == ["error: plugin model 'x' needs model_params.size"], r.output


def test_a_bug_keeps_its_traceback(monkeypatch):
    # a bare KeyError is a bug, not a user error: no longer turned into an `error:` line that hides where it came from
    def bug(**_):
        return {}["config"]

    monkeypatch.setattr(semcollab.cli.ranking, "run", bug)
    r = runner.invoke(app, ["train", "--model", "pop"])
    assert r.exit_code == 1 and isinstance(r.exception, KeyError), r.output


@pytest.fixture
def pop_run(toy_dir, tmp_path):
    out = tmp_path / "runs"
    r = runner.invoke(app, ["train", "--model", "pop", "--dataset", "atomic:toy", f"--data.path={toy_dir}",
                            "--train.progress=false", f"--output_dir={out}"])
    assert r.exit_code == 0, r.output
    (run_dir,) = list(out.iterdir())
    return run_dir


def _printed_json(output: str) -> dict:
    """The last JSON object a command printed (``console.print_json``), ignoring lines after it."""
    return json.JSONDecoder().raw_decode(output[output.rindex("\n{") + 1:])[0]


@pytest.mark.parametrize("overrides", [[], ["eval.protocol=sampled", "eval.n_negatives=7"]])
def test_evaluate_run_equals_the_command_and_the_inline_evaluation(pop_run, overrides):
    r = runner.invoke(app, ["evaluate", str(pop_run), *(f"--{o}" for o in overrides)], **WIDE)
    assert r.exit_code == 0, r.output
    from_cli = _printed_json(r.output)
    from_api = evaluate_run(pop_run, "test", overrides)
    # the body the command and experiments/reaemb_s3rec/evaluate_sampled.py had before: load, override eval.*, evaluate
    cfg, net, split = load_ranking_run(pop_run)
    ev = from_dict(EvalConfig, {**to_dict(cfg.eval), **dict(o[5:].split("=") for o in overrides)}, prefix="eval.")
    inline = evaluate_ranking(net, split.eval_set("test"), split.n_items, split.item_popularity(), ev, "cpu")
    assert from_api == from_cli == json.loads(json.dumps(inline))
    assert from_api["protocol"] == ("sampled-uniform-7" if overrides else "full")


def test_evaluate_run_refuses_what_the_command_refuses(pop_run):
    from semcollab.config import ConfigError

    with pytest.raises(ConfigError, match="only eval.* overrides"):
        evaluate_run(pop_run, "test", ["train.epochs=3"])
    with pytest.raises(ConfigError, match="stage must be valid or test"):
        evaluate_run(pop_run, "all")
    with pytest.raises(ConfigError, match=r"asks for @1000, but toy has only \d+ items"):
        evaluate_run(pop_run, "test", ["eval.ks=[10,1000]"])


def test_evaluate_sampled_script_calls_the_api(pop_run):
    r = subprocess.run([sys.executable, str(REPO / "experiments" / "reaemb_s3rec" / "evaluate_sampled.py"), str(pop_run), "--n", "9"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    written = json.loads((pop_run / "sampled-uniform-9.json").read_text())
    assert written == evaluate_run(pop_run, "test", ["eval.protocol=sampled", "eval.n_negatives=9"])


def test_build_intents_writes_what_the_command_writes(toy_dir, tiny_bert, tmp_path):
    common = [f"--data.path={toy_dir}", "--sae.steps=5", "--sae.expansion=2"]
    r = runner.invoke(app, ["intents", "--dataset", "atomic:toy", *common, "--encoder", str(tiny_bert),
                            "--out", str(tmp_path / "cli")], **WIDE)
    assert r.exit_code == 0, r.output
    res = build_intents("atomic:toy", encoder=str(tiny_bert), overrides=[c[2:] for c in common],
                        out=tmp_path / "api", log=None)
    assert res.out_dir == tmp_path / "api" / res.split.name
    for name in ("intents.json", "sae_quality.json"):
        assert (res.out_dir / name).read_bytes() == (tmp_path / "cli" / res.split.name / name).read_bytes()
    assert _printed_json(r.output) == res.quality
    with pytest.raises(SemcollabError, match="--empty-text skip is not supported"):
        build_intents("atomic:toy", encoder=str(tiny_bert), empty_text="skip", out=tmp_path / "x")
