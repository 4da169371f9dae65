"""Pure-ASGI layers of the server: body size limit, API key, Prometheus request metrics."""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from collections import defaultdict

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Request counts by endpoint and status, latency histograms by endpoint (Prometheus text format)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts: dict[tuple[str, str, int], int] = defaultdict(int)
        self.hist: dict[str, list[int]] = {}
        self.sums: dict[str, float] = defaultdict(float)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self.lock:
            self.counts[(endpoint, method, status)] += 1
            h = self.hist.setdefault(endpoint, [0] * (len(BUCKETS) + 1))
            for b, edge in enumerate(BUCKETS):
                if seconds <= edge:
                    h[b] += 1
                    break
            else:
                h[-1] += 1
            self.sums[endpoint] += seconds

    def render(self) -> str:
        lines = ["# HELP semcollab_requests_total HTTP requests by endpoint, method and status.",
                 "# TYPE semcollab_requests_total counter"]
        with self.lock:
            for (ep, method, status), n in sorted(self.counts.items()):
                lines.append(f'semcollab_requests_total{{endpoint="{ep}",method="{method}",status="{status}"}} {n}')
            lines += ["# HELP semcollab_request_duration_seconds Request latency by endpoint.",
                      "# TYPE semcollab_request_duration_seconds histogram"]
            for ep, h in sorted(self.hist.items()):
                cum = 0
                for edge, c in zip(BUCKETS, h):
                    cum += c
                    lines.append(f'semcollab_request_duration_seconds_bucket{{endpoint="{ep}",le="{edge}"}} {cum}')
                cum += h[-1]
                lines.append(f'semcollab_request_duration_seconds_bucket{{endpoint="{ep}",le="+Inf"}} {cum}')
                lines.append(f'semcollab_request_duration_seconds_sum{{endpoint="{ep}"}} {self.sums[ep]:.6f}')
                lines.append(f'semcollab_request_duration_seconds_count{{endpoint="{ep}"}} {cum}')
        return "\n".join(lines) + "\n"


async def _send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


def _error(field: str, msg: str, kind: str = "value_error", input=None) -> dict:
    """The one error shape of this API (that of FastAPI's validation errors): ``{"detail": [{loc, msg, type}]}``,
    with the offending ``input`` when there is one (unknown ids listed)."""
    d = {"loc": field.split("."), "msg": msg, "type": kind}
    if input is not None:
        d["input"] = input
    return {"detail": [d]}


class ServeMiddleware:
    """Outermost layer: refuses an oversize body (from Content-Length, and while reading a body sent without
    one or longer than declared) with 413 before the app sees it, checks the API key, and records metrics."""

    def __init__(self, app, metrics: Metrics, known_paths: set[str], max_body_bytes: int, api_key: str | None,
                 open_paths: set[str], body_timeout_s: float = 10.0):
        self.app, self.metrics, self.known, self.body_timeout = app, metrics, known_paths, body_timeout_s
        self.max_body, self.api_key, self.open_paths = max_body_bytes, api_key, open_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        endpoint = path if path in self.known else ("/static" if path.startswith("/static/") else "other")
        status = {"code": 500}
        t0 = time.perf_counter()

        async def send_wrapped(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, send_wrapped, path)
        finally:
            self.metrics.observe(endpoint, scope.get("method", "?"), status["code"], time.perf_counter() - t0)

    async def _handle(self, scope, receive, send, path):
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None and path not in self.open_paths and not path.startswith("/static/"):
            given = headers.get(b"x-api-key", b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                return await _send_json(send, 401, _error("header.X-API-Key", "missing or wrong API key (header "
                                                          "X-API-Key)", "unauthorized"))
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                return await _send_json(send, 400, _error("header.Content-Length", "not a number", "bad_header"))
            if n > self.max_body:
                return await _send_json(send, 413, _error("body", f"request body of {n} bytes is over the limit of "
                                                          f"{self.max_body} bytes", "body_too_large"))
        chunks, size = [], 0
        deadline = time.monotonic() + self.body_timeout
        while True:  # read the whole (bounded) body, then replay it to the app
            try:  # a client that stops sending mid-body gets 408, not a request held open forever
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return await _send_json(send, 408, _error("body", f"the request body did not arrive within "
                                                          f"{self.body_timeout:g} s", "body_timeout"))
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return await _send_json(send, 413, _error("body", f"request body is over the limit of "
                                                          f"{self.max_body} bytes", "body_too_large"))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)
