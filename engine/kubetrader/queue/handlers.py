"""Task handlers a worker can run, named by import path (`kubetrader worker --handler`).

`run_backtest` is the production handler: the task's spec goes through the same
`kubetrader.pipeline.execute_one` as `kubetrader run` and a Backtest Job, so a
cell run by a worker writes the same result files. Market data is cached per
process by the data package, so a worker loads each data set once.

`dispatch`, the worker's default, routes on `task.meta["kind"]` so one worker pool
serves campaigns (`backtest`, the default) and optimization studies (`trial`).

`noop` does nothing and succeeds: the benchmark uses it to measure what the
queue itself costs per task.
"""

from __future__ import annotations

from functools import cache

from kubetrader.errors import EXIT_RETRYABLE, FatalError, RetryableError
from kubetrader.queue.tasks import HandlerOutcome, Task
from kubetrader.queue.validation import check_name, under
from kubetrader.queue.worker import TaskContext, TaskHandler, load_handler

# task kind -> handler; import paths, so the queue does not import the optimizer until a trial arrives
KIND_HANDLERS: dict[str, str] = {
    "backtest": "kubetrader.queue.handlers:run_backtest",
    "trial": "kubetrader.optimize.trial_handler:run_trial",
}


def dispatch(task: Task, context: TaskContext) -> HandlerOutcome:
    """Run the handler registered for the task's kind; an unknown kind is a fatal error."""
    kind = str(task.meta.get("kind") or "backtest")
    path = KIND_HANDLERS.get(kind)
    if path is None:
        raise FatalError(f"task {task.id}: unknown kind {kind!r}; known: {', '.join(KIND_HANDLERS)}")
    return _handler(path)(task, context)


@cache
def _handler(path: str) -> TaskHandler:
    return load_handler(path, warm_up=False)


def run_backtest(task: Task, context: TaskContext) -> HandlerOutcome:
    """Validate the spec, run it with the engine, return its metrics and the result JSON's path.

    Task `meta` options: `name` (result name; the batch id by default), `report`
    (also draw the plot and the HTML tearsheet; off by default because a campaign
    of hundreds of cells should not spend its time in matplotlib), `returns` (send
    the daily returns back in the result's `data`, for an optimizer's overfitting
    statistics), `artifacts: compact` (a campaign's cell: the metrics and a small equity
    curve, `_run_compact`), with `full_files` also the full result files, whose JSON's path
    goes back in `data["result_json"]` (a small campaign whose every cell is in its top K).
    An engine failure is raised with its class (fatal or retryable) so the queue
    knows whether another attempt can help.
    """
    from kubetrader.pipeline import execute_one
    from kubetrader.results.store import BACKTESTS_DIR
    from kubetrader.runner import result_id
    from kubetrader.specs import BacktestSpec

    spec = BacktestSpec.model_validate(task.spec)  # a ValidationError is fatal (see worker.is_fatal)
    compact = task.meta.get("artifacts") == "compact"
    if compact and not task.meta.get("full_files"):
        return _run_compact(task, context, spec)
    name = check_name(task.meta.get("name") or task.batch, "meta.name")
    under(context.output_dir, BACKTESTS_DIR, f"{result_id(name, spec)}.json")  # before anything is written
    outcome = execute_one(spec, name=name, output_dir=context.output_dir, report=bool(task.meta.get("report", False)))
    if outcome.status == "failed":
        if compact and outcome.paths is not None:
            # a compact campaign has full files for its best cells only, never for a failed one
            for path in (outcome.paths.json, outcome.paths.log):
                path.unlink(missing_ok=True)
        error = outcome.error or "backtest failed"
        if outcome.exit_code == EXIT_RETRYABLE:
            raise RetryableError(error)
        raise FatalError(error)
    result_path = str(outcome.paths.json) if outcome.paths else None
    data: dict[str, object] = {}
    if task.meta.get("returns") and outcome.document is not None:
        data["returns"] = list(outcome.document.returns)
    if compact and outcome.document is not None:
        # the full files, and the curve the driver gathers like any compact cell's (`_cell_curve`)
        data["result_json"] = result_path
        document = outcome.document
        result_path = _cell_curve(task, context, document.dates, document.equity)
    return HandlerOutcome(metrics=outcome.metrics, result_path=result_path, data=data)


def _run_compact(task: Task, context: TaskContext, spec: object) -> HandlerOutcome:
    """Metrics back through the queue, the equity curve to a small file the driver gathers (`queue.artifacts`)."""
    from kubetrader.errors import KubetraderError
    from kubetrader.runner import BacktestRunner

    try:
        result = BacktestRunner(spec).run()  # type: ignore[arg-type]
    except KubetraderError as exc:
        if exc.exit_code == EXIT_RETRYABLE:
            raise RetryableError(str(exc)) from exc
        raise FatalError(str(exc)) from exc
    daily = result.daily  # the run's arrays: no pandas in a worker that only runs cells
    return HandlerOutcome(
        metrics=dict(result.metrics), result_path=_cell_curve(task, context, daily.dates, daily.equity)
    )


def _cell_curve(task: Task, context: TaskContext, days: object, equity: object) -> str:
    """Write the cell's equity curve (days: anything `datetime64[D]` takes, such as ISO dates) where the driver
    gathers it; its path. From the run's series or from its result document (the same UTC days and floats:
    `BacktestResult.to_document`), the curve is the same."""
    import numpy as np

    from kubetrader.queue.artifacts import write_cell_curve

    under(context.output_dir, "campaigns", check_name(task.batch, "batch"), "cells", f"{check_name(task.id, 'id')}.npy")
    day_numbers = np.asarray(days, dtype="datetime64[D]").astype(np.int64)
    values = np.asarray(equity, dtype=float)
    path = write_cell_curve(context.output_dir, task.batch, task.id, context.worker_id, day_numbers, values)
    return str(path.resolve())


def warm_up() -> None:
    """Import the engine before the first claim, so the first task's time (and lease) is not spent importing."""
    import kubetrader.pipeline
    import kubetrader.runner  # noqa: F401 - imported for its side effect of loading Backtrader and numpy


def noop(task: Task, context: TaskContext) -> HandlerOutcome:
    """Succeed at once with no metrics (queue-overhead benchmark)."""
    return HandlerOutcome()
