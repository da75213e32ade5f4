"""A study in MLflow: a parent run, one child run per trial, the best one tagged, charts attached."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kubetrader.optimize.service import run_study
from kubetrader.specs import OptimizationStudySpec


def test_study_logs_parent_and_child_runs_with_the_best_trial_tagged(
    tmp_path: Path, local_mlflow_uri: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    uri = local_mlflow_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    spec = OptimizationStudySpec.model_validate(
        {
            "backtest": {
                "strategy": {"path": "strategies.sma_crossover.SMACrossover"},
                "data": {"symbols": ["ORCL"], "start": "2011-01-01", "end": "2012-12-31"},
                "tracking": {
                    "enabled": True,
                    "project": "Q1_2025",
                    "assetClass": "Equities",
                    "strategyFamily": "TrendFollowing",
                },
            },
            "space": {
                "fast": {"type": "int", "low": 5, "high": 20, "step": 5},
                "slow": {"type": "int", "low": 30, "high": 60, "step": 30},
            },
            "trials": 5,
            "sampler": {"type": "grid"},
        }
    )
    report = run_study(
        spec, name="mlflow-study", output_dir=tmp_path, storage_url=f"journal://{tmp_path}/s.log", confirm=False
    )
    assert report.mlflow_parent_run_id is not None
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("Q1_2025.Equities.TrendFollowing.SMACrossover")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == report.mlflow_parent_run_id]
    assert len(children) == report.trials_complete + report.trials_failed == 5
    best = [
        r
        for r in children
        if r.data.tags.get("kubetrader.best_trial") == "true"
        or any(k.endswith("best_trial") and v == "true" for k, v in r.data.tags.items())
    ]
    assert len(best) == 1
    assert best[0].data.metrics["sharpe_ratio"] == pytest.approx(report.best_value, rel=1e-12)
    assert {r.data.params["fast"] for r in children} >= {"5", "10"}
    artifacts = {a.path for a in client.list_artifacts(report.mlflow_parent_run_id)}
    assert {report.artifacts["charts"], report.artifacts["best_params"]} <= artifacts
