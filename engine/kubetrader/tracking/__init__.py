"""Research-lab tracking in MLflow: every backtest, study and trial as a run.

Experiments are named Project.AssetClass.StrategyFamily.Strategy and carry the
same levels as tags, so the lab can be queried server-side by any level
(`ProjectManager`). MLflow is a derived record: results are always kept locally
first, and runs that could not be logged are caught up by `kubetrader mlflow sync`.

Importing this package does not import MLflow (1-2 s); the functions do, when called.
"""

from __future__ import annotations

from kubetrader.tracking.client import ParentRun, log_run, start_parent_run
from kubetrader.tracking.naming import ExperimentPath, strategy_name
from kubetrader.tracking.outcomes import SyncOutcome, TrackingState
from kubetrader.tracking.projects import ProjectManager
from kubetrader.tracking.record import record_backtest, sync_pending
from kubetrader.tracking.settings import tracking_uri, ui_command

__all__ = [
    "ExperimentPath",
    "ParentRun",
    "ProjectManager",
    "SyncOutcome",
    "TrackingState",
    "log_run",
    "record_backtest",
    "start_parent_run",
    "strategy_name",
    "sync_pending",
    "tracking_uri",
    "ui_command",
]
