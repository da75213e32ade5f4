"""The ten tabs. Each takes the API client and draws; none reads a store itself.

A source that is not configured shows `st.info` with the API's reason (a state,
not an error); `st.error` is kept for the API failing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import streamlit as st
from pydantic import ValidationError

from kubetrader import formatting as fmt
from kubetrader.results.analysis import DrawdownEpisode
from kubetrader.specs import BacktestSpec, OptimizationStudySpec
from kubetrader.specs.common import SpecModel
from kubetrader_dashboard.models.backtests import BacktestSummary
from kubetrader_dashboard.models.operations import ClusterResources, SubmissionState
from kubetrader_dashboard.models.pages import BacktestPanel, ResultChoice
from kubetrader_dashboard.ui import charts
from kubetrader_dashboard.ui.client import ApiClient, ApiError
from kubetrader_dashboard.ui.robustness import robustness_view

HEADLINE = ("total_return", "cagr", "sharpe_ratio", "max_drawdown", "num_trades")
COMPARE_METRICS = (
    "total_return",
    "cagr",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "annual_volatility",
    "num_trades",
    "trade_win_rate",
    "final_value",
)
RANK_METRICS = (
    "sharpe_ratio",
    "sortino_ratio",
    "calmar_ratio",
    "total_return",
    "cagr",
    "max_drawdown",
    "profit_factor",
)

# The form takes a name and a spec, never a whole custom resource: metadata (namespace, labels,
# annotations such as the operator's overrides) is the API's to set.
BACKTEST_SPEC_TEMPLATE = {
    "strategy": {"path": "strategies.sma_crossover.SMACrossover", "params": {"fast": 10, "slow": 30}},
    "data": {"symbols": ["ORCL"], "start": "2010-01-01", "end": "2014-12-31", "timeframe": "1d"},
    "broker": {"cash": 100000, "commission": {"model": "ib-standard"}},
}
SPACE_TEMPLATE = {"fast": {"type": "int", "low": 5, "high": 30}, "slow": {"type": "int", "low": 40, "high": 120}}


_pct = fmt.percent
_num = fmt.number
REFRESH_SECONDS = 3.0


def _metric_card(col: Any, name: str, value: float | None) -> None:
    """A card with the metric's human label, its value in its unit and its description as the tooltip."""
    col.metric(fmt.metric_label(name), fmt.metric_value(name, value), help=fmt.metric_help(name) or None)


def _metric_frame(names: Any, *columns: tuple[str, Mapping[str, float | None]]) -> pd.DataFrame:
    """Metric rows (label, then one formatted column per source): strings, so nothing is clipped or raw."""
    return pd.DataFrame(
        [
            {"Metric": fmt.metric_label(n), **{label: fmt.metric_value(n, values.get(n)) for label, values in columns}}
            for n in names
        ]
    )


def _trade_frame(trades: Any, *, with_result: bool = False) -> pd.DataFrame:
    rows = []
    for t in trades:
        row = {"Result": t.result_id} if with_result else {}
        row |= {
            "Symbol": t.symbol,
            "Entry": fmt.timestamp(t.entry_time),
            "Exit": "open" if t.open else fmt.timestamp(t.exit_time),
            "Size": t.size,
            "Entry price": t.entry_price,
            "Exit price": t.exit_price,
            "PnL": t.pnl,
            "Net PnL": t.pnl_net,
            "Commission": t.commission,
            "Bars": t.bars_held,
        }
        rows.append(row)
    return pd.DataFrame(rows)


TRADE_COLUMNS = {
    name: st.column_config.NumberColumn(name, format="localized")
    for name in ("Size", "Entry price", "Exit price", "PnL", "Net PnL", "Commission")
}


def _live(render: Any, *, running: bool, key: str) -> None:
    """Draw `render` in a fragment that refreshes itself while work is running, and only then."""
    st.fragment(render, run_every=REFRESH_SECONDS if running else None)()


def _show_problem(error: ApiError) -> None:
    st.error(f"API error: {error}")


