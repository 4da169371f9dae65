"""One data config file for a `table` dataset, given to every command (issue 30, section 3), and `recommend` on
data without titles."""

import csv
import random
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from semcollab.cli import app

runner = CliRunner()


def write_tiny_table(folder, n_users=40, n_items=30, per_user=8, with_items=True, seed=0):
    """events.csv (user_id, item_id, timestamp) and items.csv (item_id, title, description): the README's
    walkthrough columns. Every user and item clears the default 5-core."""
    rng = random.Random(seed)
    items = [f"i{j:02d}" for j in range(n_items)]
    with open(folder / "events.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp"])
        t = 1_700_000_000
        for u in range(n_users):
            for item in rng.sample(items, per_user):
                t += 1
                w.writerow([f"u{u}", item, t])
    if with_items:
        colours, rooms = ["red", "blue", "green"], ["kitchen", "garden"]
        with open(folder / "items.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["item_id", "title", "description"])
            for j, item in enumerate(items):
                w.writerow([item, f"Product {j}", f"A {colours[j % 3]} thing for the {rooms[j % 2]}"])


DATA_YAML = """data:
  name: table
  path: {path}
  meta_path: {meta}
  user_col: user_id
  item_col: item_id
  time_col: timestamp
"""


@pytest.fixture
def table_config(tmp_path):
    write_tiny_table(tmp_path)
    cfg = tmp_path / "mydata.yaml"
    cfg.write_text(DATA_YAML.format(path=tmp_path / "events.csv", meta=tmp_path / "items.csv")
                   + f"  cache_dir: {tmp_path / 'cache'}\n")
    return cfg


def _train(cfg, out, model="pop", *extra):
    r = runner.invoke(app, ["train", "--config", str(cfg), "--model", model, "--train.progress=false",
                            f"--output_dir={out}", *extra])
    assert r.exit_code == 0, r.output
    (run_dir,) = list(out.iterdir())
    return run_dir


def test_train_takes_the_dataset_from_the_config_file(table_config, tmp_path):
    # before: `train --config mydata.yaml` trained on ml-100k (--dataset defaulted to ml-100k over data.name)
    run_dir = _train(table_config, tmp_path / "runs")
    assert run_dir.name.endswith("-pop-table")
    cfg = (run_dir / "config.yaml").read_text()
    assert "name: table" in cfg and "user_col: user_id" in cfg


def test_evaluate_and_recommend_accept_the_same_config_file(table_config, tmp_path):
    run_dir = _train(table_config, tmp_path / "runs")
    r = runner.invoke(app, ["evaluate", str(run_dir), "--config", str(table_config)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["recommend", str(run_dir), "--user", "u1", "--k", "3", "--config", str(table_config)])
    assert r.exit_code == 0, r.output
    assert "Product" in r.output
    # a config whose data settings are not the run's is refused, naming the key and both values
    other = tmp_path / "other.yaml"
    other.write_text(table_config.read_text().replace("user_col: user_id", "user_col: uid"))
    r = runner.invoke(app, ["recommend", str(run_dir), "--user", "u1", "--config", str(other)])
    assert r.exit_code == 2 and "data.user_col" in r.output and "'uid'" in r.output and "'user_id'" in r.output
    # sections other than data: named in a warning, not silently dropped
    extra = tmp_path / "extra.yaml"
    extra.write_text(table_config.read_text() + "train:\n  epochs: 3\n")
    r = runner.invoke(app, ["evaluate", str(run_dir), "--config", str(extra)])
    assert r.exit_code == 0 and "['train'] not used" in r.output.replace("\n", " ")


def test_recommend_without_titles_shows_item_ids(tmp_path):
    # before: "user u1, recent history:  |  |  |  |" and recommendation lines without a name
    write_tiny_table(tmp_path, with_items=False)
    out = tmp_path / "runs"
    r = runner.invoke(app, ["train", "--dataset", "table", f"--data.path={tmp_path / 'events.csv'}",
                            "--data.user_col=user_id", "--data.item_col=item_id", f"--data.cache_dir={tmp_path}/c",
                            "--model", "pop", f"--output_dir={out}"])
    assert r.exit_code == 0, r.output
    (run_dir,) = list(out.iterdir())
    r = runner.invoke(app, ["recommend", str(run_dir), "--user", "u1", "--k", "3"], terminal_width=200)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    history = lines[0].split("recent history:")[1].split(" | ")
    assert len(history) == 5 and all(h.strip().startswith("item i") for h in history), lines[0]
    assert [ln.split()[1] for ln in lines[1:4]] == ["item"] * 3 and all(" i" in ln for ln in lines[1:4]), lines


def test_python_m_semcollab_runs_the_cli():
    r = subprocess.run([sys.executable, "-m", "semcollab", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "recommend" in r.stdout
