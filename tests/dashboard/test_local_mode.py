"""Zero-configuration local mode: with no environment, the API reads what the CLI wrote
under its own defaults (kubetrader.defaults): ./results, data/mlflow.db and every Optuna
journal under data/optuna/, and the loopback Redis when one runs. Reads need signing in there
too: the API creates the local admin (data/dashboard/users.yaml, its password beside it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.dashboard import DashboardStores

pytestmark = pytest.mark.xdist_group("dashboard")


def _clear_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("KUBETRADER_", "MLFLOW_", "FASTAPI_")):
            monkeypatch.delenv(name)


def _sign_in_as_local_admin(client: TestClient, root: Path) -> None:
    """What a user of `make dashboard` does: the printed password, for the user `admin`."""
    password_file = root / "data" / "dashboard" / "admin-password"
    assert password_file.stat().st_mode & 0o077 == 0, "the admin's password is readable by its owner only"
    assert client.get("/api/v1/backtests").status_code == 401, "reads need signing in by default"
    password = password_file.read_text().strip()
    answer = client.post("/api/v1/auth/login", json={"username": "admin", "password": password})
    assert answer.status_code == 200, answer.text
    assert answer.json()["identity"] == {"name": "admin", "role": "trader", "method": "session"}
    client.headers["Authorization"] = f"Bearer {answer.json()['token']}"


def _write_like_the_cli(root: Path, stores: DashboardStores) -> None:
    """Results in ./results, MLflow runs in data/mlflow.db, two studies each in its journal."""
    import optuna

    from kubetrader import defaults
    from kubetrader.optimize.study import default_storage_url, open_storage
    from kubetrader.tracking.record import record_backtest

    shutil.copytree(stores.results_dir / "backtests", root / defaults.RESULTS_DIR / "backtests")
    for result_id, document in list(stores.documents.items())[:2]:
        state, run_id = record_backtest(
            document, root / "results" / "backtests" / f"{result_id}.json", tracking_uri=defaults.local_tracking_uri()
        )
        assert run_id, state
    for name, trials in (("demo-sma", 5), ("other-study", 3)):
        storage = open_storage(default_storage_url(name, defaults.data_dir()))
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        for number in range(trials):
            study.add_trial(
                optuna.trial.create_trial(
                    params={"fast": 5 + number},
                    distributions={"fast": optuna.distributions.IntDistribution(5, 50)},
                    value=0.1 * number,
                )
            )


def test_with_no_environment_the_api_shows_what_the_cli_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dashboard_results: DashboardStores
) -> None:
    from kubetrader_dashboard.api.main import create_app
    from kubetrader_dashboard.settings import Settings

    _clear_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    _write_like_the_cli(tmp_path, dashboard_results)
    monkeypatch.setenv("KUBETRADER_KUBERNETES", "off")  # the machine's kubeconfig is no local store
    settings = Settings()
    with TestClient(create_app(settings)) as client:
        _sign_in_as_local_admin(client, tmp_path)
        backtests = client.get("/api/v1/backtests").json()
        assert backtests["total"] == len(dashboard_results.documents)
        studies = client.get("/api/v1/studies").json()
        assert studies["available"], studies
        assert {s["name"]: s["trials"] for s in studies["items"]} == {"demo-sma": 5, "other-study": 3}
        detail = client.get("/api/v1/studies/demo-sma").json()
        assert detail["summary"]["best_value"] == pytest.approx(0.4)
        overview = client.get("/api/v1/mlflow/overview").json()
        assert overview["available"], overview
        assert overview["runs"] == 2
        health = {c["name"]: c["status"] for c in client.get("/api/v1/health").json()["components"]}
        assert health["mlflow"] == "ok" and health["database"] == "ok", health


def test_with_nothing_written_yet_each_store_says_where_it_would_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetrader_dashboard.api.main import create_app
    from kubetrader_dashboard.settings import Settings

    _clear_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    with TestClient(create_app(Settings(kubernetes="off"))) as client:
        _sign_in_as_local_admin(client, tmp_path)
        overview = client.get("/api/v1/mlflow/overview").json()
        assert not overview["available"] and "mlflow.db" in overview["reason"]
        studies = client.get("/api/v1/studies").json()
        assert studies["items"] == [] and "journals" in studies["reason"]
        health = client.get("/api/v1/health").json()
        assert health["status"] == "ok", health  # nothing written yet is not an outage
    assert not (tmp_path / "data" / "mlflow.db").exists(), "reading must not create the MLflow store"


def test_the_local_redis_is_read_when_it_runs_and_is_a_state_when_it_does_not(redis_url: str) -> None:
    from kubetrader_dashboard.services.queue import QueueService

    running = QueueService(redis_url, local_default=True)
    assert running.view().available
    assert not running.accepts_work, "work is queued only on a Redis configured on purpose"
    closed: Any = QueueService("redis://127.0.0.1:1/0", local_default=True).view()
    assert not closed.available and "no local Redis running" in closed.reason