# -- 1 Dashboard ----------------------------------------------------------------------------
def dashboard(client: ApiClient) -> None:
    summary = client.summary()
    counts = summary.results
    cols = st.columns(4)
    cols[0].metric("Results stored", counts.get("succeeded", 0))
    cols[1].metric("Failed runs", counts.get("failed", 0))
    live = client.live()
    if live.available:
        cols[2].metric("Net liquidation (live)", _num(live.account.get("net_liquidation")))
        cols[3].metric("Unrealized PnL (live)", _num(live.account.get("unrealized_pnl")))
    else:
        cols[2].metric("Live account", "not available")
        cols[3].metric("Unreadable result files", counts.get("unreadable", 0))
    latest = summary.latest
    if latest is None:
        st.info("No backtest results yet.")
        return
    st.subheader(f"Latest backtest: {latest.name}")
    st.caption(f"{latest.strategy} on {', '.join(latest.symbols)}, {latest.start} to {latest.end}; id {latest.id}")
    row = st.columns(5)
    for col, name in zip(row, HEADLINE, strict=True):
        _metric_card(col, name, getattr(latest, name))
    st.markdown("**Risk metrics**")
    risk = summary.latest_risk
    risk_cols = st.columns(len(risk) or 1)
    for col, (name, value) in zip(risk_cols, risk.items(), strict=False):
        _metric_card(col, name, value)
    st.plotly_chart(charts.equity_chart(client.equity(latest.id)), key="dashboard-equity")
    st.markdown("**Top positions**")
    positions = live.positions if live.available else []
    if positions:
        frame = pd.DataFrame([p.model_dump() for p in positions]).sort_values("market_value", ascending=False)
        st.dataframe(frame.head(10), hide_index=True)
    elif summary.latest_positions:
        st.caption("Open at the end of the latest backtest (not counted as trades).")
        frame = pd.DataFrame([{"symbol": s, "size": v} for s, v in summary.latest_positions.items()]).sort_values(
            "size", key=abs, ascending=False
        )
        st.dataframe(frame, hide_index=True)
    else:
        st.caption("The latest backtest ended flat.")


# -- 2 Live Trading -------------------------------------------------------------------------
def live_trading(client: ApiClient) -> None:
    state = client.live()
    if not state.available:
        st.info(f"Live trading not available: {state.reason}")
    else:
        st.caption(f"Deployment {state.deployment or '?'} · mode {state.mode or '?'}")
        status = st.columns(3)
        status[0].metric("Broker connection", "connected" if state.connected else "DISCONNECTED")
        status[1].metric("Trading", f"HALTED: {state.halted}" if state.halted else "active")
        age = state.heartbeat_age_seconds
        status[2].metric("Last heartbeat", "never" if age is None else f"{age:.0f} s ago")
        if state.halted or state.connected is False:
            st.warning(
                "The runner takes no new exposure: " + (state.halted or "the broker connection is down, it reconnects")
            )
        cols = st.columns(max(1, len(state.account)))
        for col, (name, value) in zip(cols, state.account.items(), strict=False):
            col.metric(name.replace("_", " ").capitalize(), fmt.money(value))
        st.markdown("**Positions**")
        st.dataframe(pd.DataFrame([p.model_dump() for p in state.positions]), hide_index=True)
        st.markdown("**Open orders**")
        st.dataframe(pd.DataFrame([o.model_dump() for o in state.open_orders]), hide_index=True)
        st.markdown("**Journal**")
        if state.journal_reason:
            st.caption(f"Journal not available: {state.journal_reason}")
        st.dataframe(pd.DataFrame([j.model_dump() for j in state.journal[-200:]]), hide_index=True)
    if state.deployments:
        st.markdown("**LiveDeployments in the cluster**")
        st.dataframe(pd.DataFrame([d.model_dump(exclude={"conditions"}) for d in state.deployments]), hide_index=True)


# -- 3 Trade Log ----------------------------------------------------------------------------
def trade_log(client: ApiClient) -> None:
    cols = st.columns(5)
    symbol = cols[0].text_input("Symbol", key="trades-symbol").strip().upper() or None
    strategy = cols[1].text_input("Strategy (import path)", key="trades-strategy").strip() or None
    start = cols[2].date_input("From", value=None, key="trades-start")
    end = cols[3].date_input("To", value=None, key="trades-end")
    sorts = {
        "-entry_time": "Newest first",
        "entry_time": "Oldest first",
        "-pnl_net": "Best net PnL",
        "pnl_net": "Worst net PnL",
        "-commission": "Highest commission",
        "symbol": "Symbol",
    }
    sort = cols[4].selectbox("Sort", list(sorts), format_func=sorts.__getitem__, key="trades-sort")
    page = client.trades(
        symbol=symbol,
        strategy=strategy,
        start=start.isoformat() if start else None,
        end=end.isoformat() if end else None,
        sort=sort,
        limit=500,
    )
    totals = st.columns(3)
    totals[0].metric("Trades matching", fmt.count(page.total), help="Closed round trips (open positions apart).")
    totals[1].metric("Net PnL (shown)", fmt.money(sum(t.pnl_net for t in page.items)))
    totals[2].metric("Commissions (shown)", fmt.money(sum(t.commission for t in page.items)))
    if page.items:
        st.dataframe(_trade_frame(page.items, with_result=True), hide_index=True, column_config=TRADE_COLUMNS)
    else:
        st.info("No trades match these filters.")


