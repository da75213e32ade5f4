"""The REST API against real stores: every endpoint returns what the stores hold."""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.dashboard import RunningApi

pytestmark = pytest.mark.xdist_group("dashboard")


@pytest.fixture
def api(dashboard_api: RunningApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dashboard_api.url + "/api/v1", timeout=30) as client:
        yield client


def test_backtest_list_holds_every_stored_result_with_its_headline_metrics(
    api: httpx.Client, dashboard_api: RunningApi
) -> None:
    body = api.get("/backtests", params={"limit": 100}).json()
    documents = dashboard_api.stores.documents
    assert body["total"] == len(documents)
    assert {item["id"] for item in body["items"]} == set(documents)
    for item in body["items"]:
        document = documents[item["id"]]
        assert item["name"] == document.metadata.name
        assert item["strategy"] == document.metadata.strategy
        assert item["symbols"] == document.metadata.symbols
        assert item["sharpe_ratio"] == pytest.approx(document.metrics["sharpe_ratio"])
        assert item["total_return"] == pytest.approx(document.metrics["total_return"])


def test_backtest_list_pages_filters_and_sorts_by_a_metric(api: httpx.Client, dashboard_api: RunningApi) -> None:
    documents = dashboard_api.stores.documents
    by_sharpe = sorted(documents, key=lambda i: documents[i].metrics["sharpe_ratio"], reverse=True)
    first = api.get("/backtests", params={"sort": "-sharpe_ratio", "limit": 2, "offset": 0}).json()
    second = api.get("/backtests", params={"sort": "-sharpe_ratio", "limit": 2, "offset": 2}).json()
    assert [i["id"] for i in first["items"] + second["items"]] == by_sharpe[:4]
    assert first["total"] == second["total"] == len(documents)
    orcl = api.get("/backtests", params={"symbol": "ORCL"}).json()
    assert {i["id"] for i in orcl["items"]} == {i for i, d in documents.items() if "ORCL" in d.metadata.symbols}
    sma = api.get("/backtests", params={"strategy": "strategies.sma_crossover.SMACrossover"}).json()
    assert sma["total"] == 2


def test_backtest_detail_equity_and_trades_match_the_result_document(
    api: httpx.Client, dashboard_api: RunningApi
) -> None:
    from kubetrader.results.trades import closed_trades

    result_id, document = next(iter(dashboard_api.stores.documents.items()))
    closed = closed_trades(document.trades)
    detail = api.get(f"/backtests/{result_id}").json()
    assert detail["metadata"]["id"] == document.metadata.id
    assert detail["bars"] == len(document.equity)
    assert detail["trade_count"] == len(closed) == document.metrics["num_trades"]
    equity = api.get(f"/backtests/{result_id}/equity").json()
    assert equity["dates"] == document.dates
    assert equity["equity"] == pytest.approx(document.equity)
    assert min(equity["drawdown"]) == pytest.approx(document.metrics["max_drawdown"], abs=1e-6)
    trades = api.get(f"/backtests/{result_id}/trades", params={"limit": 1000, "state": "all"}).json()
    assert trades["total"] == len(document.trades)
    assert [t["entry_time"] for t in trades["items"]] == sorted(t.entry_time for t in document.trades)
    assert sum(t["pnl_net"] for t in trades["items"]) == pytest.approx(sum(t.pnl_net for t in document.trades))


def test_performance_monthly_returns_compound_to_the_total_return(api: httpx.Client, dashboard_api: RunningApi) -> None:
    result_id, document = next(iter(dashboard_api.stores.documents.items()))
    body = api.get(f"/backtests/{result_id}/performance").json()
    growth = math.prod(1 + m["value"] for m in body["monthly_returns"])
    assert growth - 1 == pytest.approx(document.equity[-1] / document.equity[0] - 1, rel=1e-9)
    assert sum(b["count"] for b in body["return_distribution"]) == len(document.returns)
    assert body["metrics"]["risk_adjusted"]["sharpe_ratio"] == pytest.approx(document.metrics["sharpe_ratio"])
    assert body["benchmark"]["benchmark_return"] == pytest.approx(document.metrics["benchmark_return"])


def test_unknown_result_is_a_404_problem_document(api: httpx.Client) -> None:
    response = api.get("/backtests/no-such-result/equity")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


def test_trade_log_filters_by_symbol_and_date_and_sorts(api: httpx.Client, dashboard_api: RunningApi) -> None:
    documents = dashboard_api.stores.documents
    orcl_2013 = [
        t
        for d in documents.values()
        for t in d.trades
        if t.symbol == "ORCL" and "2013-01-01" <= t.entry_time[:10] <= "2013-12-31"
    ]
    body = api.get(
        "/trades",
        params={"symbol": "ORCL", "start": "2013-01-01", "end": "2013-12-31", "sort": "-pnl_net", "limit": 1000},
    ).json()
    assert body["total"] == len(orcl_2013) > 0
    values = [t["pnl_net"] for t in body["items"]]
    assert values == sorted(values, reverse=True)
    assert sum(t["commission"] for t in body["items"]) == pytest.approx(sum(t.commission for t in orcl_2013))


