"""The worker-side of a trial: a Backtrader run whose metrics go back to the study driver
through the queue, and whose daily returns go to a file on the results volume.

Redis holds what the driver needs at once (the metrics, about 1.5 KB); the daily
returns (2,500 doubles for ten years, 50 KB as JSON) are only read for the
overfitting statistics, so they are written once as `.npy` under
`{output}/trials/{batch}/` (the volume the driver and the workers share) and the
result carries their path. A trial in Redis went from 42 KB to about 2 KB.
"""

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
    import numpy as np

    from kubetrader.queue.tasks import HandlerOutcome
    from kubetrader.specs import BacktestSpec

    metrics, returns = run_trial_backtest(BacktestSpec.model_validate(task.spec))
    folder = context.output_dir / "trials" / task.batch
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{task.id}.npy"
    partial = folder / f".{task.id}.{context.worker_id}.npy"
    np.save(partial, np.asarray(returns, dtype=np.float64))
    partial.replace(path)  # atomic: a reader never sees half a file, two attempts never mix
    return HandlerOutcome(metrics=metrics, result_path=str(path.resolve()))


def load_returns(path: str | None) -> list[float] | None:
    """A trial's daily returns from its file; None when it is not readable from here."""
    import numpy as np

    if not path:
        return None
    try:
        return [float(x) for x in np.load(path)]
    except OSError:
        return None