# -- 4 Performance --------------------------------------------------------------------------
def performance(client: ApiClient) -> None:
    key = "performance-result"
    # One call: the choices and the chosen result's analytics (the one the select box holds, else the newest).
    view = client.performance_page(st.session_state.get(key))
    if not view.choices:
        st.info("No backtest results in the store yet: submit one on the Backtests tab.")
        return
    labels = {
        c.id: f"{c.name} · {c.strategy.rsplit('.', 1)[-1]} · {','.join(c.symbols)} ({c.id})" for c in view.choices
    }
    result_id = st.selectbox("Backtest", list(labels), format_func=labels.__getitem__, key=key)
    if view.performance is None or view.performance.id != result_id:  # the box chose other than the API did
        view = client.performance_page(result_id)
    perf, curve = view.performance, view.equity
    if perf is None or curve is None:
        return
    bench = perf.benchmark
    cols = st.columns(6)
    cols[0].metric("Strategy return", fmt.percent(bench.strategy_return))
    cols[1].metric("Benchmark return", fmt.percent(bench.benchmark_return))
    cols[2].metric("Excess return", fmt.percent(bench.excess_return))
    _metric_card(cols[3], "sharpe_ratio", perf.metrics.get("risk_adjusted", {}).get("sharpe_ratio"))
    _metric_card(cols[4], "beta", bench.beta)
    cols[5].metric("Correlation", fmt.number(bench.correlation))
    st.plotly_chart(charts.equity_chart(curve, "Strategy vs benchmark"), key="performance-equity")
    left, right = st.columns(2)
    left.plotly_chart(charts.return_histogram(perf.return_distribution), key="performance-hist")
    right.plotly_chart(charts.drawdown_chart(perf.dates, perf.drawdown), key="performance-drawdown")
    if perf.rolling is not None:
        st.plotly_chart(charts.rolling_chart(perf.rolling), key="performance-rolling")
    st.plotly_chart(charts.monthly_heatmap(perf.monthly_returns), key="performance-monthly")
    strategy = {name: v for values in perf.metrics.values() for name, v in values.items()}
    _research_tables(strategy, perf.benchmark_metrics, perf.top_drawdowns, perf.costs)
    st.markdown("**Metrics**")
    groups = st.columns(len(perf.metrics))
    for col, (group, values) in zip(groups, perf.metrics.items(), strict=False):
        col.markdown(f"*{fmt.group_label(group)}*")
        col.dataframe(_metric_frame(values, ("Value", values)), hide_index=True, key=f"m-{group}")


def _research_tables(
    strategy: Mapping[str, float | None],
    benchmark: Mapping[str, float | None],
    top_drawdowns: Sequence[DrawdownEpisode],
    cost_settings: Mapping[str, str],
) -> None:
    """Strategy beside benchmark, the five deepest drawdowns, and the run's costs."""
    versus, drawdowns, costs = st.columns([3, 4, 2])
    versus.markdown("**Strategy and benchmark**")
    versus.dataframe(_metric_frame(benchmark, ("Strategy", strategy), ("Benchmark", benchmark)), hide_index=True)
    drawdowns.markdown("**Top 5 drawdowns**")
    drawdowns.dataframe(
        pd.DataFrame(
            [
                {
                    "Peak": e.peak,
                    "Trough": e.trough,
                    "Recovered": e.recovered or "not yet",
                    "Depth": fmt.percent(e.depth),
                    "Days": fmt.count(e.days),
                }
                for e in top_drawdowns
            ]
        ),
        hide_index=True,
    )
    costs.markdown("**Costs and slippage**")
    costs.dataframe(pd.DataFrame([{"Setting": k, "Value": v} for k, v in cost_settings.items()]), hide_index=True)


