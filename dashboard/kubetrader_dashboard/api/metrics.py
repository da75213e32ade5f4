"""Prometheus metrics of the API: requests by handler (the route's endpoint), method and status, and latency.

`GET /metrics` is outside `/api/v1` and the OpenAPI schema, and needs no token (like the
health route): request counts say nothing of the data behind them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUESTS = Counter(
    "kubetrader_api_requests_total", "API requests by method, handler and status.", ["method", "handler", "status"]
)
LATENCY = Histogram(
    "kubetrader_api_request_duration_seconds",
    "API request latency by method and handler.",
    ["method", "handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
METRICS = (REQUESTS, LATENCY)


def install(app: FastAPI) -> None:
    """Measure every request and serve /metrics.

    Labelled by the matched route's name (its endpoint function, e.g. `get_backtest`), never the
    URL, so result ids do not explode the label set; a path no route matches is `unmatched`.
    """

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            handler = getattr(request.scope.get("route"), "name", None) or "unmatched"
            REQUESTS.labels(request.method, handler, str(status)).inc()
            LATENCY.labels(request.method, handler).observe(time.perf_counter() - started)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
