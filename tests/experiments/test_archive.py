"""experiments/hybrid_s3rec/archive.sh: finished runs' result files are copied (weights are not), a second call adds
only what is new, and an archived file that differs from its run's is an error, never overwritten."""

import subprocess

from tests.script_loader import REPO

SCRIPT = REPO / "experiments" / "hybrid_s3rec" / "archive.sh"


def archive(out, dest):
    return subprocess.run(["bash", str(SCRIPT)], env={"OUT": str(out), "DEST": str(dest), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)


def test_archive_copies_results_adds_new_files_and_never_overwrites(tmp_path):
    out, dest = tmp_path / "out", tmp_path / "dest"
    run = out / "Beauty" / "sasrec" / "r1"
    run.mkdir(parents=True)
    for name in ("config.yaml", "run.json", "metrics.json", "model.safetensors"):
        (run / name).write_text(name)
    (out / "Beauty" / "sasrec" / "unfinished").mkdir()  # no metrics.json: skipped
    first = archive(out, dest)
    assert first.returncode == 0, first.stderr
    kept = dest / "Beauty" / "sasrec" / "r1"
    assert sorted(p.name for p in kept.iterdir()) == ["config.yaml", "metrics.json", "run.json"]
    assert not (dest / "Beauty" / "sasrec" / "unfinished").exists()
    (run / "pop_adjust.json").write_text("[]")
    second = archive(out, dest)
    assert second.returncode == 0 and "1 files archived" in second.stdout
    (run / "metrics.json").write_text("changed")
    third = archive(out, dest)
    assert third.returncode != 0 and "not overwritten" in third.stderr
    assert (kept / "metrics.json").read_text() == "metrics.json"
