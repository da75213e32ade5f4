"""The ten tabs. Each takes the API client and draws; none reads a store itself.

A source that is not configured shows `st.info` with the API's reason (a state,
not an error); `st.error` is kept for the API failing.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from kubetrader_dashboard.ui import charts
from kubetrader_dashboard.ui.client import ApiClient, ApiError

RANK_METRICS = (
    "sharpe_ratio",
    "sortino_ratio",
    "calmar_ratio",
    "total_return",
    "cagr",
    "max_drawdown",
    "profit_factor",
)

BACKTEST_TEMPLATE = {
    "apiVersion": "kubetrader.io/v1alpha1",
    "kind": "Backtest",
    "metadata": {"name": "sma-orcl"},
    "spec": {
        "strategy": {"path": "strategies.sma_crossover.SMACrossover", "params": {"fast": 10, "slow": 30}},
        "data": {"symbols": ["ORCL"], "start": "2010-01-01", "end": "2014-12-31", "timeframe": "1d"},
        "broker": {"cash": 100000, "commission": {"model": "ib-standard"}},
    },
}
SPACE_TEMPLATE = {"fast": {"type": "int", "low": 5, "high": 30}, "slow": {"type": "int", "low": 40, "high": 120}}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _show_problem(error: ApiError) -> None:
    st.error(f"API error: {error}")


def _result_choices(client: ApiClient, key: str) -> str | None:
    """A select box of stored results (newest first); returns the chosen id."""
    page = client.backtests(limit=200, sort="-finished_at", status="succeeded")
    if not page.items:
        st.info("No backtest results in the store yet: submit one on the Backtests tab.")
        return None
    labels = {f"{b.name} · {b.strategy.rsplit('.', 1)[-1]} · {','.join(b.symbols)} ({b.id})": b.id for b in page.items}
    choice = st.selectbox("Backtest", list(labels), key=key)
    return labels[choice] if choice else None


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
    row[0].metric("Total return", _pct(latest.total_return))
    row[1].metric("CAGR", _pct(latest.cagr))
    row[2].metric("Sharpe", _num(latest.sharpe_ratio))
    row[3].metric("Max drawdown", _pct(latest.max_drawdown))
    row[4].metric("Trades", _num(latest.num_trades, 0))
    st.markdown("**Risk metrics**")
    risk = summary.latest_risk
    risk_cols = st.columns(len(risk) or 1)
    for col, (name, value) in zip(risk_cols, risk.items(), strict=False):
        shown = _pct(value) if name in ("max_drawdown", "annual_volatility", "var_95", "cvar_95") else _num(value)
        col.metric(name.replace("_", " "), shown)
    st.plotly_chart(charts.equity_chart(client.equity(latest.id)), key="dashboard-equity")
    st.markdown("**Top positions**")
    positions = live.positions if live.available else []
    if positions:
        frame = pd.DataFrame([p.model_dump() for p in positions]).sort_values("market_value", ascending=False)
        st.dataframe(frame.head(10), hide_index=True)
    elif summary.latest_positions:
        frame = pd.DataFrame([{"symbol": s, "size": v} for s, v in summary.latest_positions.items()]).sort_values(
            "size", key=abs, ascending=False
        )
        st.caption("Final positions of the latest backtest (no live runner configured).")
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
            col.metric(name.replace("_", " "), _num(value))
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
    sort = cols[4].selectbox(
        "Sort", ["-entry_time", "entry_time", "-pnl_net", "pnl_net", "-commission", "symbol"], key="trades-sort"
    )
    page = client.trades(
        symbol=symbol,
        strategy=strategy,
        start=start.isoformat() if start else None,
        end=end.isoformat() if end else None,
        sort=sort,
        limit=500,
    )
    totals = st.columns(3)
    totals[0].metric("Trades matching", page.total)
    totals[1].metric("Net PnL (shown)", _num(sum(t.pnl_net for t in page.items)))
    totals[2].metric("Commissions (shown)", _num(sum(t.commission for t in page.items)))
    if page.items:
        st.dataframe(pd.DataFrame([t.model_dump() for t in page.items]), hide_index=True)
    else:
        st.info("No trades match these filters.")


# -- 4 Performance --------------------------------------------------------------------------
def performance(client: ApiClient) -> None:
    result_id = _result_choices(client, "performance-result")
    if result_id is None:
        return
    perf = client.performance(result_id)
    bench = perf.benchmark
    cols = st.columns(5)
    cols[0].metric("Strategy return", _pct(bench.strategy_return))
    cols[1].metric("Benchmark return", _pct(bench.benchmark_return))
    cols[2].metric("Excess return", _pct(bench.excess_return))
    cols[3].metric("Beta", _num(bench.beta))
    cols[4].metric("Correlation", _num(bench.correlation))
    st.plotly_chart(charts.equity_chart(client.equity(result_id), "Strategy vs benchmark"), key="performance-equity")
    left, right = st.columns(2)
    left.plotly_chart(charts.return_histogram(perf.return_distribution), key="performance-hist")
    right.plotly_chart(charts.drawdown_chart(perf.dates, perf.drawdown), key="performance-drawdown")
    st.plotly_chart(charts.monthly_heatmap(perf.monthly_returns), key="performance-monthly")
    st.markdown("**Metrics**")
    groups = st.columns(len(perf.metrics))
    for col, (group, values) in zip(groups, perf.metrics.items(), strict=False):
        col.markdown(f"*{group.replace('_', ' ')}*")
        col.dataframe(
            pd.DataFrame([{"metric": k, "value": v} for k, v in values.items()]), hide_index=True, key=f"m-{group}"
        )


# -- 5 Analytics ----------------------------------------------------------------------------
def analytics(client: ApiClient) -> None:
    cols = st.columns(2)
    metric = cols[0].selectbox("Rank by", RANK_METRICS, key="rank-metric")
    group_by = cols[1].radio("Per", ["strategy", "result"], horizontal=True, key="rank-group")
    rankings = client.rankings(metric=metric, group_by=group_by, limit=50)
    if not rankings.rows:
        st.info("No succeeded results to rank yet.")
        return
    frame = pd.DataFrame([r.model_dump() for r in rankings.rows])
    labels = [r.key.rsplit(".", 1)[-1] for r in rankings.rows]
    st.plotly_chart(charts.bar_chart(labels, [r.best for r in rankings.rows], f"Best {metric}"), key="rank-bar")
    st.dataframe(frame, hide_index=True)
    st.markdown("**Compare results**")
    page = client.backtests(limit=200, sort="-sharpe_ratio", status="succeeded")
    options = {f"{b.name} ({b.id})": b.id for b in page.items}
    chosen = st.multiselect("Pick 2 to 5 results", list(options), max_selections=5, key="compare-results")
    if len(chosen) >= 2:
        ids = [options[c] for c in chosen]
        rows = [client.backtest(i) for i in ids]
        table = pd.DataFrame({r.metadata.name: {k: r.metrics.get(k) for k in RANK_METRICS} for r in rows})
        st.dataframe(table)
        st.plotly_chart(
            charts.normalized_equity([(r.metadata.name, client.equity(r.id)) for r in rows]), key="compare-equity"
        )


# -- 6 Backtests ----------------------------------------------------------------------------
def backtests(client: ApiClient) -> None:
    cols = st.columns(3)
    name = cols[0].text_input("Name contains", key="bt-name").strip() or None
    status = cols[1].selectbox("Status", ["", "succeeded", "failed"], key="bt-status") or None
    page_no = int(cols[2].number_input("Page", min_value=1, value=1, step=1, key="bt-page"))
    page = client.backtests(name=name, status=status, limit=50, offset=50 * (page_no - 1))
    st.caption(f"{page.total} results; page {page_no} of {max(1, -(-page.total // 50))}")
    if page.items:
        st.dataframe(pd.DataFrame([b.model_dump() for b in page.items]), hide_index=True)
        labels = {f"{b.name} ({b.id})": b.id for b in page.items}
        chosen = st.selectbox("Detail", list(labels), key="bt-detail")
        if chosen:
            result_id = labels[chosen]
            detail = client.backtest(result_id)
            curve = client.equity(result_id)
            st.plotly_chart(charts.equity_chart(curve), key="bt-equity")
            st.plotly_chart(charts.drawdown_chart(curve.dates, curve.drawdown), key="bt-drawdown")
            trades = client.backtest_trades(result_id, limit=500)
            st.markdown(f"**Trades** ({trades.total})")
            st.dataframe(pd.DataFrame([t.model_dump() for t in trades.items]), hide_index=True)
            with st.expander("Spec and metrics"):
                st.json({"spec": detail.spec, "metrics": detail.metrics})
    else:
        st.info("No results match.")
    st.markdown("**Submit a Backtest**")
    with st.form("submit-backtest"):
        text = st.text_area("Custom resource (JSON)", json.dumps(BACKTEST_TEMPLATE, indent=2), height=260)
        sent = st.form_submit_button("Submit")
    if sent:
        _submit(client, text)
    _running(client, "backtests")


def _submit(client: ApiClient, text: str) -> None:
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        st.warning(f"Not valid JSON: {exc}")
        return
    try:
        state = client.submit(document)
    except ApiError as exc:
        fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in exc.errors)
        st.warning(f"Refused ({exc.status} {exc.title}): {fields or exc.detail}")
        return
    st.success(f"Submitted {state.kind} {state.name} ({state.target}): submission {state.id}")


def _running(client: ApiClient, plural: str) -> None:
    st.markdown("**Submissions and their status**")
    submissions = client.submissions()
    if submissions:
        st.dataframe(pd.DataFrame([s.model_dump() for s in submissions]), hide_index=True)
    else:
        st.caption("Nothing submitted through this API since it started.")
    cluster = client.cluster(plural)
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
        st.dataframe(pd.DataFrame([s.model_dump() for s in studies.items]), hide_index=True)
        name = st.selectbox("Study", [s.name for s in studies.items], key="study-name")
        if name:
            detail = client.study(name)
            summary = detail.summary
            done = summary.complete + summary.failed + summary.pruned
            st.progress(done / summary.trials if summary.trials else 0.0, text=f"{done} of {summary.trials} trials")
            cols = st.columns(4)
            cols[0].metric("Complete", summary.complete)
            cols[1].metric("Running", summary.running)
            cols[2].metric("Failed", summary.failed)
            cols[3].metric(f"Best ({summary.direction})", _num(summary.best_value, 4))
            st.plotly_chart(charts.study_history(detail), key="study-history")
            if detail.param_importance:
                imp = detail.param_importance
                st.plotly_chart(charts.bar_chart(list(imp), list(imp.values()), "Parameter importance"), key="imp")
            else:
                st.caption(f"Parameter importance: {detail.importance_note}")
            st.markdown("**Best parameters**")
            st.json(summary.best_params or {})
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
        metric = row[3].selectbox("Objective", RANK_METRICS)
        space = st.text_area("Parameter space (JSON)", json.dumps(SPACE_TEMPLATE, indent=2), height=140)
        constraints = st.text_input("Constraints (comma separated)", "fast < slow")
        sent = st.form_submit_button("Submit study")
    if sent:
        try:
            space_doc = json.loads(space)
        except json.JSONDecodeError as exc:
            st.warning(f"Parameter space is not valid JSON: {exc}")
            return
        document = {
            "apiVersion": "kubetrader.io/v1alpha1",
            "kind": "OptimizationStudy",
            "metadata": {"name": name},
            "spec": {
                "backtest": {
                    "strategy": {"path": strategy},
                    "data": {
                        "symbols": [s.strip() for s in symbols.split(",") if s.strip()],
                        "start": start,
                        "end": end,
                    },
                },
                "space": space_doc,
                "constraints": [c.strip() for c in constraints.split(",") if c.strip()],
                "objective": {"metric": metric, "direction": "minimize" if metric == "max_drawdown" else "maximize"},
                "trials": int(trials),
            },
        }
        _submit(client, json.dumps(document))


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
                "experiment": r.name,
                "runs": r.runs,
                "failed": r.failed_runs,
                "best sharpe": r.best_sharpe,
                "best total return": r.best_total_return,
                "best max drawdown": r.best_max_drawdown,
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
            frame = pd.DataFrame({r.experiment_name or r.run_id: r.metrics for r in comparison.runs})
            st.dataframe(frame)
    st.markdown("**Recent runs**")
    runs = client.mlflow_runs(limit=20)
    st.dataframe(pd.DataFrame([r.model_dump() for r in runs.items]), hide_index=True)


# -- 9 Health -------------------------------------------------------------------------------
def health(client: ApiClient) -> None:
    report = client.health()
    st.metric("Overall", report.status)
    icons = {"ok": "🟢 ok", "down": "🔴 down", "not_configured": "⚪ not configured"}
    st.dataframe(
        pd.DataFrame(
            [
                {"component": c.name, "status": icons[c.status], "detail": c.detail, "latency ms": c.latency_ms}
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
    cols[3].metric("CPUs", system.cpu_count or "n/a")
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
    st.dataframe(pd.DataFrame([e.model_dump() for e in view.entries]), hide_index=True)


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
    ("Settings", settings),
)
