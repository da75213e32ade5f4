"""Running a study end to end: one function behind `kubetrader optimize`,
`kubetrader run -f study.yaml` and the operator's driver Job.

Steps: run the driver to its budget, re-run the best parameters in full through the
backtest pipeline (only Backtrader results of record are reported), compute the
overfitting diagnostics, write the report and charts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubetrader import defaults
from kubetrader.errors import StrategyError
from kubetrader.optimize.evaluation import Evaluator, InProcessEvaluator
from kubetrader.optimize.naming import study_key
from kubetrader.optimize.overfitting import DeflatedSharpe
from kubetrader.optimize.report import StudyReport, write_study_artifacts
from kubetrader.optimize.study import (
    ATTR_METRICS,
    StudyDriver,
    StudyProgress,
    default_storage_url,
    feasible_trials,
    open_storage,
    trial_spec,
)
from kubetrader.specs.study import OptimizationStudySpec

log = logging.getLogger(__name__)

PBO_MIN_TRIALS = 16
PBO_SPLITS = 8


def data_dir() -> Path:
    return defaults.data_dir()


def run_study(
    spec: OptimizationStudySpec,
    *,
    name: str,
    output_dir: Path,
    storage_url: str | None = None,
    evaluator: Evaluator | None = None,
    on_progress: Callable[[StudyProgress], None] | None = None,
    confirm: bool = True,
    namespace: str | None = None,
    uid: str | None = None,
) -> StudyReport:
    """Run (or resume) the study keyed by `spec.study_name or name`, the namespace and the resource's uid
    (kubetrader.optimize.naming), and report on it."""
    if spec.screen == "vectorized":  # the twin screens, Backtrader confirms (kubetrader.optimize.screening)
        from kubetrader.optimize.screening import run_screened_study

        return run_screened_study(
            spec,
            name=name,
            output_dir=output_dir,
            storage_url=storage_url,
            evaluator=evaluator,
            on_progress=on_progress,
            confirm=confirm,
            namespace=namespace,
            uid=uid,
        )
    study_name = study_key(name, study_name=spec.study_name, namespace=namespace, uid=uid)
    storage_url = storage_url or default_storage_url(study_name, data_dir())
    evaluator = evaluator or InProcessEvaluator()
    publish = getattr(evaluator, "publish_progress", None)
    if publish is not None:
        user_callback = on_progress

        def on_progress(progress: StudyProgress) -> None:
            publish(study_name, progress)
            if user_callback is not None:
                user_callback(progress)

    driver = StudyDriver(
        spec,
        study_name=study_name,
        storage_url=storage_url,
        evaluator=evaluator,
        on_progress=on_progress,
        returns_dir=output_dir / "studies" / f"{study_name}-returns",
    )
    summary = driver.run()

    import optuna

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
    studies_dir = output_dir / "studies"
    report = StudyReport(
        study_name=study_name,
        storage=storage_url,
        metric=summary.metric,
        direction=summary.direction,
        trials_complete=summary.trials_complete,
        trials_failed=summary.trials_failed,
        trials_infeasible=summary.trials_infeasible,
        best_value=summary.best_value,
        best_params=summary.best_params,
        best_trial=summary.best_trial,
        artifacts=write_study_artifacts(study, studies_dir, study_name, summary.best_params),
        spec=spec.to_wire(),
    )
    best_returns = summary.best_returns
    if confirm and summary.best_trial is not None:
        from kubetrader.pipeline import execute

        outcome = execute(
            trial_spec(spec.backtest, summary.best_params), name=f"{study_name}-best", output_dir=output_dir
        )
        if outcome.document is None or outcome.paths is None:
            raise StrategyError(f"re-running the best parameters {summary.best_params} failed: {outcome.error}")
        report.confirmed_result = str(outcome.paths.json)
        report.confirmed_metrics = dict(outcome.document.metrics)
        report.confirmed_run_id = outcome.document.metadata.mlflow_run_id
        best_returns = list(outcome.document.returns)
    dsr = deflated_sharpe_of_study(study, best_returns, driver.returns_by_trial())
    report.deflated_sharpe = dsr.value
    report.deflated_sharpe_conventions = dsr
    report.pbo = pbo_of_driver(driver)
    if spec.backtest.tracking.enabled:
        report.mlflow_parent_run_id = _log_to_mlflow(spec, study, report, studies_dir)
    (studies_dir / f"{study_name}.json").write_text(report.model_dump_json(indent=2))
    return report


def _log_to_mlflow(spec: OptimizationStudySpec, study: object, report: StudyReport, studies_dir: Path) -> str | None:
    """The study in MLflow, exactly once (kubetrader.tracking.studies). MLflow is a derived
    record: when it cannot be reached the study's own files stand, a pending marker is
    left for `kubetrader mlflow sync`, and the failure is logged rather than raised. When it
    refuses our credentials no marker is left (a retry fails the same way): the log says why."""
    from kubetrader.tracking import settings
    from kubetrader.tracking.studies import log_study_of_spec, write_pending

    try:
        return log_study_of_spec(study, report, spec, studies_dir=studies_dir)
    except Exception as exc:  # MLflow down or refusing: the study itself stands
        reason = settings.refusal(exc)
        if reason is not None:  # our credentials: a pending marker would be retried in vain for ever
            log.error("study %s not logged to MLflow: %s", report.study_name, reason)
            return None
        log.warning(
            "study %s could not be logged to MLflow (kubetrader mlflow sync logs it later): %s", report.study_name, exc
        )
        write_pending(studies_dir, report.study_name, str(exc), settings.tracking_uri(None))
        return None


def deflated_sharpe_of_study(
    study: object, best_returns: list[float] | None, trial_returns: dict[int, list[float]] | None = None
) -> DeflatedSharpe:
    """DSR of the best trial against the study's feasible complete trials, with its
    conventions (kubetrader.optimize.overfitting.deflated_sharpe_report)."""
    import numpy as np

    from kubetrader.optimize.overfitting import deflated_sharpe_report

    trials = feasible_trials(study)
    sharpes = [t.user_attrs.get(ATTR_METRICS, {}).get("sharpe_ratio") for t in trials]
    keep = [i for i, s in enumerate(sharpes) if isinstance(s, int | float) and math.isfinite(s)]
    per_period = np.array([float(sharpes[i]) / math.sqrt(252) for i in keep])
    points = [tuple(sorted(trials[i].params.items())) for i in keep]
    return deflated_sharpe_report(
        None if best_returns is None else np.asarray(best_returns, dtype=float),
        per_period,
        distinct_points=len(set(points)),
        periods_per_year=252,
        trial_returns=_returns_matrix(trial_returns or {}),
    )


def _returns_matrix(by_trial: dict[int, list[float]]) -> Any:
    """(observations x trials) of the trials whose return series have the common length, or None."""
    import numpy as np

    series = [r for r in by_trial.values() if r]
    if len(series) < 3 or len({len(r) for r in series}) != 1:
        return None
    return np.array(series).T


def pbo_of_driver(driver: StudyDriver) -> float | None:
    """PBO when this run evaluated enough trials with returns of equal length."""
    import numpy as np

    from kubetrader.optimize.overfitting import probability_of_backtest_overfitting

    series = [r for r in driver.returns_by_trial().values() if r]
    if len(series) < PBO_MIN_TRIALS or len({len(r) for r in series}) != 1 or len(series[0]) < 4 * PBO_SPLITS:
        return None
    return probability_of_backtest_overfitting(np.array(series).T, n_splits=PBO_SPLITS).pbo
