"""/pages: what the Backtests and Performance pages show, each in one answer (see models/pages.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from kubetrader_dashboard.api.deps import ReadAccess, ServicesDep
from kubetrader_dashboard.api.problems import PROBLEM_RESPONSES
from kubetrader_dashboard.api.routers.backtests import Limit, Offset, Text
from kubetrader_dashboard.models.pages import BacktestsPage, PerformancePage
from kubetrader_dashboard.services import pages
from kubetrader_dashboard.services.results import ResultFilter

router = APIRouter(prefix="/pages", tags=["pages"], responses=PROBLEM_RESPONSES)

ResultId = Annotated[str | None, Query(max_length=200, description="A result id the page offers; else its first.")]


@router.get("/backtests", response_model=BacktestsPage, dependencies=[ReadAccess])
def backtests_page(
    services: ServicesDep,
    limit: Limit = 50,
    offset: Offset = 0,
    name: Text = None,
    result_status: Annotated[Literal["succeeded", "failed"] | None, Query(alias="status")] = None,
    detail: ResultId = None,
    trades_limit: Annotated[int, Query(ge=1, le=1000, description="Closed trades of the detail shown.")] = 500,
) -> BacktestsPage:
    """A page of the result list (newest first), the `detail` result in full, the results to compare,
    the submissions and the cluster's Backtests."""
    flt = ResultFilter(status=result_status, name=name)
    return pages.backtests_page(services, flt, limit=limit, offset=offset, detail=detail, trades_limit=trades_limit)


@router.get("/performance", response_model=PerformancePage, dependencies=[ReadAccess])
def performance_page(services: ServicesDep, result: ResultId = None) -> PerformancePage:
    """The succeeded results to choose from (newest first) and the `result`'s analytics and equity."""
    return pages.performance_page(services.store, result)
