"""semcollab: recommendation that combines semantic (language-model) and collaborative knowledge."""

__version__ = "0.1.0"


def run(*args, **kwargs):
    """Train and evaluate a model; see :func:`semcollab.api.run`."""
    from .api import run as _run

    return _run(*args, **kwargs)
