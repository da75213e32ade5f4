"""What the MLflow overview is made of, read by SQL (mlflow_sql) or through MlflowClient (mlflow):
one set of records for both paths, importable without SQLAlchemy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExperimentStats:
    """What the overview shows of one experiment's active runs (since: `runs_since` counts starts at
    or after the time the query was given)."""

    runs: int
    failed: int
    runs_since: int
    last_run_time: int | None
    best_run_id: str | None
    best_metrics: dict[str, float]


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    experiment_id: str
    run_name: str | None
    status: str
    start_time: int | None
    end_time: int | None
    metrics: dict[str, float]
