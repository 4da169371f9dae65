"""Serving saved runs over HTTP: ``semcollab serve RUN ...`` or :func:`create_app` / :func:`serve`.

Needs the ``[serve]`` extra (FastAPI, uvicorn): ``pip install -e ".[serve]"``."""

from __future__ import annotations

MISSING_EXTRA = 'serving needs the [serve] extra (FastAPI, uvicorn): pip install -e ".[serve]"'


def _require() -> None:
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{MISSING_EXTRA} (missing: {', '.join(missing)})")


def create_app(runs, **kw):
    """See :func:`semcollab.serve.app.create_app`."""
    _require()
    from .app import create_app as _create

    return _create(runs, **kw)


def serve(runs, host: str = "127.0.0.1", port: int = 8000, **kw) -> None:
    """See :func:`semcollab.serve.app.serve`."""
    _require()
    from .app import serve as _serve

    _serve(runs, host=host, port=port, **kw)


__all__ = ["MISSING_EXTRA", "create_app", "serve"]