# -- 5 Analytics ----------------------------------------------------------------------------
def analytics(client: ApiClient) -> None:
    cols = st.columns(2)
    metric = cols[0].selectbox("Rank by", RANK_METRICS, format_func=fmt.metric_label, key="rank-metric")
    group_by = cols[1].radio("Per", ["strategy", "result"], horizontal=True, key="rank-group")
    rankings = client.rankings(metric=metric, group_by=group_by, limit=50)
    if not rankings.rows:
        st.info("No succeeded results to rank yet.")
        return
    frame = pd.DataFrame([r.model_dump() for r in rankings.rows])
    for column in ("best", "mean", "median", "worst"):
        if column in frame:
            frame[column] = [fmt.metric_value(metric, v) for v in frame[column]]
    labels = [r.key.rsplit(".", 1)[-1] for r in rankings.rows]
    st.plotly_chart(
        charts.bar_chart(
            labels, [r.best for r in rankings.rows], f"Best {fmt.metric_label(metric)}",
            percent=fmt.is_percent_metric(metric),
        ),
        key="rank-bar",
    )  # fmt: skip
    st.dataframe(frame, hide_index=True)
    st.markdown("**Compare results**")
    _compare(client, "compare-results", client.backtests(limit=200, sort="-sharpe_ratio", status="succeeded").items)


def _compare(client: ApiClient, key: str, choices: Sequence[ResultChoice | BacktestSummary]) -> None:
    """Two to five of `choices` side by side: growth of 1 overlaid, headline metrics in columns.
    The chosen results are read only once chosen (and through the client's cache)."""
    options = {f"{b.name} ({b.id})": b.id for b in choices}
    chosen = st.multiselect("Pick 2 to 5 results", list(options), max_selections=5, key=key)
    if len(chosen) < 2:
        st.caption("Pick two or more results to compare them.")
        return
    ids = [options[c] for c in chosen]
    rows = [client.backtest(i) for i in ids]
    st.dataframe(
        _metric_frame(COMPARE_METRICS, *((f"{r.metadata.name} ({r.id[-6:]})", r.metrics) for r in rows)),
        hide_index=True,
    )
    st.plotly_chart(
        charts.normalized_equity([(r.metadata.name, client.equity(r.id)) for r in rows]), key=f"{key}-equity"
    )


# -- 6 Backtests ----------------------------------------------------------------------------
def backtests(client: ApiClient) -> None:
    cols = st.columns(3)
    name = cols[0].text_input("Name contains", key="bt-name").strip() or None
    status = cols[1].selectbox("Status", ["", "succeeded", "failed"], key="bt-status") or None
    page_no = int(cols[2].number_input("Page", min_value=1, value=1, step=1, key="bt-page"))
    query = {"name": name, "status": status, "limit": 50, "offset": 50 * (page_no - 1)}
    # One call for the page: the list, the result in detail (the one the select box holds when it
    # is on this page, else the page's first), the results to compare, the submissions.
    view = client.backtests_page(**query, detail=st.session_state.get("bt-detail"))
    page = view.results
    st.caption(f"{page.total} results; page {page_no} of {max(1, -(-page.total // 50))}")
    if page.items:
        st.dataframe(_summary_frame(page.items), hide_index=True)
        labels = {b.id: f"{b.name} ({b.id})" for b in page.items}
        chosen = st.selectbox("Detail", list(labels), format_func=labels.__getitem__, key="bt-detail")
        panel = view.detail
        if chosen and (panel is None or panel.id != chosen):  # the box chose other than the API did
            panel = client.backtests_page(**query, detail=chosen).detail
        if panel is not None:
            _backtest_panel(client, panel)
    else:
        st.info("No results match.")
    st.markdown("**Compare backtests**")
    _compare(client, "bt-compare", view.compare_choices)
    _symbol_search(client)
    st.markdown("**Submit a Backtest**")
    with st.form("submit-backtest"):
        name = st.text_input("Name", "sma-orcl", key="submit-backtest-name")
        text = st.text_area("Spec (JSON)", json.dumps(BACKTEST_SPEC_TEMPLATE, indent=2), height=260)
        sent = st.form_submit_button("Submit")
    if sent:
        try:
            spec_doc: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            st.warning(f"Not valid JSON: {exc}")
        else:
            _submit(client, "Backtest", name, BacktestSpec, spec_doc)
    # A Backtest submitted in this run is not in the page's answer (asked for before): then ask afresh.
    _running(client, "backtests", None if sent else view.submissions, view.cluster)


