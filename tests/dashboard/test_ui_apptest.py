"""The Streamlit app under AppTest, against the running API on real stores: one test per page.

Pages are chosen with the `page` radio and only the chosen one runs (st.tabs would run all)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from kubetrader_dashboard.ui.signin import SESSION_KEY
from tests.fixtures.dashboard import RunningApi
from tests.helpers import ROOT

pytestmark = pytest.mark.xdist_group("dashboard")

APP = ROOT / "dashboard" / "kubetrader_dashboard" / "ui" / "app.py"
TAB_LABELS = [
    "Dashboard",
    "Live Trading",
    "Trade Log",
    "Performance",
    "Analytics",
    "Backtests",
    "Optimization",
    "MLflow",
    "Health",
    "Logs",
    "Settings",
]


@pytest.fixture(scope="module")
def app(dashboard_api: RunningApi) -> Iterator[AppTest]:
    """One app session, signed in as the trader (sign-in itself: tests/dashboard/test_auth.py), shared by
    the per-page tests of this module."""
    patch = pytest.MonkeyPatch()
    patch.setenv("FASTAPI_BACKEND_URL", dashboard_api.url)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state[SESSION_KEY] = dashboard_api.sessions["trader"]
    at.run()
    yield at
    patch.undo()


def _tab(app: AppTest, label: str) -> Any:
    """Open a page (only it runs) and return the app to look into."""
    app.radio(key="page").set_value(label).run()
    assert [e.value for e in app.exception] == [], label
    return app


def _metrics(tab: Any) -> dict[str, str]:
    return {m.label: m.value for m in tab.metric}


def test_the_app_offers_eleven_pages_and_renders_each_without_an_exception_or_error(app: AppTest) -> None:
    assert list(app.radio(key="page").options) == TAB_LABELS
    assert app.tabs == [] or not len(app.tabs), "st.tabs would run every page on each rerun"
    for label in TAB_LABELS:
        page = _tab(app, label)
        assert [e.value for e in page.error] == [], label
    _tab(app, "Dashboard")


def test_dashboard_tab_shows_the_latest_backtest_with_its_equity_curve(app: AppTest, dashboard_api: RunningApi) -> None:
    # Results finished within the same second tie on finished_at; the API names the one it shows.
    summary = httpx.get(dashboard_api.url + "/api/v1/summary", headers=dashboard_api.auth("viewer")).json()
    latest_id = summary["latest"]["id"]
    newest = dashboard_api.stores.documents[latest_id]
    tab = _tab(app, "Dashboard")
    metrics = _metrics(tab)
    assert metrics["Sharpe"] == f"{newest.metrics['sharpe_ratio']:,.2f}"
    assert metrics["Total return"] == f"{newest.metrics['total_return']:.2%}"
    assert metrics["Trades"] == str(int(newest.metrics["num_trades"]))
    assert metrics["Live account"] == "not available"
    assert len(tab.get("plotly_chart")) == 1
    assert any(newest.metadata.name in s.value for s in tab.subheader)


def test_live_trading_tab_says_not_available(app: AppTest) -> None:
    tab = _tab(app, "Live Trading")
    assert [i.value for i in tab.info] == ["Live trading not available: KUBETRADER_LIVE_RUNNER_URL is not set"]


def test_trade_log_tab_lists_every_closed_trade_with_commissions(app: AppTest, dashboard_api: RunningApi) -> None:
    trades = [t for d in dashboard_api.stores.documents.values() for t in d.trades if t.exit_time is not None]
    assert sum(d.metrics["num_trades"] for d in dashboard_api.stores.documents.values()) == len(trades)
    tab = _tab(app, "Trade Log")
    assert _metrics(tab)["Trades matching"] == str(len(trades))
    (frame,) = [df.value for df in tab.dataframe]
    assert len(trades) <= 500  # one page shows them all
    assert frame["Commission"].sum() == pytest.approx(sum(t.commission for t in trades))
    assert "open" not in set(frame["Exit"]) and "T00:00:00" not in frame.to_string()


def test_trade_log_filters_by_symbol(app: AppTest, dashboard_api: RunningApi) -> None:
    documents = dashboard_api.stores.documents.values()
    nvda = [t for d in documents for t in d.trades if t.symbol == "NVDA" and t.exit_time is not None]
    tab = _tab(app, "Trade Log")
    tab.text_input(key="trades-symbol").set_value("NVDA")
    after = app.run()
    assert _metrics(after)["Trades matching"] == str(len(nvda))
    after.text_input(key="trades-symbol").set_value("")
    app.run()


def test_performance_tab_draws_benchmark_distribution_heatmap_and_drawdown(app: AppTest) -> None:
    tab = _tab(app, "Performance")
    charts = tab.get("plotly_chart")
    assert len(charts) == 5  # equity, histogram, drawdown, rolling Sharpe/volatility, monthly heatmap
    kinds = {json.loads(c.proto.spec)["data"][0]["type"] for c in charts}
    assert {"heatmap", "bar", "scatter"} <= kinds
    frames = [f.value for f in tab.dataframe]
    versus = next(f for f in frames if "Benchmark" in f.columns)
    assert list(versus.columns) == ["Metric", "Strategy", "Benchmark"] and "Sharpe" in set(versus["Metric"])
    assert any(list(f.columns)[:3] == ["Peak", "Trough", "Recovered"] for f in frames)
    assert any("Setting" in f.columns for f in frames)
    assert "None" not in "".join(f.to_string() for f in frames)


def test_analytics_tab_ranks_strategies(app: AppTest, dashboard_api: RunningApi) -> None:
    strategies = {d.metadata.strategy for d in dashboard_api.stores.documents.values()}
    tab = _tab(app, "Analytics")
    frame = tab.dataframe[0].value
    assert set(frame["strategy"]) == strategies
    assert len(tab.get("plotly_chart")) == 1


def test_backtests_tab_lists_results_shows_detail_and_offers_a_form(app: AppTest, dashboard_api: RunningApi) -> None:
    tab = _tab(app, "Backtests")
    listing = tab.dataframe[0].value
    assert set(listing["Id"]) == set(dashboard_api.stores.documents)
    assert len(tab.get("plotly_chart")) == 3  # equity, drawdown, rolling Sharpe of the selected result
    assert any(b.label == "Submit" for b in tab.button)
    ids = tab.multiselect(key="bt-compare").options[:2]
    tab.multiselect(key="bt-compare").set_value(ids)
    compared = app.run()
    assert len(compared.get("plotly_chart")) == 4  # ... and the overlaid growth of 1
    assert any(f.value.shape[1] == 3 and "Metric" in f.value.columns for f in compared.dataframe)
    compared.multiselect(key="bt-compare").set_value([])
    app.run()


def test_the_backtests_and_performance_pages_each_make_one_api_call(
    app: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nine calls a render made the Backtests page slow at 10,000 results (bench/bench_dashboard.py);
    each page now asks for what it shows in one (GET /pages/...), with the app's caches empty."""
    import streamlit as st

    from kubetrader_dashboard.ui import client as ui_client

    calls: list[str] = []
    send = ui_client.ApiClient._send

    def counted(self: Any, method: str, path: str, **kwargs: Any) -> bytes:
        calls.append(path)
        return send(self, method, path, **kwargs)

    monkeypatch.setattr(ui_client.ApiClient, "_send", counted)
    for label, path in (("Backtests", "/pages/backtests"), ("Performance", "/pages/performance")):
        _tab(app, "Settings")
        st.cache_data.clear()
        calls.clear()
        _tab(app, label)
        assert calls == [path], label


