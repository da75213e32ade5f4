"""The worker-side of a trial: a Backtrader run whose metrics and daily returns go back
to the study driver through the queue (no result files: trials are many, and the best
ones are re-run in full by the driver)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubetrader.optimize.evaluation import run_trial_backtest

if TYPE_CHECKING:
    from kubetrader.queue.tasks import HandlerOutcome, Task
    from kubetrader.queue.worker import TaskContext

TRIAL_HANDLER = "kubetrader.optimize.trial_handler:run_trial"
TRIAL_KIND = "trial"


def run_trial(task: Task, context: TaskContext) -> HandlerOutcome:
    """Validate the spec and run it; engine errors propagate with their class (fatal or retryable)."""
    from kubetrader.queue.tasks import HandlerOutcome
    from kubetrader.specs import BacktestSpec

    metrics, returns = run_trial_backtest(BacktestSpec.model_validate(task.spec))
    return HandlerOutcome(metrics=metrics, data={"returns": returns})