def _backtest_panel(client: ApiClient, panel: BacktestPanel) -> None:
    """One result in detail: headline cards, equity and drawdown, rolling Sharpe, research tables, trades."""
    cards = st.columns(5)
    for col, metric in zip(cards, HEADLINE, strict=True):
        _metric_card(col, metric, panel.metrics.get(metric))
    st.plotly_chart(charts.equity_chart(panel.equity), key="bt-equity")
    st.plotly_chart(charts.drawdown_chart(panel.equity.dates, panel.equity.drawdown), key="bt-drawdown")
    if panel.rolling is not None:
        st.plotly_chart(charts.rolling_chart(panel.rolling), key="bt-rolling")
    research = panel.research
    _research_tables(research.strategy_metrics, research.benchmark_metrics, research.top_drawdowns, research.costs)
    trades = panel.trades
    st.markdown(f"**Trades** ({fmt.count(trades.total)} closed round trips)")
    st.dataframe(_trade_frame(trades.items), hide_index=True, column_config=TRADE_COLUMNS)
    held = panel.open_positions
    if held.total:
        st.markdown(f"**Open at the end** ({held.total}; not trades, PnL unrealised at the last close)")
        st.dataframe(_trade_frame(held.items), hide_index=True, column_config=TRADE_COLUMNS)
    # Drawn only when open (the expander reruns the page when toggled): the spec is read then.
    spec = st.expander("Spec and metrics", key="bt-spec", on_change="rerun")
    if spec.open:
        detail = client.backtest(panel.id)
        spec.json({"spec": detail.spec, "metrics": detail.metrics})


def _symbol_search(client: ApiClient) -> None:
    """Find a symbol to backtest (Finnhub, through the API): the matches, and how to fetch its bars."""
    st.markdown("**Find a symbol**")
    with st.form("symbol-search"):
        cols = st.columns([3, 1, 2])
        query = cols[0].text_input("Name or ticker", key="sym-query")
        exchange = cols[1].text_input("Exchange", "US", key="sym-exchange")
        type_ = cols[2].selectbox("Type", ["", "Common Stock", "ETP", "ADR", "REIT"], key="sym-type")
        searched = st.form_submit_button("Search")
    if not (searched and query.strip()):
        return
    try:
        found = client.symbol_search(query.strip(), exchange=exchange.strip().upper() or "US", type_=type_ or None)
    except ApiError as exc:
        _show_problem(exc)
        return
    if not found.available:
        st.warning(f"Symbol search is not available: {found.reason}")
        return
    if not found.items:
        st.info(f"No symbols match {found.query!r} on {found.exchange}.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Symbol": m.symbol,
                    "Description": m.description,
                    "Type": m.type,
                    "Exchange": m.exchange or "",
                    "Currency": m.currency or "",
                    "FIGI": m.figi or "",
                }
                for m in found.items
            ]
        ),
        hide_index=True,
    )
    first = found.items[0].symbol
    st.caption(
        f"To backtest one: `kubetrader symbols resolve {first}` checks it against IB's contract details, "
        f"`kubetrader data download {first} --start ... --end ...` fetches its bars; "
        "then name it in `spec.data.symbols`."
    )


def _summary_frame(items: Any) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Name": b.name,
                "Strategy": b.strategy.rsplit(".", 1)[-1],
                "Symbols": ", ".join(b.symbols),
                "Period": f"{b.start} to {b.end}",
                "Status": b.status,
                **{fmt.metric_label(n): fmt.metric_value(n, getattr(b, n)) for n in SUMMARY_METRICS},
                "Finished": fmt.timestamp(b.finished_at),
                "Id": b.id,
            }
            for b in items
        ]
    )


SUMMARY_METRICS = ("sharpe_ratio", "total_return", "max_drawdown", "cagr", "num_trades")


def _submit(client: ApiClient, kind: Any, name: str, model: type[SpecModel], spec: Any) -> None:
    """Validate the spec with the engine's own model (the API's), then submit it as `kind` `name`."""
    try:
        validated = model.model_validate(spec)
    except ValidationError as exc:
        fields = "; ".join(f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        st.warning(f"Refused: {fields}")
        return
    try:
        state = client.submit(kind, name, validated)
    except ApiError as exc:
        fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in exc.errors)
        st.warning(f"Refused ({exc.status} {exc.title}): {fields or exc.detail}")
        return
    st.success(f"Submitted {state.kind} {state.name} ({state.target}): submission {state.id}")


