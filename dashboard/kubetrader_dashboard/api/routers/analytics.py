"""/rankings and /summary: strategies ranked by a metric, and the Dashboard tab's first row."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from kubetrader.specs.metrics import METRIC_NAMES, MINIMIZED_METRICS
from kubetrader_dashboard.api.deps import ReadAccess, ServicesDep
from kubetrader_dashboard.api.problems import PROBLEM_RESPONSES, ProblemError
from kubetrader_dashboard.api.routers.backtests import Text
from kubetrader_dashboard.models.backtests import DashboardSummary, Rankings
from kubetrader_dashboard.services import analytics
from kubetrader_dashboard.services.results import ResultFilter

router = APIRouter(tags=["analytics"], responses=PROBLEM_RESPONSES)

RISK_KEYS = ("max_drawdown", "annual_volatility", "var_95", "cvar_95", "sharpe_ratio", "sortino_ratio", "beta")


@router.get("/rankings", response_model=Rankings, dependencies=[ReadAccess])
def rankings(
    services: ServicesDep,
    metric: Annotated[str, Query(max_length=64)] = "sharpe_ratio",
    group_by: Literal["strategy", "result"] = "strategy",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    symbol: Text = None,
    project: Text = None,
) -> Rankings:
    if metric not in METRIC_NAMES:
        message = f"unknown metric {metric!r}"
        raise ProblemError(422, "Invalid request", message, errors=[{"field": "metric", "message": message}])
    rows = services.store.ranking_rows(
        ResultFilter(symbol=symbol, project=project),
        metric=metric,
        descending=metric not in MINIMIZED_METRICS,
        group_by=group_by,
        limit=limit,
    )
    return analytics.rankings(rows, metric=metric, group_by=group_by)


@router.get("/summary", response_model=DashboardSummary, dependencies=[ReadAccess])
def summary(services: ServicesDep) -> DashboardSummary:
    store = services.store
    latest_id = store.latest_id()
    if latest_id is None:
        return DashboardSummary(results=store.counts(), latest=None)
    document = store.document(latest_id)
    return DashboardSummary(
        results=store.counts(),
        latest=store.summary(latest_id),
        latest_positions=document.positions,
        latest_risk={key: document.metrics.get(key) for key in RISK_KEYS},
    )
