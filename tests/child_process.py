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
