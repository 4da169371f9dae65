"""Every ``semcollab`` command README.md shows, run for real (``python -m semcollab``, this checkout's sources) on
tiny data in a temporary folder, so a README command that no longer parses or runs fails here.

Where the commands come from: every line of README's ``bash`` blocks (inside and outside the walkthrough) and every
code span ``semcollab ...`` of its prose and tables (the methods table's "one command" column; mentions such as
``semcollab serve`` only have their name checked). Lines of other programs are allowed only from
:data:`NOT_SEMCOLLAB`.
Each command must match exactly one row of :data:`COMMANDS` (and each row a command), so a command added to the
README fails :func:`test_every_readme_command_has_a_row` until it is given a row: nothing is skipped silently.

What every command sees instead of the real assets (no command line changes for these, and nothing is downloaded):

* ``ml-100k``: a tiny RecBole-atomic ``ml-100k.inter`` / ``.item`` (60 users, 40 items, same columns), through
  ``SEMCOLLAB_ML100K``, the variable README names for one's own copy;
* ``s3rec:Beauty`` and ``collm-ml-1m``: a tiny ``shared/`` folder (``SEMCOLLAB_SHARED``) holding
  ``data/s3rec/Beauty.txt`` with its ``_items.csv`` / ``_item2attributes.json`` (the real files' columns) and
  ``data/collm/ml-1m.zip`` (the CoLLM pickles' columns, from tests/tasks/test_ctr_cli.py);
* ``table`` (the walkthrough): the walkthrough's generated ``events.csv`` / ``items.csv`` and its ``mydata.yaml``
  (the functions of tests/test_readme_walkthrough.py);
* the LM registry names ``gemma3-270m`` and ``smollm2-135m``: the tiny random Llamas of tests/conftest.py put where
  the model hub keeps a ready model (``$SEMCOLLAB_CACHE/models/<name>/dense/``), so the names resolve offline;
  ``minilm`` is the real encoder the ``[llm]`` extra ships (22M parameters: cheap on 40 items);
* ``runs/<...>`` placeholders: the run folder an earlier row made (``COMMANDS[..].runs``); ``[runs/<run> ...]``
  (optional repeats) is dropped;
* ``configs/`` is copied into the folder (README's commands run from the checkout);
* Hugging Face offline mode and ``PIP_NO_INDEX`` are set, so nothing can reach a hub or an index.

A row's ``add`` options only cap work that does not shrink with the data (SAE and ReaEmb optimizer steps) or give
the opt-in the stand-in CoLLM pickles need; its ``why`` says which. Training is otherwise run as written (early
stopping ends it quickly on tiny data). ``serve`` starts on a free port instead of 8000 and is stopped after one
``POST /v1/recommend``; ``models fetch`` runs with the registry entry pointed at a fake part wheel in the cache
(built as tests/hub/test_models.py builds one) and the GGUF loader replaced by one that loads the tiny Llama."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.readme_commands_support import (
    README,
    ROOT,
    Runner,
    children_cpu,
    place_lm,
    write_collm_zip,
    write_ml100k,
    write_s3rec_beauty,
    write_walkthrough_data,
)
from tests.test_readme_walkthrough import commands

# lines of README bash blocks that are not semcollab commands (install and test steps, the walkthrough's curl)
NOT_SEMCOLLAB = ("git clone ", "python -m venv ", "bash scripts/install.sh", "python -m pytest", "pip ", "curl ")


@dataclass(frozen=True)
class Row:
    pattern: str  # regex the README command must match whole (comment stripped, spaces collapsed)
    group: str  # the test function that runs it
    why: str = ""  # what is substituted and why ("" = runs exactly as written, on the stand-in data above)
    add: tuple[str, ...] = ()  # options appended
    runs: dict[str, str] = field(default_factory=dict)  # placeholder in the command -> run label of an earlier row
    makes: str | None = None  # label of the run folder this command writes
    how: str = "run"  # run | serve | fetch (models fetch with the fake wheel)
    user: str = ""  # serve: the user id of the one /v1/recommend call


ALLOW_PICKLE = "--data.allow_pickle=true"  # the stand-in CoLLM pickles are not the known files: the CLI's opt-in

# The one table: README command -> what runs instead, and why. A group's rows run in this order.
COMMANDS: list[Row] = [
    # --- walkthrough (`table` data: tests/test_readme_walkthrough.py's files and mydata.yaml)
    Row(r"semcollab data prepare table --config mydata\.yaml", "walkthrough"),
    Row(r"semcollab train --config mydata\.yaml --model sasrec --output_dir=runs/sasrec", "walkthrough",
        makes="table-sasrec"),
    Row(r"semcollab train --config mydata\.yaml --model semantic --output_dir=runs/semantic", "walkthrough",
        makes="table-semantic"),
    Row(r"semcollab table runs/sasrec/\* runs/semantic/\* --out table\.md", "walkthrough"),
    Row(r"semcollab recommend runs/sasrec/\* --user u1 --k 5", "walkthrough"),
    Row(r"semcollab report runs/sasrec/\* runs/semantic/\* --out report\.html", "walkthrough"),
    Row(r"semcollab serve runs/sasrec/\* --port 8000 &", "walkthrough", "a free port instead of 8000, in the "
        "foreground; stopped after one /v1/recommend", how="serve", user="u1"),
    Row(r"semcollab diagnose runs/<semantic-run> runs/<sasrec-run> --out diagnostics", "walkthrough",
        "the walkthrough's semantic and SASRec runs (diagnose needs two runs of one dataset)",
        runs={"runs/<semantic-run>": "table-semantic", "runs/<sasrec-run>": "table-sasrec"}),
    # --- MovieLens-100K (the tiny ml-100k); training is cheap as written (early stopping)
    Row(r"semcollab quickstart", "ml100k"),
    Row(r"semcollab quickstart --epochs 200 --train\.lr=1e-3", "ml100k"),
    Row(r"semcollab train --model sasrec --dataset ml-100k", "ml100k", makes="sasrec"),
    Row(r"semcollab train --model sasrec --dataset ml-100k --nproc 2", "ml100k",
        "2 processes under torchrun (gloo); the run folder goes to runs/ like the one-process run's"),
    Row(r"semcollab train --model NAME", "ml100k", "NAME: each model of README's ID-baseline table that no other "
        "README command trains (pop, sasrec and gru4rec are trained above and by compare)"),
    Row(r"semcollab evaluate runs/<run> --eval\.(protocol=sampled|pop_correction=0\.2)", "ml100k", "<run>: the sasrec run",
        runs={"runs/<run>": "sasrec"}),
    Row(r"semcollab compare --models pop,sasrec,gru4rec --dataset ml-100k", "ml100k", makes="compare"),
    Row(r"semcollab table runs/<run> runs/<other-run> --out table\.md", "ml100k",
        "the sasrec run and the first run compare wrote", runs={"runs/<run>": "sasrec", "runs/<other-run>": "compare"}),
    Row(r"semcollab recommend runs/<run> --user 50 --k 10", "ml100k", "<run>: the sasrec run",
        runs={"runs/<run>": "sasrec"}),
    Row(r"semcollab serve runs/<run> \[runs/<run> \.\.\.\]", "ml100k", "<run>: the sasrec run; --port a free port "
        "(default 8000); stopped after one /v1/recommend", runs={"runs/<run>": "sasrec"}, how="serve", user="50"),
    Row(r"semcollab report runs/<run> \[runs/<run> \.\.\.\] --out report\.html", "ml100k", "<run>: the sasrec run",
        runs={"runs/<run>": "sasrec"}),
    Row(r"semcollab embed --dataset ml-100k --encoder minilm", "ml100k"),
    Row(r"semcollab intents --dataset ml-100k --out intents", "ml100k",
        "the SAE 4x wide, k=4, 50 steps (default 16x, k=15, 2,000 steps: ~100 s of CPU)",
        add=("--sae.expansion=4", "--sae.k=4", "--sae.steps=50")),
    # --- SAERec on the tiny s3rec:Beauty (configs/ is copied into the folder: README runs from the checkout)
    Row(r"semcollab data prepare s3rec:Beauty", "saerec"),
    Row(r"semcollab train --model saerec --dataset s3rec:Beauty --config configs/s3rec_converge\.yaml", "saerec",
        "its SAE 4x wide, k=4, 50 steps, as for intents",
        add=("--model_params.sae.expansion=4", "--model_params.sae.k=4", "--model_params.sae.steps=50"),
        makes="saerec"),
    Row(r"semcollab branch-stats runs/<saerec-run> --out branch_stats\.json", "saerec", "the saerec run",
        runs={"runs/<saerec-run>": "saerec"}),
    Row(r"semcollab train --model (alphafuse|hybrid|llm-esr) --dataset s3rec:Beauty "
        r"--config configs/s3rec_converge\.yaml( --model_params\.[\w.]+=[\w.]+)*", "saerec",
        ""),
    # --- CTR on the tiny CoLLM zip; gemma3-270m is the tiny yes/no Llama; cheap as written otherwise
    Row(r"semcollab ctr train --model mf", "ctr", "allow_pickle", add=(ALLOW_PICKLE,), makes="ctr-mf"),
    Row(r"semcollab ctr train --model sellarec --model_params\.lm=gemma3-270m --data\.max_train_rows=\d+", "ctr",
        "allow_pickle", add=(ALLOW_PICKLE,), makes="ctr-sellarec"),
    Row(r"semcollab ctr train --model sailrec --model_params\.lm=gemma3-270m --data\.max_train_rows=\d+", "ctr",
        "allow_pickle", add=(ALLOW_PICKLE,), makes="ctr-sailrec"),
    Row(r"semcollab ctr evaluate runs/ctr/<run>", "ctr", "<run>: the mf run; allow_pickle", add=(ALLOW_PICKLE,),
        runs={"runs/ctr/<run>": "ctr-mf"}),
    Row(r"semcollab ctr attention runs/ctr/<run> --out attention", "ctr",
        "<run>: the sailrec run (attention needs collaborative tokens); allow_pickle", add=(ALLOW_PICKLE,),
        runs={"runs/ctr/<run>": "ctr-sailrec"}),
    Row(r"semcollab ctr table runs/ctr/<run> runs/ctr/<other-run>", "ctr", "the mf and sellarec runs",
        runs={"runs/ctr/<run>": "ctr-mf", "runs/ctr/<other-run>": "ctr-sellarec"}),
    # --- ReaEmb on the tiny s3rec:Beauty; smollm2-135m is the tiny Llama
    Row(r"semcollab reaemb train --dataset s3rec:Beauty --lm smollm2-135m", "reaemb",
        "2 + 1 optimizer steps (default 2,000 + one epoch of anchors)",
        add=("--stage1.max_steps=2", "--stage2.max_steps=1"), makes="reaemb"),
    Row(r"semcollab reaemb table runs/reaemb/<run> --out items\.npy", "reaemb", "<run>: the reaemb run",
        runs={"runs/reaemb/<run>": "reaemb"}),
    Row(r"semcollab reaemb bench-kv runs/reaemb/<run>", "reaemb", "<run>: the reaemb run",
        runs={"runs/reaemb/<run>": "reaemb"}),
    # --- offline models: nothing is downloaded (PIP_NO_INDEX is set as well)
    Row(r"semcollab models", "models"),
    # --- commands named in prose: each must be a command `semcollab --help` lists (run once, for all of them)
    Row(r"semcollab (ctr \.\.\.|report|serve)", "mentions", "not run: only its name is checked", how="mention"),
    Row(r"semcollab COMMAND --help", "mentions", "run as `semcollab --help`, whose list every mention is checked "
        "against", how="mention"),
    Row(r"semcollab models fetch gemma3-270m", "models",
        "the registry entry points at a fake part wheel already in the cache; the GGUF loader loads the tiny Llama",
        how="fetch"),
]


# ----------------------------------------------------------------------------------------- the README's commands

def _strip_comment(line: str) -> str:
    return re.sub(r"\s+#\s.*$", "", line).strip()


def _id_baseline_models(text: str) -> list[str]:
    m = re.search(r"The ID baselines.*?\n\n(\|.*?)\n\n", text, re.S)
    assert m, "README has no ID-baseline table after 'The ID baselines'"
    return re.findall(r"^\| `([\w-]+)`", m.group(1), re.M)


def readme_commands(text: str) -> list[str]:
    """Every semcollab command README shows, each once: the code spans of its prose and tables (the methods
    table's "one command" column, mentions such as `semcollab serve`), then the lines of its bash blocks."""
    fences = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    found = re.findall(r"(?<!`)`(semcollab [^`]+)`(?!`)", prose)
    for lang, body in fences:
        for line in commands(body):
            line = _strip_comment(line)
            if lang != "bash":
                assert not line.startswith("semcollab "), f"a semcollab command in a {lang or 'plain'} block: {line}"
            elif not line.startswith("semcollab "):
                assert line.startswith(NOT_SEMCOLLAB), f"README bash line of an unknown program: {line!r}"
            else:
                found.append(line)
    return list(dict.fromkeys(" ".join(c.split()) for c in found))


def _models_trained(cmds: list[str]) -> set[str]:
    """Models that README's ``train --model X`` and ``compare --models X,Y`` commands train."""
    names = set()
    for c in cmds:
        names.update(re.findall(r"^semcollab train .*--model ([\w-]+)", c))
        for listed in re.findall(r"^semcollab compare .*--models ([\w,-]+)", c):
            names.update(listed.split(","))
    return names


def _row_of(command: str) -> list[Row]:
    return [r for r in COMMANDS if re.fullmatch(r.pattern, command)]


def test_every_readme_command_has_a_row():
    cmds = readme_commands(README.read_text(encoding="utf-8"))
    assert len(cmds) >= 30, f"too few README commands found ({len(cmds)}): has the README's layout changed?"
    uncovered = [c for c in cmds if not _row_of(c)]
    assert not uncovered, f"README commands without a row in COMMANDS (add one): {uncovered}"
    twice = [c for c in cmds if len(_row_of(c)) > 1]
    assert not twice, f"README commands matching several rows: {twice}"
    stale = [r.pattern for r in COMMANDS if not any(re.fullmatch(r.pattern, c) for c in cmds)]
    assert not stale, f"rows of COMMANDS that match no README command (remove them): {stale}"
    assert {r.group for r in COMMANDS} == set(GROUPS), "every group has a test"


def test_a_new_readme_command_is_caught():
    text = README.read_text(encoding="utf-8").replace("```bash\n", "```bash\nsemcollab frobnicate --all\n", 1)
    assert "semcollab frobnicate --all" in readme_commands(text) and not _row_of("semcollab frobnicate --all")


@pytest.fixture
def runner(tmp_path):
    shared = tmp_path / "shared"
    write_s3rec_beauty(shared / "data" / "s3rec")
    write_collm_zip(shared / "data" / "collm" / "ml-1m.zip")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(ROOT / "configs", work / "configs")  # README's commands run from the checkout
    return Runner(work, tmp_path / "cache", shared, write_ml100k(tmp_path / "ml-100k"))


def run_group(group: str, runner: Runner, tiny_lm: Path | None = None) -> dict[str, str]:
    """Run every README command of ``group``'s rows, in the table's order; returns command -> output."""
    text = README.read_text(encoding="utf-8")
    cmds = readme_commands(text)
    outputs = {}
    baselines = [m for m in _id_baseline_models(text) if m not in _models_trained(cmds)]
    rows = [r for r in COMMANDS if r.group == group]
    assert rows
    for row in rows:
        lines = [c for c in cmds if re.fullmatch(row.pattern, c)]
        assert lines, f"no README command matches {row.pattern!r}"
        for line in lines:
            expanded = [line.replace("NAME", m) for m in baselines] if "NAME" in line else [line]
            for one in expanded:
                t0, cpu0 = time.perf_counter(), children_cpu()
                outputs[one] = runner(one, row, tiny_lm)
                print(f"{time.perf_counter() - t0:5.1f} s wall {children_cpu() - cpu0:5.1f} s cpu  {one}")
    return outputs


GROUPS = ("walkthrough", "ml100k", "saerec", "ctr", "reaemb", "models", "mentions")


def test_walkthrough_commands(runner):
    write_walkthrough_data(runner.folder)
    out = run_group("walkthrough", runner)
    assert (runner.folder / "table.md").is_file() and (runner.folder / "report.html").is_file()
    assert (runner.folder / "diagnostics" / "report.json").is_file()
    assert any("u1" in o or "B0" in o for o in out.values())


def test_ml100k_commands(runner):
    run_group("ml100k", runner)
    for name in ("table.md", "report.html", "intents/ml-100k/intents.json", "embeddings/ml-100k/item_embeddings.npy"):
        assert (runner.folder / name).is_file(), name


def test_saerec_commands(runner):
    run_group("saerec", runner)
    assert (runner.folder / "branch_stats.json").is_file()


def test_ctr_commands(runner, tiny_yes_no_lm):
    place_lm(Path(runner.env["SEMCOLLAB_CACHE"]), "gemma3-270m", tiny_yes_no_lm)
    out = run_group("ctr", runner)
    assert any('"auc"' in o for o in out.values())
    assert list((runner.folder / "attention").glob("*.json"))


def test_reaemb_commands(runner, tiny_causal_lm):
    place_lm(Path(runner.env["SEMCOLLAB_CACHE"]), "smollm2-135m", tiny_causal_lm)
    run_group("reaemb", runner)
    assert (runner.folder / "items.npy").is_file()


def test_models_commands(runner, tiny_causal_lm):
    out = run_group("models", runner, tiny_lm=tiny_causal_lm)
    dense = Path(runner.env["SEMCOLLAB_CACHE"]) / "models" / "gemma3-270m" / "dense"
    assert (dense / "config.json").is_file() and "ready at" in out["semcollab models fetch gemma3-270m"]


def test_commands_named_in_prose_exist(runner):
    cmds = readme_commands(README.read_text(encoding="utf-8"))
    mentions = [c for c in cmds if any(r.how == "mention" for r in _row_of(c))]
    assert "semcollab COMMAND --help" in mentions
    listed = set(re.findall(r"^│ ([a-z][\w-]*) ", runner.check(runner.shell("semcollab --help"), "--help"), re.M))
    assert {"train", "serve", "ctr", "models"} <= listed, f"`semcollab --help` lists {listed}"
    for c in mentions:
        if "COMMAND" not in c:
            assert c.split()[1] in listed, f"README names a command `semcollab --help` does not list: {c}"


def test_a_command_that_fails_or_crashes_fails_the_test(runner):
    """What a broken README command looks like to :meth:`Runner.check`: a parse error, or a traceback even
    under exit code 0 (a crash a handler printed and swallowed)."""
    bad = runner.shell("semcollab train --model sasrec --dataset ml-100k --train.epoch=1")
    assert "train.epoch" in bad.stdout + bad.stderr, bad
    with pytest.raises(AssertionError, match="exit 2"):
        runner.check(bad, "semcollab train --model sasrec --dataset ml-100k --train.epoch=1")
    crashed = subprocess.CompletedProcess([], 0, "Traceback (most recent call last):\n  ...", "")
    with pytest.raises(AssertionError, match="exit 0"):
        runner.check(crashed, "semcollab x")
