"""/trades: the trade log across every stored backtest, filtered and sorted."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kubetrader_dashboard.api.deps import ReadAccess, ServicesDep
from kubetrader_dashboard.api.problems import PROBLEM_RESPONSES, ProblemError
from kubetrader_dashboard.api.routers.backtests import Limit, Offset, Sort, Text, TradeState
from kubetrader_dashboard.models.backtests import Trade
from kubetrader_dashboard.models.common import Page
from kubetrader_dashboard.services.results import TradeFilter

router = APIRouter(prefix="/trades", tags=["trades"], responses=PROBLEM_RESPONSES)

Day = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="ISO date (entry time).")]


@router.get("", response_model=Page[Trade], dependencies=[ReadAccess])
def list_trades(
    services: ServicesDep,
    limit: Limit = 100,
    offset: Offset = 0,
    sort: Sort = "-entry_time",
    symbol: Text = None,
    strategy: Text = None,
    result_id: Text = None,
    start: Day = None,
    end: Day = None,
    state: TradeState = "closed",
) -> Page[Trade]:
    try:
        items, total = services.store.trades(
            TradeFilter(symbol, strategy, result_id, start, end, state), sort=sort, limit=limit, offset=offset
        )
    except ValueError as exc:
        raise ProblemError(422, "Invalid request", str(exc), errors=[{"field": "sort", "message": str(exc)}]) from None
    return Page[Trade](items=items, total=total, limit=limit, offset=offset)
