"""Tiny trained runs shared by tests/test_report_html.py and tests/test_table_mixed.py (module fixtures)."""

import shutil
from pathlib import Path

from typer.testing import CliRunner

from semcollab.cli import app
from tests.conftest import write_atomic
from tests.tasks.test_ctr_cli import write_collm_folder

runner = CliRunner()


def _train(args: list[str], out: Path) -> Path:
    before = set(out.iterdir()) if out.exists() else set()
    r = runner.invoke(app, [*args, "--train.progress=false", f"--output_dir={out}"])
    assert r.exit_code == 0, r.output
    (new,) = set(out.iterdir()) - before
    return new


def make_runs(base: Path) -> dict[str, Path]:
    """Two seeds of gru4rec + pop on atomic:toy, pop on atomic:other, an mf CTR run (runs/ctr, as users keep them)."""
    toy = write_atomic(base / "toy")
    other = write_atomic(base / "src-other", seed=1)
    (base / "other").mkdir()
    for ext in ("inter", "item"):
        shutil.copy(other / f"toy.{ext}", base / "other" / f"other.{ext}")
    collm = write_collm_folder(base / "collm", n_items=30)
    runs = base / "runs"
    toy_args = ["train", "--dataset", "atomic:toy", f"--data.path={toy}"]
    out = {f"gru{s}": _train([*toy_args, "--model", "gru4rec", "--train.epochs=3", f"--train.seed={s}",
                              "--model_params.hidden=16"], runs) for s in (1, 2)}
    out["pop"] = _train([*toy_args, "--model", "pop"], runs)
    out["other"] = _train(["train", "--dataset", "atomic:other", f"--data.path={base / 'other'}", "--model", "pop"],
                          runs)
    out["ctr"] = _train(["ctr", "train", "--model", "mf", f"--data.path={collm}", "--data.allow_pickle=true",
                         "--train.epochs=3", "--model_params.dim=8"], runs / "ctr")
    return out
