"""Recording backtests and studies in a local SQLite MLflow store (the default back end)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from kubetrader.tracking import log_run, record_backtest, start_parent_run
from kubetrader.tracking.naming import ExperimentPath
from tests.fixtures.mlflow import python_environment
from tests.helpers import ROOT, wait_until
from tests.tracking.documents import write_backtest

if TYPE_CHECKING:
    from mlflow import MlflowClient


def _client(uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_default_store_is_sqlite_in_the_data_dir_with_artifacts_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetrader.tracking import settings

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(tmp_path))
    uri = settings.tracking_uri()
    assert uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert settings.artifact_root(uri) == (tmp_path / "mlartifacts").as_uri()
    assert settings.ui_command(uri).startswith(f"mlflow ui --backend-store-uri {uri}")


def test_backtest_is_logged_once_with_artifacts_in_the_local_store(
    tmp_path: Path, local_mlflow_uri: Callable[[], str]
) -> None:
    uri = local_mlflow_uri()
    document, result_path = write_backtest(tmp_path / "results", "bt-local-1")
    state, run_id = record_backtest(document, result_path, tracking_uri=uri)
    assert state == "logged" and run_id
    again = record_backtest(document, result_path, tracking_uri=uri)
    assert again == ("logged", run_id)  # idempotent: the result id is looked up first

    client = _client(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["fast"] == "10"
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert artifacts == {"equity.csv", "trades.csv", "equity.png", "tearsheet.html", "result.json", "spec.yaml"}
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location.startswith((Path(uri.removeprefix("sqlite:///")).parent).as_uri())
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_failed_backtest_is_logged_as_failed_with_its_error(
    tmp_path: Path, local_mlflow_uri: Callable[[], str]
) -> None:
    uri = local_mlflow_uri()
    document, result_path = write_backtest(
        tmp_path, "bt-local-failed", status="failed", error="StrategyError: division by zero in next()"
    )
    state, run_id = record_backtest(document, result_path, tracking_uri=uri)
    assert state == "logged" and run_id
    run = _client(uri).get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "StrategyError: division by zero in next()"
    assert run.data.tags["status"] == "failed"


def test_study_is_a_parent_run_with_trials_as_children_and_the_best_tagged(local_mlflow_uri: Callable[[], str]) -> None:
    uri = local_mlflow_uri()
    path = ExperimentPath("Q1_2025", "Equities", "TrendFollowing", "SMACrossover")
    with start_parent_run(path, params={"sampler": "tpe"}, run_name="study-sma", tracking_uri=uri) as study:
        trials = [
            study.log_child(params={"fast": fast, "slow": 30}, metrics={"sharpe_ratio": sharpe})
            for fast, sharpe in ((5, 0.4), (10, 0.9), (20, 0.1))
        ]
        study.mark_best(trials[1], metrics={"best_sharpe_ratio": 0.9})
    client = _client(uri)
    parent = client.get_run(study.run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["best_run_id"] == trials[1]
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{study.run_id}'"
    )
    assert {c.info.run_id for c in children} == set(trials)
    assert [c.info.run_id for c in children if c.data.tags.get("best_trial") == "true"] == [trials[1]]
    assert all(c.data.tags["project"] == "Q1_2025" for c in children)


def test_log_run_logs_more_params_than_one_batch_holds(local_mlflow_uri: Callable[[], str]) -> None:
    uri = local_mlflow_uri()
    params = {f"p{i}": i for i in range(250)}
    metrics = {f"m{i}": float(i) for i in range(40)}
    run_id = log_run("Lab.Equities.Misc.Wide", params=params, metrics=metrics, tags={"k": "v"}, tracking_uri=uri)
    run = _client(uri).get_run(run_id)
    assert len(run.data.params) == 250 and len(run.data.metrics) == 40


_HOLD_RUN_OPEN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from kubetrader.tracking.client import ensure_experiment, get_client, open_run

    client = get_client(sys.argv[1])
    experiment_id = ensure_experiment(client, "Lab.Equities.Misc.Killed")
    with open_run(client, experiment_id, tags={"mlflow.runName": "long-backtest"}) as handle:
        Path(sys.argv[2]).write_text(handle.run_id)
        while True:  # a long backtest; the test sends SIGTERM
            time.sleep(0.05)
    """
)


def test_sigterm_marks_the_open_run_killed(tmp_path: Path, local_mlflow_uri: Callable[[], str]) -> None:
    uri = local_mlflow_uri()
    run_file = tmp_path / "run-id"
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD_RUN_OPEN, uri, str(run_file)], cwd=ROOT, env=python_environment()
    )
    try:
        run_id = wait_until(lambda: run_file.exists() and run_file.read_text(), timeout=60, what="run opened")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    run = _client(uri).get_run(str(run_id))
    assert run.info.status == "KILLED"
    assert run.info.end_time is not None
