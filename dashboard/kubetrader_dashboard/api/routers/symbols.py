"""/symbols: find a symbol to trade (Finnhub's lookup), for the Backtests tab's search box."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kubetrader.errors import SpecError
from kubetrader.symbols import SymbolMatch
from kubetrader_dashboard.api.deps import ReadAccess, ServicesDep
from kubetrader_dashboard.api.problems import PROBLEM_RESPONSES, ProblemError
from kubetrader_dashboard.models.symbols import SymbolSearch
from kubetrader_dashboard.services.symbols import SymbolSearchUnavailableError

router = APIRouter(prefix="/symbols", tags=["symbols"], responses=PROBLEM_RESPONSES)


@router.get("/search", response_model=SymbolSearch, dependencies=[ReadAccess])
def search_symbols(
    services: ServicesDep,
    q: Annotated[str, Query(min_length=1, max_length=64, description="A name or ticker.")],
    exchange: Annotated[str, Query(pattern=r"^[A-Z]{1,8}$", description="Finnhub exchange code.")] = "US",
    type_: Annotated[str | None, Query(alias="type", max_length=40, description='e.g. "Common Stock", "ETP".')] = None,
) -> SymbolSearch:
    try:
        matches: list[SymbolMatch] = services.symbols.search(q, exchange=exchange, type_=type_)
    except SpecError as exc:
        errors = [{"field": "q", "message": exc.problem}]
        raise ProblemError(422, "Invalid request", exc.problem, errors=errors) from None
    except SymbolSearchUnavailableError as exc:
        return SymbolSearch(query=q, exchange=exchange, available=False, reason=str(exc), retryable=exc.retryable)
    return SymbolSearch(query=q, exchange=exchange, items=matches)
