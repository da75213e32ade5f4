"""/backtests: the result store (list, detail, equity, trades, performance) and submitting a Backtest."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, status

from kubetrader.results.trades import closed_trades, open_positions
from kubetrader_dashboard.api.deps import ReadAccess, ServicesDep, Submitter
from kubetrader_dashboard.api.problems import PROBLEM_RESPONSES, ProblemError
from kubetrader_dashboard.api.submit import submit
from kubetrader_dashboard.models.backtests import BacktestDetail, BacktestSummary, EquityCurve, Performance, Trade
from kubetrader_dashboard.models.common import Page
from kubetrader_dashboard.models.operations import SubmissionState
from kubetrader_dashboard.services import analytics
from kubetrader_dashboard.services.results import ResultFilter, ResultNotFoundError, TradeFilter

router = APIRouter(prefix="/backtests", tags=["backtests"], responses=PROBLEM_RESPONSES)

Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Items to skip.")]
Sort = Annotated[str, Query(max_length=64, description="A column or metric name; `-` first for descending.")]
Text = Annotated[str | None, Query(max_length=200)]
TradeState = Annotated[
    Literal["closed", "open", "all"],
    Query(description="`closed`: trades (round trips, what num_trades counts); `open`: positions held at the end."),
]


def _document(services: ServicesDep, result_id: str) -> Any:
    try:
        return services.store.document(result_id)
    except ResultNotFoundError:
        raise ProblemError(404, "Not found", f"no backtest result {result_id!r}") from None


@router.get("", response_model=Page[BacktestSummary], dependencies=[ReadAccess])
def list_backtests(
    services: ServicesDep,
    limit: Limit = 50,
    offset: Offset = 0,
    sort: Sort = "-finished_at",
    strategy: Text = None,
    symbol: Text = None,
    result_status: Annotated[Literal["succeeded", "failed"] | None, Query(alias="status")] = None,
    project: Text = None,
    asset_class: Text = None,
    strategy_family: Text = None,
    name: Text = None,
) -> Page[BacktestSummary]:
    flt = ResultFilter(strategy, symbol, result_status, project, asset_class, strategy_family, name)
    try:
        items, total = services.store.list_results(flt, sort=sort, limit=limit, offset=offset)
    except ValueError as exc:
        raise ProblemError(422, "Invalid request", str(exc), errors=[{"field": "sort", "message": str(exc)}]) from None
    return Page[BacktestSummary](items=items, total=total, limit=limit, offset=offset)


@router.post(
    "",
    response_model=SubmissionState,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit a Backtest custom-resource document",
)
def submit_backtest(
    services: ServicesDep, document: Annotated[dict[str, Any], Body()], identity: Submitter
) -> SubmissionState:
    return submit(services, document, "Backtest", identity)


@router.get("/{result_id}", response_model=BacktestDetail, dependencies=[ReadAccess])
def get_backtest(services: ServicesDep, result_id: str) -> BacktestDetail:
    document = _document(services, result_id)
    return BacktestDetail(
        id=result_id,
        status=document.status,
        error=document.error,
        metadata=document.metadata,
        spec=document.spec,
        metrics=document.metrics,
        positions=document.positions,
        risk_events=document.risk_events,
        orders=document.orders,
        artifacts=document.artifacts,
        bars=len(document.equity),
        trade_count=len(closed_trades(document.trades)),
        open_positions=len(open_positions(document.trades)),
    )


@router.get("/{result_id}/equity", response_model=EquityCurve, dependencies=[ReadAccess])
def get_equity(services: ServicesDep, result_id: str) -> EquityCurve:
    return analytics.equity_curve(result_id, _document(services, result_id))


@router.get("/{result_id}/performance", response_model=Performance, dependencies=[ReadAccess])
def get_performance(services: ServicesDep, result_id: str) -> Performance:
    return analytics.performance(result_id, _document(services, result_id))


@router.get("/{result_id}/trades", response_model=Page[Trade], dependencies=[ReadAccess])
def get_trades(
    services: ServicesDep,
    result_id: str,
    limit: Limit = 100,
    offset: Offset = 0,
    sort: Sort = "entry_time",
    state: TradeState = "closed",
) -> Page[Trade]:
    _document(services, result_id)  # 404 for an unknown id rather than an empty page
    try:
        items, total = services.store.trades(
            TradeFilter(result_id=result_id, state=state), sort=sort, limit=limit, offset=offset
        )
    except ValueError as exc:
        raise ProblemError(422, "Invalid request", str(exc), errors=[{"field": "sort", "message": str(exc)}]) from None
    return Page[Trade](items=items, total=total, limit=limit, offset=offset)
