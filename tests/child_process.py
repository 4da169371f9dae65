"""The environment of a child process a test starts (``python -m semcollab``, torchrun and its ranks): the
repository's ``src`` and root importable, one thread per process (two ranks share CI's two cores), unbuffered output
so a failure's last lines reach the assertion message, and Python's fault handler on (a rank that aborts prints every
thread's stack)."""

import os

from tests.script_loader import REPO


def child_env(**extra: str) -> dict:
    """``os.environ`` as it is now (so the test's own SEMCOLLAB_CACHE reaches the children) plus the settings above
    and ``extra``."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", **extra}


def child_failure(proc, limit: int = 12000) -> str:
    """The assertion message of a child that failed: its output's tail, without the fault handler's one-line list of
    extension modules (thousands of characters that pushed the thread stacks of an aborted rank out of the message)."""
    text = (proc.stdout or "") + "\n--- stderr ---\n" + (proc.stderr or "")
    kept = "\n".join(line for line in text.splitlines() if "Extension modules:" not in line)
    return kept[-limit:]
