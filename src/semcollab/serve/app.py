"""The FastAPI app of ``semcollab serve``: ``create_app(runs) -> FastAPI``.

Every run is loaded once here (its data fingerprint checked as ``evaluate`` does); requests only encode a
user and rank against the precomputed item matrix (:mod:`.ranker`). Errors are 4xx JSON in FastAPI's
validation shape, ``{"detail": [{"loc": [...field...], "msg": ..., "type": ..., "input": ...}]}``.

Open without the API key (when one is set): ``/``, ``/static/*``, ``/healthz``, ``/openapi.json``. Everything
under ``/v1`` and ``/metrics`` needs header ``X-API-Key``."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import schemas as S
from .ctr_run import CTRRun
from .middleware import Metrics, ServeMiddleware, _error
from .ranker import RankRun, RequestError, load_serving_run

try:  # orjson (in the [serve] extra) encodes a 1,000-user batch answer several times faster than json
    import orjson

    class FastJSON(JSONResponse):
        """A JSON answer built to its response model already (not re-validated), encoded by orjson."""

        def render(self, content) -> bytes:
            return orjson.dumps(content)
except ImportError:  # pragma: no cover
    FastJSON = JSONResponse

STATIC = Path(__file__).parent / "static"
HISTORY_SHOWN = 20
ERRORS = {413: {"description": "batch or body over the configured limit"}}


def create_app(runs: list, api_key_env: str = "SEMCOLLAB_API_KEY", max_batch: int = 1024,
               max_body_bytes: int = 1 << 20, allow_data_change: bool = False, body_timeout_s: float = 10.0,
               precompute_users: bool = True, allow_pickle: bool = False,
               pop_correction: float | None = None) -> FastAPI:
    """An app serving ``runs`` (run folders, or runs already loaded by :func:`load_serving_run`).

    ``api_key_env``: the environment variable holding the API key (unset or empty: no key needed);
    ``max_batch``: most users per batch request (413 above); ``max_body_bytes``: most bytes per body (413);
    ``body_timeout_s``: a body not fully received by then is answered 408; ``precompute_users``: encode every
    known user once at start-up (a request by user id is then a matmul row; off: encode per request);
    ``allow_pickle``: read a CTR run's CoLLM-format pickles that are not the known split (they can run code);
    ``pop_correction``: rank every ranking run by ``score - beta * log(1 + training count)`` (None: each run's own
    ``eval.pop_correction``)."""
    from ..config import ConfigError

    if not runs:
        raise ConfigError("serve needs at least one run folder")
    loaded: dict[str, RankRun | CTRRun] = {}
    for r in runs:
        run = r if isinstance(r, (RankRun, CTRRun)) else load_serving_run(r, allow_data_change, precompute_users,
                                                                           allow_pickle, pop_correction)
        if run.name in loaded:
            raise ConfigError(f"two runs are named {run.name!r} ({loaded[run.name].path} and {run.path}); serve "
                              "names each run by its folder name, so rename one folder")
        loaded[run.name] = run
    api_key = os.environ.get(api_key_env) or None

    app = FastAPI(title="semcollab serve", version="1", docs_url=None, redoc_url=None,
                  description="Recommendations from saved semcollab runs. " + (__doc__ or "").split("\n\n")[-1])
    app.state.runs = loaded

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return JSONResponse(_error(exc.field, exc.message, "value_error", exc.input), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:  # FastAPI's "error parsing the body": bytes that are not UTF-8 / JSON text
            return JSONResponse(_error("body", f"the body is not valid JSON ({exc.detail})", "json_invalid"), 422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type", "input")} for e in exc.errors()]
        for d in detail:  # inputs echo back only when small and JSON-safe
            if not isinstance(d.get("input"), (str, int, float, bool, type(None))) or len(str(d.get("input"))) > 200:
                d.pop("input", None)
        return JSONResponse({"detail": detail}, status_code=422)

    def pick(name: str | None, task: str, endpoint: str):
        if name is None:
            if len(loaded) > 1:
                raise RequestError("body.model", f"{len(loaded)} runs are loaded; name one of {sorted(loaded)}")
            run = next(iter(loaded.values()))
        elif name not in loaded:
            raise RequestError("body.model", f"unknown model {name!r}; loaded runs: {sorted(loaded)}", name)
        else:
            run = loaded[name]
        if task is not None and run.kind != task:
            other = "/v1/score" if run.kind == "ctr" else "/v1/recommend"
            raise RequestError("body.model", f"run {run.name!r} is a {run.kind} run; {endpoint} needs a {task} run "
                               f"(use {other})", run.name)
        return run

    def query(run: RankRun, req: S.RecommendRequest, field: str = "body") -> dict:
        if (req.user_id is None) == (req.history is None):
            raise RequestError(f"{field}.user_id", "give exactly one of user_id (a known user) or history (item ids "
                               "or titles of a new user)")
        if req.k > run.n_items:
            raise RequestError(f"{field}.k", f"k must be between 1 and the catalogue size ({run.n_items} items "
                               f"of run {run.name!r}), got {req.k}", req.k)
        user = history = None
        if req.user_id is not None:
            user = run.user_index(req.user_id, f"{field}.user_id")
        else:
            if run.needs_user:
                raise RequestError(f"{field}.history", f"run {run.name!r} ({run.model_name}) ranks known users only; "
                                   "give user_id")
            history = run.item_indices(req.history, f"{field}.history", titles=True)
        allow = None if req.allow is None else run.item_indices(req.allow, f"{field}.allow")
        deny = run.item_indices(req.deny or [], f"{field}.deny")
        return {"user": user, "history": history, "k": req.k, "exclude_seen": req.exclude_seen, "allow": allow,
                "deny": deny}

    def response(run: RankRun, user_id: str | None, q: dict, res: dict, history: bool = True) -> dict:
        out = {"model": run.name, "version": run.version, "user_id": user_id,
               "history": [run.item_record(i) for i in res["history"][-HISTORY_SHOWN:]] if history else [],
               "items": [run.item_record(i, s) for i, s in res["items"]], "note": None}
        if len(res["items"]) < q["k"]:
            out["note"] = f"only {len(res['items'])} items are left after exclusions; {q['k']} were asked for"
        return out

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "models": len(loaded)}

    @app.get("/v1/models", response_model=S.ModelsResponse)
    async def models():
        return {"models": [{"name": r.name, "task": r.kind, "model": r.model_name, "dataset": r.cfg.data.name,
                            "n_items": r.n_items, "n_users": r.split.n_users, "data_fingerprint": r.fingerprint,
                            "version": r.version, "factored": bool(getattr(r, "factored", False)),
                            "explain": bool(getattr(r, "can_explain", False)), "test_metrics": r.metrics}
                           for r in loaded.values()]}

    @app.post("/v1/recommend", response_model=S.RecommendResponse, responses=ERRORS)
    async def recommend(req: S.RecommendRequest):
        run = pick(req.model, "rank", "/v1/recommend")
        q = query(run, req)
        (res,) = run.recommend([q])
        return FastJSON(response(run, req.user_id, q, res))  # built to the response model: not re-validated

    @app.post("/v1/recommend/batch", response_model=S.BatchResponse, responses=ERRORS)
    async def recommend_batch(req: S.BatchRequest):
        if (req.user_ids is None) == (req.requests is None):
            raise RequestError("body.user_ids", "give exactly one of user_ids or requests")
        n = len(req.user_ids or req.requests)
        if n > max_batch:
            field = "body.user_ids" if req.user_ids is not None else "body.requests"
            raise RequestError(field, f"a batch holds at most {max_batch} requests (--max-batch), got {n}", n, 413)
        run = pick(req.model, "rank", "/v1/recommend/batch")
        if req.requests is not None:
            bad = [i for i, r in enumerate(req.requests) if r.model not in (None, run.name)]
            if bad:
                raise RequestError(f"body.requests.{bad[0]}.model", "every request of a batch must name the batch's "
                                   f"model ({run.name!r}) or none", req.requests[bad[0]].model)
            reqs = req.requests
            qs = [query(run, r, f"body.requests.{i}") for i, r in enumerate(reqs)]
            user_ids = [r.user_id for r in reqs]
        else:  # plain user ids: checked and turned into queries without a request object each
            if req.k > run.n_items:
                raise RequestError("body.k", f"k must be between 1 and {run.n_items}, got {req.k}", req.k)
            user_ids = req.user_ids
            qs = [{"user": run.user_index(u, f"body.user_ids.{i}"), "history": None, "k": req.k,
                   "exclude_seen": req.exclude_seen, "allow": None, "deny": []} for i, u in enumerate(user_ids)]
        results = run.recommend(qs)
        return FastJSON({"model": run.name, "version": run.version, "results": [
            response(run, u, q, res, req.include_history) for u, q, res in zip(user_ids, qs, results)]})

    @app.post("/v1/similar-items", response_model=S.SimilarResponse)
    async def similar_items(req: S.SimilarRequest):
        run = pick(req.model, "rank", "/v1/similar-items")
        (item,) = run.item_indices([req.item_id], "body.item_id")
        if req.k > run.n_items:
            raise RequestError("body.k", f"k must be between 1 and {run.n_items}, got {req.k}", req.k)
        source, items = run.similar(item, req.k, req.embedding)
        return {"model": run.name, "version": run.version, "item": run.item_record(item), "embedding": source,
                "items": [run.item_record(i, s) for i, s in items]}

    @app.post("/v1/explain", response_model=S.ExplainResponse)
    async def explain(req: S.ExplainRequest):
        run = pick(req.model, "rank", "/v1/explain")
        if not run.can_explain:
            raise RequestError("body.model", f"run {run.name!r} is a {run.model_name} run; /v1/explain needs an "
                               "intent model (saerec)", run.name)
        q = query(run, req)
        (res,) = run.recommend([q])
        items = [{**run.item_record(i, s), **run.explain(res["history"], i, req.n_intents)} for i, s in res["items"]]
        return {"model": run.name, "version": run.version, "user_id": req.user_id,
                "history": [run.item_record(i) for i in res["history"][-HISTORY_SHOWN:]], "items": items}

    @app.post("/v1/score", response_model=S.ScoreResponse)
    async def score(req: S.ScoreRequest):
        run = pick(req.model, "ctr", "/v1/score")
        user = run.user_index(req.user_id)
        items = run.item_indices(req.item_ids, "body.item_ids")
        hist = None if req.history is None else run.item_indices(req.history, "body.history")
        probs = run.score(user, items, hist)
        return {"model": run.name, "version": run.version, "user_id": req.user_id,
                "scores": [{"id": i, "probability": p} for i, p in zip(req.item_ids, probs)]}

    @app.get("/v1/items", response_model=S.ItemsResponse)
    async def items(model: str | None = Query(None, min_length=1, max_length=200),
                    q: str = Query("", max_length=200, description="case-insensitive part of a title or an id"),
                    limit: int = Query(10, ge=1, le=100)):
        run = pick_query(model)
        needle = q.casefold()
        found = []
        for i in range(1, run.n_items + 1):
            t = run.titles[i] or ""
            if needle in t.casefold() or needle in run.split.item_vocab.ids[i - 1].casefold():
                found.append(run.item_record(i))
                if len(found) >= limit:
                    break
        return {"model": run.name, "items": found}

    @app.get("/v1/users", response_model=S.UsersResponse)
    async def users(model: str | None = Query(None, min_length=1, max_length=200),
                    q: str = Query("", max_length=200, description="start of a user id"),
                    limit: int = Query(20, ge=1, le=1000)):
        run = pick_query(model)
        ids = run.split.user_vocab.ids
        hits = [str(u) for u in ids if str(u).startswith(q)]
        return {"model": run.name, "users": hits[:limit], "total": len(hits)}

    def pick_query(model: str | None):
        try:
            return pick(model, None, "this endpoint")
        except RequestError as exc:
            exc.field = exc.field.replace("body.", "query.")
            raise

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_text():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": "default-src 'self'",
                                                            "X-Content-Type-Options": "nosniff"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    metrics = Metrics()
    known = {r.path for r in app.routes if hasattr(r, "path")} | {"/openapi.json"}
    open_paths = {"/", "/healthz", "/openapi.json"}
    app.add_middleware(ServeMiddleware, metrics=metrics, known_paths=known, max_body_bytes=max_body_bytes,
                       api_key=api_key, open_paths=open_paths, body_timeout_s=body_timeout_s)
    return app


def serve(runs: list, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, max_batch: int = 1024,
          max_body_bytes: int = 1 << 20, allow_data_change: bool = False, log_level: str = "info",
          torch_threads: int | None = 1, precompute_users: bool = True, allow_pickle: bool = False,
          pop_correction: float | None = None) -> None:
    """Load ``runs`` and serve them with uvicorn on ``host:port`` (loopback unless told otherwise).

    ``torch_threads``: intra-op threads of the scoring (1: a single request's matmul is too small to split, and
    the requests are served one after another by the event loop; None: torch's default)."""
    import torch
    import uvicorn

    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    if workers != 1:
        from ..config import ConfigError

        raise ConfigError("--workers: only 1 is supported (each worker would load every run again); run several "
                          "servers behind a proxy instead")
    app = create_app(runs, max_batch=max_batch, max_body_bytes=max_body_bytes, allow_data_change=allow_data_change,
                     precompute_users=precompute_users, allow_pickle=allow_pickle, pop_correction=pop_correction)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
