"""The MLflow tab on a database store: SQL over MLflow's tables gives what MlflowClient gives.

One real MLflow store (SQLite, and PostgreSQL migrated as the chart does), read by two services:
the SQL fast path and the client path (`sql_fast_path=False`, what a tracking server or a file
store gets). The runs cover what the aggregates must get right: failed runs, runs older than a
week, a run started by MLflow's clock, a sharpe logged at several steps (the latest counts), a NaN
sharpe, a tie for the best sharpe, a run without sharpe, deleted runs and experiments, and
experiments the platform did not make.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from kubetrader_dashboard.services.mlflow import MlflowService

DAY_MS = 86_400_000


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    else:
        uri = request.getfixturevalue("migrated_postgres_database")()
    client = MlflowClient(uri)
    now = int(time.time() * 1000)

    def experiment(name: str, **tags: str) -> str:
        return client.create_experiment(name, tags=tags)

    sma = experiment(
        "Alpha.Equities.Trend.SMA", project="Alpha", asset_class="Equities", strategy_family="Trend",
        strategy="SMA", **{"kubetrader.managed": "true"},
    )  # fmt: skip
    rsi = experiment("Alpha.FX.MeanReversion.RSI")  # four levels in the name, no tags
    beta = experiment("x", project="Beta", asset_class="Crypto", **{"kubetrader.managed": "true"})
    empty = experiment("Beta.Crypto.Trend.Empty")  # no runs
    foreign = experiment("someone-elses-notebook")  # not the platform's: never counted
    gone = experiment("Alpha.Equities.Trend.Gone")

    def run(eid: str, *, days_ago: float | None, status: str = "FINISHED", **metrics: float | list[float]) -> str:
        start = None if days_ago is None else now - int(days_ago * DAY_MS)
        created = client.create_run(eid, start_time=start)
        logged = []
        for key, value in metrics.items():
            for step, v in enumerate(value if isinstance(value, list) else [value]):
                logged.append(Metric(key, v, now, step))
        client.log_batch(created.info.run_id, metrics=logged)
        client.set_terminated(created.info.run_id, status)
        return created.info.run_id

    run(sma, days_ago=1, sharpe_ratio=0.5, total_return=0.1, max_drawdown=-0.2, annual_volatility=0.15)
    run(sma, days_ago=2, sharpe_ratio=[3.0, 1.2], total_return=0.3)  # latest step: 1.2
    run(sma, days_ago=10, status="FAILED")
    run(sma, days_ago=3, sharpe_ratio=float("nan"), total_return=0.2)
    run(sma, days_ago=None, sharpe_ratio=0.9)  # MLflow stamps it now
    run(rsi, days_ago=4, sharpe_ratio=0.7, max_drawdown=-0.1)
    run(rsi, days_ago=5, sharpe_ratio=0.7, max_drawdown=-0.3)  # ties with the newer one: that one is best
    run(rsi, days_ago=20, status="FAILED", sharpe_ratio=0.2)
    run(rsi, days_ago=0.5, status="KILLED")
    run(beta, days_ago=6, total_return=0.5)  # no sharpe: no best run
    run(beta, days_ago=8, status="FAILED")
    deleted = run(sma, days_ago=1, sharpe_ratio=9.0)
    client.delete_run(deleted)
    run(foreign, days_ago=1, sharpe_ratio=5.0)
    run(gone, days_ago=1, sharpe_ratio=4.0)
    client.delete_experiment(gone)
    assert empty
    return uri


def services(uri: str) -> tuple[MlflowService, MlflowService]:
    def service(sql: bool) -> MlflowService:
        return MlflowService(uri, ui_url=None, cache_seconds=300, sql_fast_path=sql)

    return service(True), service(False)


def test_the_database_store_is_read_by_sql_and_the_client_path_by_searches(store: str) -> None:
    sql, client = services(store)
    assert sql.snapshot().runs is None  # no run was read whole
    assert client.snapshot().runs is not None
    dialect = store.split(":", maxsplit=1)[0].split("+", maxsplit=1)[0]
    assert sql._sql is not None and sql._sql[1].dialect.name == dialect


@pytest.mark.parametrize(
    "filters",
    [{}, {"project": "Alpha"}, {"project": "Beta"}, {"asset_class": "FX"}, {"strategy_family": "Trend"}],
)
def test_sql_and_client_paths_give_the_same_overview(store: str, filters: dict[str, Any]) -> None:
    sql, client = services(store)
    from_sql = sql.overview(**filters).model_dump(exclude={"snapshot_age_seconds"})
    from_client = client.overview(**filters).model_dump(exclude={"snapshot_age_seconds"})
    assert from_sql == from_client
    assert from_sql["available"] is True


def test_the_overview_counts_what_the_platform_logged(store: str) -> None:
    sql, _ = services(store)
    body = sql.overview()
    assert (body.experiments, body.runs, body.failed_runs) == (4, 11, 3)
    assert body.runs_last_7_days == 8  # not the 10-, 20- and 8-day-old runs
    by_name = {row.name: row for row in body.rows}
    sma = by_name["Alpha.Equities.Trend.SMA"]
    assert (sma.runs, sma.failed_runs, sma.best_sharpe, sma.best_total_return) == (5, 1, 1.2, 0.3)
    rsi = by_name["Alpha.FX.MeanReversion.RSI"]
    assert (rsi.best_sharpe, rsi.best_max_drawdown) == (0.7, -0.1)  # the tie: the newer run
    assert by_name["x"].best_run_id is None and by_name["x"].runs == 2
    assert by_name["Beta.Crypto.Trend.Empty"].runs == 0
    assert body.projects == ["Alpha", "Beta"]


@pytest.mark.parametrize(
    ("status", "experiment", "limit", "offset", "total"),
    [
        (None, None, 50, 0, 11),
        (None, None, 3, 2, 11),
        ("FAILED", None, 50, 0, 3),
        (None, "Alpha.Equities.Trend.SMA", 50, 0, 5),
        ("KILLED", "Alpha.FX.MeanReversion.RSI", 50, 0, 1),
        (None, "Default", 50, 0, 0),  # MLflow's own: not the platform's
    ],
)
def test_sql_and_client_paths_give_the_same_run_pages(
    store: str, status: str | None, experiment: str | None, limit: int, offset: int, total: int
) -> None:
    sql, client = services(store)
    found = MlflowClient(store).get_experiment_by_name(experiment) if experiment else None
    query: dict[str, Any] = {"status": status, "limit": limit, "offset": offset}
    query["experiment_id"] = found.experiment_id if found else None
    from_sql = sql.runs(**query)
    assert from_sql == client.runs(**query)
    assert from_sql.total == total
    assert len(from_sql.items) == min(limit, total - offset)


def test_the_sql_path_never_writes_to_the_store(store: str) -> None:
    import sqlalchemy

    sql, _ = services(store)
    sql.snapshot()
    assert sql._sql is not None
    with sql._sql[1].connect() as conn, pytest.raises(sqlalchemy.exc.DBAPIError, match=r"readonly|read-only"):
        conn.execute(sqlalchemy.text("DELETE FROM runs"))


def test_a_store_without_mlflow_tables_is_unavailable_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "other.db").touch()
    service = MlflowService(f"sqlite:///{tmp_path / 'other.db'}", ui_url=None, cache_seconds=0)
    body = service.overview()
    assert body.available is False
    assert body.reason == "MLflow store unreachable (OperationalError)"
