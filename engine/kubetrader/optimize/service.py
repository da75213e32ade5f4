"""Running a study end to end: one function behind `kubetrader optimize`,
`kubetrader run -f study.yaml` and the operator's driver Job.

Steps: run the driver to its budget, re-run the best parameters in full through the
backtest pipeline (only Backtrader results of record are reported), compute the
overfitting diagnostics, write the report and charts.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

from kubetrader.errors import StrategyError
from kubetrader.optimize.evaluation import Evaluator, InProcessEvaluator
from kubetrader.optimize.report import StudyReport, write_study_artifacts
from kubetrader.optimize.study import StudyDriver, StudyProgress, default_storage_url, open_storage, trial_spec
from kubetrader.specs.study import OptimizationStudySpec

log = logging.getLogger(__name__)

PBO_MIN_TRIALS = 16
PBO_SPLITS = 8


def data_dir() -> Path:
    return Path(os.environ.get("KUBETRADER_DATA_DIR", "data"))


def run_study(
    spec: OptimizationStudySpec,
    *,
    name: str,
    output_dir: Path,
    storage_url: str | None = None,
    evaluator: Evaluator | None = None,
    on_progress: Callable[[StudyProgress], None] | None = None,
    confirm: bool = True,
) -> StudyReport:
    """Run (or resume) the study `spec.study_name or name` and report on it."""
    study_name = spec.study_name or name
    storage_url = storage_url or default_storage_url(study_name, data_dir())
    driver = StudyDriver(
        spec,
        study_name=study_name,
        storage_url=storage_url,
        evaluator=evaluator or InProcessEvaluator(),
        on_progress=on_progress,
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
        best_returns = list(outcome.document.returns)
    report.deflated_sharpe = _deflated_sharpe(study, best_returns)
    report.pbo = _pbo(driver)
    (studies_dir / f"{study_name}.json").write_text(report.model_dump_json(indent=2))
    return report


def _deflated_sharpe(study: object, best_returns: list[float] | None) -> float | None:
    """DSR of the best trial, with every complete trial's Sharpe as the trial population."""
    import numpy as np
    from optuna.trial import TrialState

    from kubetrader.optimize.overfitting import deflated_sharpe_from_returns

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))  # type: ignore[attr-defined]
    sharpes = [t.user_attrs.get("m_sharpe_ratio") for t in trials]
    per_period = np.array([s / math.sqrt(252) for s in sharpes if isinstance(s, int | float)])
    if best_returns is None or per_period.size < 2:
        return None
    value = deflated_sharpe_from_returns(np.asarray(best_returns, dtype=float), per_period)
    return None if math.isnan(value) else value


def _pbo(driver: StudyDriver) -> float | None:
    """PBO when this run evaluated enough trials with returns of equal length."""
    import numpy as np

    from kubetrader.optimize.overfitting import probability_of_backtest_overfitting

    series = [r for r in driver.returns_by_trial().values() if r]
    if len(series) < PBO_MIN_TRIALS or len({len(r) for r in series}) != 1 or len(series[0]) < 4 * PBO_SPLITS:
        return None
    return probability_of_backtest_overfitting(np.array(series).T, n_splits=PBO_SPLITS).pbo
