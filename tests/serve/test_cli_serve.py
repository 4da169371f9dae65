"""`semcollab serve` command line: the missing extra, bad run folders, options (no server is started)."""

import importlib.util

from typer.testing import CliRunner

from semcollab.cli import app

runner = CliRunner()


def test_missing_serve_extra_says_what_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    r = runner.invoke(app, ["serve", str(tmp_path)])
    assert r.exit_code == 2 and 'pip install -e ".[serve]"' in " ".join(r.output.split()) and "Traceback" not in r.output


def test_bad_run_folder_is_an_error_line(tmp_path):
    r = runner.invoke(app, ["serve", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "error:" in r.output and "not a folder" in " ".join(r.output.split())
    r = runner.invoke(app, ["serve", str(tmp_path), "--workers", "2"])
    assert r.exit_code == 2 and "--workers" in r.output
    r = runner.invoke(app, ["serve", "--help"])
    assert r.exit_code == 0 and "127.0.0.1" in r.output
