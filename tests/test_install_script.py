"""scripts/install.sh: the torch build it picks (auto / cpu / gpu, with a fake nvidia-smi on PATH), the route of
each (the CPU index PyTorch documents, plain PyPI for the CUDA build, pip's configured indexes when asked), an
installed torch of the right kind kept; run with --dry-run, which prints the pip commands and runs none."""

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install.sh"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A Python without torch (a venv without pip: only what the script's checks need)."""
    env_dir = tmp_path_factory.mktemp("bare-venv")
    venv.EnvBuilder(with_pip=False).create(env_dir)
    return env_dir / "bin" / "python"


def install(tmp_path, *args, python=None, nvidia_smi_rc=None, **env):
    """Run the script in --dry-run mode; ``nvidia_smi_rc``: a fake nvidia-smi exiting with it (None: none on PATH,
    unless the machine has a real one)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "nvidia-smi"
    if nvidia_smi_rc is not None:
        fake.write_text(f"#!/bin/sh\nexit {nvidia_smi_rc}\n")
        fake.chmod(0o755)
    elif fake.exists():
        fake.unlink()
    full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHON": str(python or sys.executable)}
    for key in ("SEMCOLLAB_TORCH_INDEX", "SEMCOLLAB_TORCH_SPEC", "SEMCOLLAB_EXTRAS"):
        full_env.pop(key, None)
    full_env.update(env)
    out = subprocess.run(["bash", str(SCRIPT), *args, "--dry-run"], capture_output=True, text=True, env=full_env,
                         timeout=120)
    pip_lines = [line for line in out.stdout.splitlines() if line.startswith("+ ")]
    return out, pip_lines


def test_auto_picks_gpu_when_nvidia_smi_runs_else_the_cpu_index(tmp_path, bare_python):
    out, lines = install(tmp_path, python=bare_python, nvidia_smi_rc=0)
    assert out.returncode == 0, out.stderr
    assert "chose gpu" in out.stdout
    assert len(lines) == 2 and "pip install torch" in lines[0] and "index-url" not in lines[0]  # PyPI: CUDA on Linux
    assert lines[1].endswith("-e .\\[dev\\,llm\\,serve\\,test-serve\\]")
    out, lines = install(tmp_path, python=bare_python, nvidia_smi_rc=9)  # a broken driver is no GPU
    assert out.returncode == 0 and "chose cpu" in out.stdout
    assert lines[0].endswith(f"--index-url {CPU_INDEX}") and "torch\\>=2.2\\,\\<2.15" in lines[0]  # pyproject's range


def test_explicit_kind_and_the_offline_settings(tmp_path, bare_python):
    _, lines = install(tmp_path, "cpu", python=bare_python, nvidia_smi_rc=0)  # asked for cpu: cpu, GPU or not
    assert lines[0].endswith(f"--index-url {CPU_INDEX}")
    _, lines = install(tmp_path, "gpu", python=bare_python)
    assert "index-url" not in lines[0]
    # .ci/run's settings: pip's configured indexes and a pinned CPU wheel, never the PyTorch host
    _, lines = install(tmp_path, "cpu", python=bare_python, SEMCOLLAB_TORCH_INDEX="configured",
                       SEMCOLLAB_TORCH_SPEC="torch==2.13.0", SEMCOLLAB_EXTRAS="dev,llm,serve")
    assert lines[0].endswith("pip install torch==2.13.0") and lines[1].endswith("-e .\\[dev\\,llm\\,serve\\]")
    _, lines = install(tmp_path, "cpu", python=bare_python, SEMCOLLAB_TORCH_INDEX="file:///opt/idx")
    assert lines[0].endswith("--index-url file:///opt/idx")


def test_installed_build_of_the_chosen_kind_is_kept_and_the_other_replaced(tmp_path):
    import torch

    kind = "cpu" if torch.version.cuda is None else "gpu"
    other = {"cpu": "gpu", "gpu": "cpu"}[kind]
    out, lines = install(tmp_path, kind)
    assert out.returncode == 0, out.stderr
    assert "installed already; keeping it" in out.stdout and len(lines) == 1 and "-e ." in lines[0]
    out, lines = install(tmp_path, other)
    assert f"replacing it with a {other} build" in out.stdout
    assert lines[0].endswith("pip uninstall -y torch") and "pip install torch" in lines[1]


def test_bad_argument_and_ci_uses_the_script(tmp_path):
    out, lines = install(tmp_path, "cuda")
    assert out.returncode == 2 and "unknown argument 'cuda'" in out.stderr and not lines
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/install.sh cpu" in ci and "pip install" not in ci.replace("pip install -e", "")
