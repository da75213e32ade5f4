"""Prometheus metrics of the API: requests by route template, method and status, and their latency.

`GET /metrics` is outside `/api/v1` and the OpenAPI schema, and needs no token (like the
health route): request counts say nothing of the data behind them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUESTS = Counter(
    "kubetrader_api_requests_total", "API requests by method, route template and status.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "kubetrader_api_request_duration_seconds",
    "API request latency by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
METRICS = (REQUESTS, LATENCY)


def install(app: FastAPI) -> None:
    """Measure every request (by its route template, so ids do not explode the label set) and serve /metrics."""

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = getattr(request.scope.get("route"), "path", "unmatched")
            REQUESTS.labels(request.method, route, str(status)).inc()
            LATENCY.labels(request.method, route).observe(time.perf_counter() - started)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
