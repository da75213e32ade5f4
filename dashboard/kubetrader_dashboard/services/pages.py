"""The Backtests and Performance pages, each built in one pass over the index and one result document.

Lists and choices come from the SQLite index (`ResultStore`), trades from its trades table; only the
result shown in detail is read whole (and the store keeps the last few parsed). The chosen result
is the one the page asked for when the page offers it, else the first offered: what a select box
shows when its choice is no longer among its options.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

from kubetrader.results import analysis
from kubetrader_dashboard.models.backtests import BacktestSummary, Trade
from kubetrader_dashboard.models.common import Page
from kubetrader_dashboard.models.operations import ClusterResources
from kubetrader_dashboard.models.pages import BacktestPanel, BacktestsPage, PerformancePage, ResultChoice
from kubetrader_dashboard.services import analytics
from kubetrader_dashboard.services.container import Services
from kubetrader_dashboard.services.results import ResultFilter, ResultStore, TradeFilter

log = logging.getLogger(__name__)

COMPARE_CHOICES = 200  # results offered for comparison, best Sharpe first
PERFORMANCE_CHOICES = 200  # results offered on the Performance page, newest first
OPEN_POSITIONS_LIMIT = 100


def _chosen(wanted: str | None, offered: Sequence[str]) -> str | None:
    """`wanted` when it is offered, else the first offered (None when nothing is)."""
    if wanted is not None and wanted in offered:
        return wanted
    return offered[0] if offered else None


def _trades(store: ResultStore, result_id: str, state: Literal["closed", "open"], limit: int) -> Page[Trade]:
    items, total = store.trades(TradeFilter(result_id=result_id, state=state), sort="entry_time", limit=limit, offset=0)
    return Page[Trade](items=items, total=total, limit=limit, offset=0)


def backtest_panel(store: ResultStore, result_id: str, *, trades_limit: int) -> BacktestPanel:
    """One result as the Backtests page details it (`ResultNotFoundError` for an unknown id)."""
    document = store.document(result_id)
    return BacktestPanel(
        id=result_id,
        name=document.metadata.name,
        metrics=document.metrics,
        equity=analytics.equity_curve(result_id, document),
        rolling=analysis.rolling(document.dates, document.returns),
        research=analytics.research(document),
        trades=_trades(store, result_id, "closed", trades_limit),
        open_positions=_trades(store, result_id, "open", OPEN_POSITIONS_LIMIT),
    )


def backtests_page(
    services: Services, flt: ResultFilter, *, limit: int, offset: int, detail: str | None, trades_limit: int
) -> BacktestsPage:
    store = services.store
    items, total = store.list_results(flt, sort="-finished_at", limit=limit, offset=offset)
    chosen = _chosen(detail, [b.id for b in items])
    return BacktestsPage(
        results=Page[BacktestSummary](items=items, total=total, limit=limit, offset=offset),
        detail=None if chosen is None else backtest_panel(store, chosen, trades_limit=trades_limit),
        compare_choices=store.choices(ResultFilter(status="succeeded"), sort="-sharpe_ratio", limit=COMPARE_CHOICES),
        submissions=services.submissions.list_submissions(),
        cluster=_cluster_backtests(services),
    )


def _cluster_backtests(services: Services) -> ClusterResources:
    """The cluster's Backtests; a cluster that fails to answer is "not available" (with the error's
    type: its text holds URLs) rather than the whole page failing."""
    try:
        return services.cluster.list_resources("Backtest")
    except Exception as exc:  # the API server's errors vary (ApiException, urllib3, OSError)
        log.warning("listing the cluster's Backtests failed: %s", type(exc).__name__)
        return ClusterResources(available=False, reason=f"the cluster did not answer ({type(exc).__name__})")


def performance_page(store: ResultStore, result: str | None) -> PerformancePage:
    choices: list[ResultChoice] = store.choices(
        ResultFilter(status="succeeded"), sort="-finished_at", limit=PERFORMANCE_CHOICES
    )
    chosen = _chosen(result, [c.id for c in choices])
    if chosen is None:
        return PerformancePage(choices=choices, performance=None, equity=None)
    document = store.document(chosen)
    return PerformancePage(
        choices=choices,
        performance=analytics.performance(chosen, document),
        equity=analytics.equity_curve(chosen, document),
    )
