"""``semcollab serve RUN [RUN ...]``: the HTTP API and page over saved runs."""

from __future__ import annotations

from pathlib import Path

import typer

from ..serve import MISSING_EXTRA, _require
from .common import fail, handled


def serve_command(run_dirs: list[Path] = typer.Argument(..., help="run folders (semcollab train / ctr train)"),
                  host: str = typer.Option("127.0.0.1", help="address to bind; the default is loopback only"),
                  port: int = typer.Option(8000, min=0, max=65535), max_batch: int = typer.Option(
                      1024, min=1, help="most users in one /v1/recommend/batch request (413 above)"),
                  max_body_kb: int = typer.Option(1024, min=1, help="most kilobytes in one request body (413 above)"),
                  workers: int = typer.Option(1, min=1, max=1, help="uvicorn workers (1: every run is loaded once)"),
                  allow_data_change: bool = typer.Option(False, help="serve a run even if its data source changed"),
                  torch_threads: int = typer.Option(1, min=1, help="torch intra-op threads for scoring"),
                  precompute_users: bool = typer.Option(True, help="encode every known user once at start-up "
                                                        "(requests by user id skip the encoder)"),
                  allow_pickle: bool = typer.Option(False, "--allow-pickle", help="read a CTR run's CoLLM-format "
                                                    "pickles other than the known split (unpickling runs code)"),
                  pop_correction: float | None = typer.Option(
                      None, min=0.0, help="rank by score - BETA * log(1 + training count) (every ranking run; "
                      "default: each run's own eval.pop_correction)"),
                  log_level: str = typer.Option("info")):
    """Serve saved runs over HTTP (FastAPI): /v1/recommend, /v1/recommend/batch, /v1/similar-items, /v1/explain,
    /v1/score, /metrics, the OpenAPI schema at /openapi.json and a page at /. Set SEMCOLLAB_API_KEY to require
    header X-API-Key on /v1 and /metrics."""
    try:
        _require()
    except ImportError:
        fail(MISSING_EXTRA)

    @handled
    def go():
        from ..serve.app import serve

        serve([str(r) for r in run_dirs], host=host, port=port, workers=workers, max_batch=max_batch,
              max_body_bytes=max_body_kb * 1024, allow_data_change=allow_data_change, log_level=log_level,
              torch_threads=torch_threads, precompute_users=precompute_users,
              allow_pickle=allow_pickle, pop_correction=pop_correction)

    go()
