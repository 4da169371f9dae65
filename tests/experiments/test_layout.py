"""scripts/ holds product tooling only and every study lives in experiments/: each script path the docs, the
study scripts and the configs name exists (a moved script cannot leave a stale command behind)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMING = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "experiments").rglob("*.*")),
          *sorted((ROOT / "configs").glob("*.yaml")), ROOT / ".ci" / "run"]
PATH = re.compile(r"(?<![\w./-])((?:scripts|experiments)/[\w./-]+\.(?:sh|py|yaml))")


def test_every_script_path_named_exists():
    missing = sorted({f"{f.relative_to(ROOT)}: {m}" for f in NAMING if f.is_file()
                      for m in PATH.findall(f.read_text(encoding="utf-8")) if not (ROOT / m).is_file()})
    assert not missing, "script paths that do not exist:\n" + "\n".join(missing)


def test_scripts_holds_only_product_tooling():
    kept = {"install.sh", "test_matrix.sh", "layout_stats.py", "behaviour_check.sh", "behaviour_diff.py", "docs_screenshots.py", "archive_runs.py",
            "resume_check.sh"}
    assert {p.name for p in (ROOT / "scripts").iterdir() if p.is_file()} <= kept, "a study script belongs in experiments/"


def test_each_study_folder_has_a_run_script():
    studies = [d for d in (ROOT / "experiments").iterdir() if d.is_dir() and not d.name.startswith((".", "_"))]
    assert len(studies) >= 9
    no_run = [d.name for d in studies if not any((d / n).is_file() for n in ("run.sh", "run.py"))]
    assert not no_run, f"study folders without a run script: {no_run}"