def _running(
    client: ApiClient, plural: str, submissions: Sequence[SubmissionState] | None, cluster: ClusterResources
) -> None:
    """The submissions (refreshing themselves while any is running) and the cluster's resources.

    `submissions` is what the page's own call returned (None: fetch them); the fragment's own
    reruns (which run it alone, not the page) fetch afresh. The page's answer is handed over in the
    session state, which the full run sets and the fragment takes, so a fragment rerun never draws
    it again.
    """
    st.markdown("**Submissions and their status**")
    flag = f"running-{plural}"
    handed = f"{flag}-page-answer"
    if submissions is None:
        st.session_state.pop(handed, None)
    else:
        st.session_state[handed] = list(submissions)

    def draw() -> None:
        answer = st.session_state.pop(handed, None)
        submissions = client.submissions() if answer is None else answer
        running = any(s.state in ("queued", "running", "created") for s in submissions)
        if submissions:
            frame = pd.DataFrame([s.model_dump() for s in submissions])
            for column in ("submitted_at", "finished_at"):
                frame[column] = [fmt.timestamp(v) if v else fmt.MISSING for v in frame[column]]
            st.dataframe(frame.fillna(fmt.MISSING), hide_index=True)
        else:
            st.caption("Nothing submitted through this API since it started.")
        if running != st.session_state.get(flag, False):
            st.session_state[flag] = running
            st.rerun()  # start (or stop) refreshing this fragment

    _live(draw, running=st.session_state.get(flag, False), key=flag)
    if cluster.available:
        st.markdown(f"**{plural} in the cluster**")
        st.dataframe(pd.DataFrame([r.model_dump(exclude={"conditions"}) for r in cluster.items]), hide_index=True)
    else:
        st.caption(f"Cluster: not available ({cluster.reason}).")


# -- 7 Optimization -------------------------------------------------------------------------
def optimization(client: ApiClient) -> None:
    studies = client.studies()
    if not studies.available:
        st.info(f"Optimization studies not available: {studies.reason}")
    elif not studies.items:
        st.info("No studies in the Optuna storage yet.")
    else:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "Study": s.name,
                        "Direction": s.direction,
                        "Trials": s.trials,
                        "Complete": s.complete,
                        "Running": s.running,
                        "Failed": s.failed,
                        "Best": _num(s.best_value),
                        "Best parameters": ", ".join(f"{k}={v}" for k, v in (s.best_params or {}).items()),
                        "Started": fmt.timestamp(s.started),
                    }
                    for s in studies.items
                ]
            ),
            hide_index=True,
        )
        name = st.selectbox("Study", [s.name for s in studies.items], key="study-name")
        if name:
            detail = client.study(name)
            summary = detail.summary
            done = summary.complete + summary.failed + summary.pruned
            st.progress(done / summary.trials if summary.trials else 0.0, text=f"{done} of {summary.trials} trials")
            cols = st.columns(5)
            cols[0].metric("Trials", summary.trials)
            cols[1].metric("Complete", summary.complete)
            cols[2].metric("Running", summary.running)
            cols[3].metric("Failed", summary.failed)
            cols[4].metric(f"Best ({summary.direction})", _num(summary.best_value))
            if summary.running:
                st.caption(f"Trials are running: this page refreshes every {REFRESH_SECONDS:.0f} s.")
            st.plotly_chart(charts.study_history(detail), key="study-history")
            if detail.param_importance:
                imp = detail.param_importance
                st.plotly_chart(charts.bar_chart(list(imp), list(imp.values()), "Parameter importance"), key="imp")
            else:
                st.caption(f"Parameter importance: {detail.importance_note}")
            st.markdown("**Best parameters**")
            st.json(summary.best_params or {})
            robustness_view(client, name)
    st.markdown("**Set up a study**")
    with st.form("submit-study"):
        head = st.columns(3)
        name = head[0].text_input("Name", "sma-study")
        strategy = head[1].text_input("Strategy", "strategies.sma_crossover.SMACrossover")
        symbols = head[2].text_input("Symbols", "ORCL")
        row = st.columns(4)
        start = row[0].text_input("Start", "2010-01-01")
        end = row[1].text_input("End", "2014-12-31")
        trials = row[2].number_input("Trials", min_value=1, max_value=10_000, value=50)
        metric = row[3].selectbox("Objective", RANK_METRICS, format_func=fmt.metric_label)
        space = st.text_area("Parameter space (JSON)", json.dumps(SPACE_TEMPLATE, indent=2), height=140)
        constraints = st.text_input("Constraints (comma separated)", "fast < slow")
        sent = st.form_submit_button("Submit study")
    if sent:
        try:
            space_doc = json.loads(space)
        except json.JSONDecodeError as exc:
            st.warning(f"Parameter space is not valid JSON: {exc}")
            return
        spec = {
            "backtest": {
                "strategy": {"path": strategy},
                "data": {"symbols": [s.strip() for s in symbols.split(",") if s.strip()], "start": start, "end": end},
            },
            "space": space_doc,
            "constraints": [c.strip() for c in constraints.split(",") if c.strip()],
            "objective": {"metric": metric, "direction": "minimize" if metric == "max_drawdown" else "maximize"},
            "trials": int(trials),
        }
        _submit(client, "OptimizationStudy", name, OptimizationStudySpec, spec)