def test_rankings_order_strategies_by_their_best_sharpe(api: httpx.Client, dashboard_api: RunningApi) -> None:
    documents = dashboard_api.stores.documents
    best: dict[str, float] = {}
    for d in documents.values():
        best[d.metadata.strategy] = max(best.get(d.metadata.strategy, -math.inf), d.metrics["sharpe_ratio"])
    body = api.get("/rankings", params={"metric": "sharpe_ratio"}).json()
    assert [r["strategy"] for r in body["rows"]] == sorted(best, key=best.__getitem__, reverse=True)
    assert body["rows"][0]["best"] == pytest.approx(max(best.values()))
    assert api.get("/rankings", params={"metric": "sharp"}).status_code == 422


def test_summary_shows_the_newest_result(api: httpx.Client, dashboard_api: RunningApi) -> None:
    documents = dashboard_api.stores.documents
    newest = max(documents.values(), key=lambda d: d.metadata.finished_at)
    body = api.get("/summary").json()
    assert body["results"]["succeeded"] >= len(documents)
    assert body["latest"]["finished_at"] == newest.metadata.finished_at


def test_mlflow_overview_counts_the_logged_runs_and_filters_by_project(
    api: httpx.Client, dashboard_api: RunningApi
) -> None:
    documents = dashboard_api.stores.documents
    body = api.get("/mlflow/overview").json()
    assert body["available"] is True
    assert body["runs"] == len(documents)
    assert body["runs_last_7_days"] == len(documents)
    assert body["failed_runs"] == 0
    assert body["experiments"] == len(
        {(d.metadata.strategy, d.spec["tracking"]["project"]) for d in documents.values()}
    )
    assert set(body["projects"]) == {"Demo", "Research"}
    best = max(body["rows"], key=lambda r: r["best_sharpe"])
    assert best["best_sharpe"] == pytest.approx(max(d.metrics["sharpe_ratio"] for d in documents.values()))
    research = api.get("/mlflow/overview", params={"project": "Research"}).json()
    assert research["runs"] == sum(d.spec["tracking"]["project"] == "Research" for d in documents.values())
    assert {r["project"] for r in research["rows"]} == {"Research"}


def test_mlflow_runs_and_compare_two_to_five(api: httpx.Client, dashboard_api: RunningApi) -> None:
    runs = api.get("/mlflow/runs", params={"limit": 10}).json()
    assert runs["total"] == len(dashboard_api.stores.documents)
    assert api.get("/mlflow/runs", params={"status": "FAILED"}).json()["total"] == 0
    ids = [r["run_id"] for r in runs["items"][:3]]
    compared = api.get("/mlflow/compare", params={"run_id": ids}).json()
    assert [r["run_id"] for r in compared["runs"]] == ids
    assert all("sharpe_ratio" in r["metrics"] for r in compared["runs"])
    assert api.get("/mlflow/compare", params={"run_id": ids[0]}).status_code == 422
    six = {"run_id": [f"r{i}" for i in range(6)]}
    assert api.get("/mlflow/compare", params=six).status_code == 422


def test_studies_come_from_the_optuna_storage(api: httpx.Client, dashboard_api: RunningApi) -> None:
    import optuna

    study = optuna.load_study(study_name="sma-orcl-study", storage=dashboard_api.optuna_url)
    listing = api.get("/studies").json()
    assert [s["name"] for s in listing["items"]] == ["sma-orcl-study"]
    detail = api.get("/studies/sma-orcl-study").json()
    assert detail["summary"]["complete"] == len(study.trials)
    assert detail["summary"]["best_value"] == pytest.approx(study.best_value)
    assert detail["summary"]["best_params"] == study.best_params
    assert detail["best_so_far"][-1] == pytest.approx(study.best_value)
    assert set(detail["param_importance"]) == {"fast", "slow"}
    assert api.get("/studies/nope").status_code == 404
    robust = api.get("/studies/sma-orcl-study/robustness").json()
    assert robust["best"]["params"] == study.best_params and robust["top"][0]["value"] == pytest.approx(
        study.best_value
    )
    assert {n["param"] for n in robust["neighbours"]} <= {"fast", "slow"}
    assert robust["heatmap"]["x_param"] == "fast" and robust["heatmap"]["y_param"] == "slow"
    assert api.get("/studies/nope/robustness").status_code == 404


def test_unconfigured_sources_say_not_available(api: httpx.Client, dashboard_api: RunningApi) -> None:
    assert api.get("/queue").json() == {"available": False, "reason": "KUBETRADER_REDIS_URL is not set", "stats": None}
    live = api.get("/live", headers=dashboard_api.auth("trader")).json()  # live needs the trader role
    assert live["available"] is False and live["positions"] == []
    cluster = api.get("/cluster/backtests").json()
    assert cluster["available"] is False and "off" in cluster["reason"]


def test_health_reports_each_component(api: httpx.Client, dashboard_api: RunningApi) -> None:
    body = api.get("/health").json()
    status = {c["name"]: c["status"] for c in body["components"]}
    assert status == {
        "results": "ok",
        "redis": "not_configured",
        "mlflow": "ok",
        "database": "ok",
        "kubernetes": "not_configured",
        "workers": "not_configured",
    }
    assert body["system"]["cpu_count"] >= 1
    assert 0 < body["system"]["disk_used_percent"] <= 100
    assert body["results"]["succeeded"] >= len(dashboard_api.stores.documents)