def test_the_backtest_detail_shows_its_spec_only_when_asked(app: AppTest, dashboard_api: RunningApi) -> None:
    tab = _tab(app, "Backtests")
    assert tab.json == [] or not len(tab.json), "the closed expander draws nothing (and fetches nothing)"
    chosen = tab.selectbox(key="bt-detail").value
    app.session_state["bt-spec"] = True  # the user opens "Spec and metrics"
    opened = app.run()
    (shown,) = opened.json
    document = dashboard_api.stores.documents[chosen]
    assert json.loads(shown.proto.body)["spec"]["strategy"] == document.spec["strategy"]
    app.session_state["bt-spec"] = False
    app.run()


def test_the_backtest_detail_follows_the_select_box(app: AppTest, dashboard_api: RunningApi) -> None:
    from kubetrader import formatting as fmt

    documents = dashboard_api.stores.documents
    tab = _tab(app, "Backtests")
    box = tab.selectbox(key="bt-detail")
    first, last = box.value, box.options[-1]
    assert last.endswith(")") and len(box.options) == len(documents)
    box.set_value(last)
    chosen = app.run()
    result_id = chosen.selectbox(key="bt-detail").value
    assert result_id != first and last.endswith(f"({result_id})")
    total = fmt.metric_label("total_return")
    assert documents[first].metrics["total_return"] != documents[result_id].metrics["total_return"]
    assert _metrics(chosen)[total] == fmt.metric_value("total_return", documents[result_id].metrics["total_return"])
    trades = int(documents[result_id].metrics["num_trades"])
    assert any(f"({trades} closed round trips)" in m.value for m in chosen.markdown)


