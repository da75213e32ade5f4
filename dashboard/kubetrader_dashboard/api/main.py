"""The FastAPI app: wiring only (routers, problem handlers, the services' lifetime).

`create_app(settings)` builds an app on the given settings, so tests and the
benchmark run apps on their own stores; `app` is the one uvicorn serves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from kubetrader import __version__
from kubetrader_dashboard.api import limits, metrics, problems
from kubetrader_dashboard.api.routers import (
    analytics,
    auth,
    backtests,
    live,
    logs,
    mlflow,
    operations,
    pages,
    studies,
    submissions,
    symbols,
    trades,
)
from kubetrader_dashboard.services.container import Services
from kubetrader_dashboard.settings import Settings, get_settings

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.services.close()

    app = FastAPI(
        title="kubetrader API",
        version=__version__,
        description="Backtests, studies, live deployments, MLflow experiments and the work queue.",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.services = Services.from_settings(settings)
    problems.install(app)
    limits.install(app, settings.max_body_bytes)
    metrics.install(app)
    routers = (auth, backtests, pages, trades, analytics, studies, live, submissions, mlflow, operations, logs, symbols)
    for module in routers:
        app.include_router(module.router, prefix=API_PREFIX)
    return app
