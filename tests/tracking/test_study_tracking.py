"""Studies in MLflow exactly once: one parent and one child per trial however often the study
is re-run, resumed or synced after MLflow was down; trial runs with their own times; PBO kept
on resume; the confirmed best backtest nested under the study."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from kubetrader.optimize.evaluation import InProcessEvaluator
from kubetrader.optimize.service import run_study
from kubetrader.optimize.study import open_storage
from kubetrader.specs import BacktestSpec, OptimizationStudySpec
from kubetrader.tracking.studies import pending_marker, sync_pending_studies
from tests.helpers import free_port

EXPERIMENT = "Lab.Equities.TrendFollowing.SMACrossover"


def spec(trials: int) -> OptimizationStudySpec:
    return OptimizationStudySpec.model_validate(
        {
            "backtest": {
                "strategy": {"path": "strategies.sma_crossover.SMACrossover"},
                "data": {"symbols": ["ORCL"], "start": "2011-01-01", "end": "2012-12-31"},
                "tracking": {
                    "enabled": True,
                    "project": "Lab",
                    "assetClass": "Equities",
                    "strategyFamily": "TrendFollowing",
                },
            },
            "space": {
                "fast": {"type": "int", "low": 5, "high": 20, "step": 5},
                "slow": {"type": "int", "low": 30, "high": 150, "step": 30},
            },
            "trials": trials,
            "sampler": {"type": "grid"},
        }
    )


def noisy(spec: BacktestSpec) -> tuple[dict[str, float | None], list[float]]:
    """A trial that runs nothing: returns seeded by its point, so PBO has something to rank."""
    fast, slow = int(spec.strategy.params["fast"]), int(spec.strategy.params["slow"])  # type: ignore[call-overload]
    returns = np.random.default_rng(fast * 1000 + slow).normal(0.0005, 0.01, 256)
    sharpe = float(returns.mean() / returns.std(ddof=1) * np.sqrt(252))
    return {"sharpe_ratio": sharpe, "total_return": float(np.prod(1 + returns) - 1)}, returns.tolist()


def study_runs(uri: str, study: str) -> tuple[list[Any], list[Any]]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`kubetrader.study` = '{study}'", max_results=1000
    )
    parents = [r for r in runs if r.data.tags.get("kubetrader.kind") == "study"]
    children = [r for r in runs if r.data.tags.get("kubetrader.kind") == "trial"]
    return parents, children


def test_a_rerun_and_a_resume_log_the_study_once_with_real_trial_times_and_the_pbo_kept(
    tmp_path: Path, local_mlflow_uri: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = local_mlflow_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    storage = f"journal://{tmp_path / 's.log'}"
    # Only the re-run and the resume confirm the best point on Backtrader (a pipeline run each): the
    # first run's confirmation proved nothing the other two do not.
    first = run_study(
        spec(16), name="lab", output_dir=tmp_path, storage_url=storage, evaluator=InProcessEvaluator(run=noisy),
        confirm=False,
    )  # fmt: skip
    assert first.pbo is not None
    again = run_study(
        spec(16), name="lab", output_dir=tmp_path, storage_url=storage, evaluator=InProcessEvaluator(run=noisy)
    )
    assert again.pbo == first.pbo  # the returns of the earlier run's trials were kept
    assert again.mlflow_parent_run_id == first.mlflow_parent_run_id
    resumed = run_study(
        spec(20), name="lab", output_dir=tmp_path, storage_url=storage, evaluator=InProcessEvaluator(run=noisy)
    )
    parents, children = study_runs(uri, "lab")
    assert [p.info.run_id for p in parents] == [first.mlflow_parent_run_id] and parents[0].info.status == "FINISHED"
    assert sorted(int(c.data.tags["kubetrader.trial"]) for c in children) == list(range(20))
    assert resumed.trials_complete == 20
    trials = optuna.load_study(study_name="lab", storage=open_storage(storage)).trials
    for child in children:
        trial = trials[int(child.data.tags["kubetrader.trial"])]
        assert child.info.start_time == int(trial.datetime_start.timestamp() * 1000)
        assert child.info.end_time == int(trial.datetime_complete.timestamp() * 1000)
    confirmed = resumed.confirmed_run_id
    assert confirmed is not None
    from mlflow import MlflowClient

    best = MlflowClient(uri).get_run(confirmed)
    assert best.data.tags["mlflow.parentRunId"] == first.mlflow_parent_run_id  # nested under the study
    assert parents[0].data.tags.get("kubetrader.confirmed_run_id") in {confirmed, first.confirmed_run_id}


def test_a_study_run_while_mlflow_is_down_is_logged_once_by_sync_even_after_an_interrupted_sync(
    tmp_path: Path, local_mlflow_uri: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    storage = f"journal://{tmp_path / 's.log'}"
    report = run_study(
        spec(8),
        name="down",
        output_dir=tmp_path,
        storage_url=storage,
        evaluator=InProcessEvaluator(run=noisy),
        confirm=False,
    )
    assert report.mlflow_parent_run_id is None
    marker = pending_marker(tmp_path / "studies", "down")
    assert marker.is_file()
    uri = local_mlflow_uri()
    [synced] = sync_pending_studies(tmp_path, tracking_uri=uri)
    parent_id = synced.run_id
    assert (synced.name, synced.state) == ("down", "logged") and parent_id and not marker.exists()
    assert json.loads((tmp_path / "studies" / "down.json").read_text())["mlflow_parent_run_id"] == parent_id

    # A sync killed half-way: the parent left RUNNING, one child RUNNING, one never logged.
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    parents, children = study_runs(uri, "down")
    client.update_run(parent_id, status="RUNNING")
    client.update_run(children[0].info.run_id, status="RUNNING")
    client.delete_run(children[1].info.run_id)
    marker.write_text(json.dumps({"study": "down", "reason": "killed", "tracking_uri": uri}))
    [again] = sync_pending_studies(tmp_path, tracking_uri=uri)
    assert again.run_id == parent_id
    parents, children = study_runs(uri, "down")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(int(c.data.tags["kubetrader.trial"]) for c in children) == list(range(8))
    assert all(c.info.status == "FINISHED" for c in children)


def test_a_study_on_a_password_protected_storage_writes_no_password_and_syncs_with_the_drivers_url(
    tmp_path: Path, local_mlflow_uri: Callable[[], str], empty_postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a cluster Kubernetes expands the PostgreSQL password into the driver's storage URL
    (operator study builders, `$(POSTGRES_PASSWORD)`). The report and the pending marker sit on
    the shared results volume: neither may hold it, and `mlflow sync` takes the URL from
    KUBETRADER_OPTUNA_STORAGE, as the driver did."""
    from sqlalchemy.engine import make_url

    password = "s3cret-pg-password"  # the socket's trust auth accepts any password
    storage = make_url(empty_postgres_database).set(password=password).render_as_string(hide_password=False)
    assert password in storage
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.delenv("KUBETRADER_OPTUNA_STORAGE", raising=False)
    report = run_study(
        spec(4), name="pg", output_dir=tmp_path, storage_url=storage,
        evaluator=InProcessEvaluator(run=noisy), confirm=False,
    )  # fmt: skip
    assert report.trials_complete == 4 and password not in report.storage and "***@" in report.storage
    written = [p for p in tmp_path.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
    assert written == []

    uri = local_mlflow_uri()
    [held] = sync_pending_studies(tmp_path, tracking_uri=uri)
    assert held.state == "pending" and "KUBETRADER_OPTUNA_STORAGE" in held.message, held
    assert pending_marker(tmp_path / "studies", "pg").is_file()

    monkeypatch.setenv("KUBETRADER_OPTUNA_STORAGE", storage)
    [synced] = sync_pending_studies(tmp_path, tracking_uri=uri)
    assert synced.state == "logged" and synced.run_id, synced
    _parents, children = study_runs(uri, "pg")
    assert len(children) == 4
