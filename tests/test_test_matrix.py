"""scripts/test_matrix.sh: four settings, each with its environment (torch threads follow OMP_NUM_THREADS through
SEMCOLLAB_TEST_THREADS), one summary line each, a non-zero exit when one fails; pytest arguments passed on.
A fake PYTHON records what each setting got instead of running the suite."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE = """#!/bin/sh
echo "$ONEDNN_MAX_CPU_ISA|$OMP_NUM_THREADS|$SEMCOLLAB_TEST_THREADS|$*" >> "{record}"
if [ "$OMP_NUM_THREADS" = "{fail_threads}" ]; then echo "FAILED tests/x.py::t - boom"; echo "1 failed, 2 passed in 0.1s"; exit 1; fi
echo "3 passed in 0.1s"
"""


def run_matrix(tmp_path, fail_threads="none"):
    record = tmp_path / "record.txt"
    fake = tmp_path / "python"
    fake.write_text(FAKE.format(record=record, fail_threads=fail_threads))
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "OMP_NUM_THREADS": "7"}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "test_matrix.sh"), "tests/lm", "-x"], capture_output=True,
                         text=True, env=env, timeout=60)
    return out, record.read_text().splitlines()


def test_four_settings_each_with_its_environment(tmp_path):
    out, calls = run_matrix(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    args = "-m pytest -p no:cacheprovider tests/lm -x"
    # the caller's own settings never leak into a setting
    assert calls == [f"||{'|' + args}", f"AVX2||{'|' + args}", f"|1|1|{args}", f"|2|2|{args}"]
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["default", "ONEDNN_MAX_CPU_ISA=AVX2", "OMP_NUM_THREADS=1",
                                                   "OMP_NUM_THREADS=2"]
    assert all("PASS  3 passed" in line for line in lines)


def test_a_failing_setting_fails_the_run_and_is_named(tmp_path):
    out, calls = run_matrix(tmp_path, fail_threads="2")
    assert out.returncode == 1 and len(calls) == 4
    failing = [line for line in out.stdout.splitlines() if " FAIL " in line]
    assert len(failing) == 1 and failing[0].startswith("OMP_NUM_THREADS=2") and "1 failed, 2 passed" in failing[0]
    assert "FAILED tests/x.py::t" in out.stdout  # the failing tests are listed under it


@pytest.mark.parametrize("value", ["0", "two"])
def test_thread_setting_is_checked(value):
    out = subprocess.run(["python", "-c", "import tests.conftest"], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "SEMCOLLAB_TEST_THREADS": value}, timeout=120)
    assert out.returncode != 0 and f"SEMCOLLAB_TEST_THREADS='{value}'" in out.stderr


@pytest.mark.parametrize("env,threads", [({}, 1), ({"OMP_NUM_THREADS": "2"}, 2),
                                         ({"OMP_NUM_THREADS": "1", "SEMCOLLAB_TEST_THREADS": "2"}, 2)])
def test_torch_threads_follow_the_setting(env, threads):
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SEMCOLLAB_TEST_THREADS")}
    out = subprocess.run(["python", "-c", "import tests.conftest, torch; print(torch.get_num_threads())"],
                         capture_output=True, text=True, cwd=ROOT, env={**base, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == str(threads)