def test_optimization_tab_shows_the_study_history_importance_and_best_params(
    app: AppTest, dashboard_api: RunningApi
) -> None:
    import optuna

    study = optuna.load_study(study_name="sma-orcl-study", storage=dashboard_api.optuna_url)
    tab = _tab(app, "Optimization")
    assert _metrics(tab)["Complete"] == str(len(study.trials))
    assert len(tab.get("plotly_chart")) == 3  # history, parameter importance and the robustness heatmap
    assert json.loads(tab.json[0].value) == study.best_params
    assert "Plateau score" in _metrics(tab)


def test_mlflow_tab_has_four_cards_the_table_three_charts_and_the_ui_link(
    app: AppTest, dashboard_api: RunningApi
) -> None:
    documents = dashboard_api.stores.documents
    tab = _tab(app, "MLflow")
    metrics = _metrics(tab)
    assert metrics["Runs"] == str(len(documents))
    assert metrics["Runs, last 7 days"] == str(len(documents))
    assert metrics["Failed runs"] == "0"
    assert metrics["Experiments"] == "4"
    assert len(tab.get("plotly_chart")) == 3
    assert [b.proto.url for b in tab.get("link_button")] == ["http://127.0.0.1:5000"]


def test_mlflow_tab_filters_by_project_and_compares_experiments(app: AppTest) -> None:
    tab = _tab(app, "MLflow")
    tab.selectbox(key="mlflow-project").set_value("Research")
    after = app.run()
    assert _metrics(after)["Experiments"] == "2"
    names = after.multiselect(key="mlflow-compare").options
    after.multiselect(key="mlflow-compare").set_value(names[:2])
    compared = app.run()
    frames = compared.dataframe
    assert any(set(names[:2]) <= set(map(str, f.value.columns)) for f in frames)
    assert [e.value for e in compared.error] == []
    compared.selectbox(key="mlflow-project").set_value("")
    compared.multiselect(key="mlflow-compare").set_value([])
    app.run()


def test_health_tab_lists_components_and_says_the_queue_is_not_available(app: AppTest) -> None:
    tab = _tab(app, "Health")
    components = tab.dataframe[0].value
    assert list(components["component"]) == ["results", "redis", "mlflow", "database", "kubernetes", "workers"]
    assert any("Work queue not available" in i.value for i in tab.info)


def test_settings_tab_masks_the_token(app: AppTest, dashboard_api: RunningApi) -> None:
    tab = _tab(app, "Settings")
    frame = tab.dataframe[0].value
    assert frame.set_index("name").loc["api_token", "value"] == "********"
    assert dashboard_api.token not in frame.to_string()
    assert "`" not in frame.to_string()