# -- 8 MLflow -------------------------------------------------------------------------------
def mlflow(client: ApiClient) -> None:
    unfiltered = client.mlflow_overview()
    if not unfiltered.available:
        st.info(f"MLflow not available: {unfiltered.reason}")
        return
    cols = st.columns(3)
    project = cols[0].selectbox("Project", ["", *unfiltered.projects], key="mlflow-project") or None
    asset_class = cols[1].selectbox("Asset class", ["", *unfiltered.asset_classes], key="mlflow-asset") or None
    family = cols[2].selectbox("Strategy family", ["", *unfiltered.strategy_families], key="mlflow-family") or None
    overview = client.mlflow_overview(project=project, asset_class=asset_class, strategy_family=family)
    cards = st.columns(4)
    cards[0].metric("Experiments", overview.experiments)
    cards[1].metric("Runs", overview.runs)
    cards[2].metric("Runs, last 7 days", overview.runs_last_7_days)
    cards[3].metric("Failed runs", overview.failed_runs)
    if overview.ui_url:
        st.link_button("Open the MLflow UI", overview.ui_url)
    st.caption(f"Tracking store: {overview.tracking_uri}")
    rows = overview.rows
    if not rows:
        st.info("No experiments match these filters.")
        return
    table = pd.DataFrame(
        [
            {
                "Experiment": r.name,
                "Runs": r.runs,
                "Failed": r.failed_runs,
                "Last run": fmt.epoch_ms(r.last_run_time),
                "Best Sharpe": fmt.metric_value("sharpe_ratio", r.best_sharpe),
                "Best run's total return": fmt.metric_value("total_return", r.best_total_return),
                "Best run's max drawdown": fmt.metric_value("max_drawdown", r.best_max_drawdown),
            }
            for r in rows
        ]
    )
    st.dataframe(table, hide_index=True)
    names = [r.name for r in rows]
    left, right = st.columns(2)
    left.plotly_chart(charts.bar_chart(names, [r.best_sharpe for r in rows], "Best Sharpe ratio"), key="mlf-sharpe")
    right.plotly_chart(
        charts.bar_chart(names, [r.best_total_return for r in rows], "Total return (best run)", percent=True),
        key="mlf-return",
    )
    st.plotly_chart(charts.risk_adjusted_scatter(rows), key="mlf-scatter")
    st.markdown("**Compare experiments (their best runs)**")
    chosen = st.multiselect("Pick 2 to 5 experiments", names, max_selections=5, key="mlflow-compare")
    if len(chosen) >= 2:
        run_ids = [r.best_run_id for r in rows if r.name in chosen and r.best_run_id]
        if len(run_ids) >= 2:
            comparison = client.mlflow_compare(run_ids)
            names_shown = [r.experiment_name or r.run_id for r in comparison.runs]
            frame = _metric_frame(COMPARE_METRICS, *zip(names_shown, (r.metrics for r in comparison.runs), strict=True))
            st.dataframe(frame, hide_index=True)
    st.markdown("**Recent runs**")
    runs = client.mlflow_runs(limit=20)
    # A plain table: twenty rows read better as text than in a grid, and copy as text.
    st.table(
        pd.DataFrame(
            [
                {
                    "Run": r.run_name or r.run_id,
                    "Experiment": r.experiment_name or r.experiment_id,
                    "Status": r.status.lower(),
                    "Started": fmt.epoch_ms(r.start_time),
                    "Ended": fmt.epoch_ms(r.end_time),
                    **{fmt.metric_label(n): fmt.metric_value(n, getattr(r, n)) for n in SUMMARY_METRICS[:3]},
                }
                for r in runs.items
            ]
        ).style.hide(axis="index")
    )


# -- 9 Health -------------------------------------------------------------------------------
def health(client: ApiClient) -> None:
    report = client.health()
    st.metric("Overall", report.status)
    icons = {"ok": "🟢 ok", "down": "🔴 down", "not_configured": "⚪ not configured"}
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "component": c.name,
                    "status": icons[c.status],
                    "detail": c.detail or "",
                    "latency ms": fmt.number(c.latency_ms, 1) if c.latency_ms is not None else "",
                }
                for c in report.components
            ]
        ),
        hide_index=True,
    )
    system = report.system
    cols = st.columns(4)
    cols[0].metric("CPU", _num(system.cpu_percent, 1) + "%")
    cols[1].metric("Memory used", _num(system.memory_used_percent, 1) + "%")
    cols[2].metric("Disk used", _num(system.disk_used_percent, 1) + "%")
    cols[3].metric("CPUs", system.cpu_count or fmt.MISSING)
    st.markdown("**Work queue**")
    queue = client.queue()
    if not queue.available or queue.stats is None:
        st.info(f"Work queue not available: {queue.reason}")
        return
    stats = queue.stats
    qcols = st.columns(5)
    qcols[0].metric("Pending", stats.pending)
    qcols[1].metric("Running", stats.running)
    qcols[2].metric("Dead letters", stats.dead)
    qcols[3].metric("Tasks / min", _num(stats.throughput_per_min, 1))
    qcols[4].metric("Health score", stats.health)
    for reason in stats.health_reasons:
        st.caption(reason)
    if stats.workers:
        st.dataframe(pd.DataFrame([w.model_dump() for w in stats.workers]), hide_index=True)
    if stats.batches:
        st.dataframe(pd.DataFrame([b.model_dump() for b in stats.batches]), hide_index=True)


# -- 10 Settings ----------------------------------------------------------------------------
def settings(client: ApiClient) -> None:
    view = client.settings()
    st.caption(f"API: {client.base_url} · secrets are masked by the API before they reach this page.")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "name": e.name,
                    "environment variable": e.env,
                    "value": e.value if e.value is not None else "(not set)",
                    "description": fmt.plain(e.description),
                }
                for e in view.entries
            ]
        ),
        hide_index=True,
    )


# -- 11 Logs --------------------------------------------------------------------------------
LOG_KINDS = ("", "Backtest", "OptimizationStudy", "worker", "operator", "engine", "study-driver")


def logs(client: ApiClient) -> None:
    cols = st.columns([2, 3, 1])
    kind = cols[0].selectbox("Kind", LOG_KINDS, format_func=lambda k: k or "all", key="logs-kind") or None
    name = cols[1].text_input("Resource name contains", key="logs-name").strip() or None
    tail = int(cols[2].number_input("Last lines", min_value=10, max_value=10_000, value=500, step=100, key="logs-tail"))
    sources = client.logs(kind=kind, name=name)
    if sources.cluster_reason:
        st.caption(f"Pod logs and Events: not available ({sources.cluster_reason}).")
    if not sources.items:
        st.info("No logs yet: each run keeps its log beside its result (results/backtests/{id}.log).")
    else:
        labels = {f"{s.kind} · {s.name} ({s.origin}, {fmt.timestamp(s.updated)})": s.key for s in sources.items}
        chosen = st.selectbox("Log", list(labels), key="logs-source")
        if chosen:
            text = client.log(labels[chosen], tail=tail)
            if text.truncated:
                st.caption(f"The last {tail} lines.")
            st.code("\n".join(text.lines) or "(empty)", language=None)
    events = client.events(kind=kind, name=name)
    if events.available:
        st.markdown("**Kubernetes Events**")
        if events.items:
            frame = pd.DataFrame([e.model_dump() for e in events.items])
            frame["time"] = [fmt.timestamp(v) for v in frame["time"]]
            st.dataframe(frame.fillna(""), hide_index=True)
        else:
            st.caption("No Events for these resources.")


TABS = (
    ("Dashboard", dashboard),
    ("Live Trading", live_trading),
    ("Trade Log", trade_log),
    ("Performance", performance),
    ("Analytics", analytics),
    ("Backtests", backtests),
    ("Optimization", optimization),
    ("MLflow", mlflow),
    ("Health", health),
    ("Logs", logs),
    ("Settings", settings),
)
