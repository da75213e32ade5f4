"""Campaigns: a matrix of backtests fanned out over the queue, gathered into one table.

The driver is deliberately thin: expand the matrix (cell ids from
`expand_matrix`, so a re-submitted campaign does not run a finished cell twice),
enqueue, wait for the batch's events, read the results back by task id. Building
the report is a pure function of the results, so it is tested without Redis.
"""

from __future__ import annotations

import contextlib
import csv
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kubetrader.queue.stats import BatchStats, batch_stats
from kubetrader.queue.tasks import NewTask, TaskResult
from kubetrader.queue.workqueue import WorkQueue
from kubetrader.specs import HEADLINE_METRICS, BacktestSpec, expand_matrix

CSV_METRICS = ("sharpe_ratio", "total_return", "cagr", "max_drawdown", "sortino_ratio", "num_trades", "final_value")


def campaign_tasks(
    spec: BacktestSpec,
    *,
    name: str,
    priority: int = 0,
    max_attempts: int = 3,
    report: bool = False,
    task_timeout: float | None = None,
    artifacts: str = "full",
) -> list[NewTask]:
    """One task per matrix cell; `meta` carries what the table shows (symbol, strategy, params).

    Each cell's execution deadline: `task_timeout` (the command line), else the matrix's
    `taskTimeoutSeconds`, else `deadlines.default_task_timeout` of the cell's data.
    """
    from kubetrader.queue.deadlines import default_task_timeout

    fixed = task_timeout or (spec.matrix.task_timeout_seconds if spec.matrix else None)
    return [
        NewTask(
            id=cell_id,
            spec=cell.to_wire(),
            priority=priority,
            max_attempts=max_attempts,
            timeout_seconds=fixed or default_task_timeout(cell),
            meta={
                "name": name,
                "report": report,
                "artifacts": artifacts,
                "symbols": list(cell.data.symbols),
                "strategy": cell.strategy.path,
                "params": dict(cell.strategy.params),
            },
        )
        for cell_id, cell in expand_matrix(spec)
    ]


def wait_for_batch(
    queue: WorkQueue,
    batch: str,
    *,
    on_progress: Callable[[BatchStats], None] | None = None,
    timeout: float | None = None,
    poll: float = 1.0,
) -> BatchStats:
    """Block until every task of the batch is done, failed or cancelled; report progress as it goes.

    Woken by the batch's events as tasks finish (all that arrived since the last wake-up at
    once), and re-reads the counts at least every `poll` s (so it also notices a cancel from elsewhere). `TimeoutError`
    after `timeout` s.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        stats = batch_stats(queue.redis, batch, prefix=queue.prefix)
        if on_progress is not None:
            on_progress(stats)
        if stats.complete:
            return stats
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch}: {stats.finished}/{stats.total} finished after {timeout} s")
        if queue.next_event(batch, timeout=poll) is not None:
            # Drain what else finished meanwhile: the counts are re-read once per wake-up, not once
            # per task (at 1,000 tasks/s a read per task made the driver a bottleneck of its own).
            queue.pending_events(batch, limit=100_000)


class CampaignRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: str
    symbols: str
    strategy: str
    params: str
    status: str
    metrics: dict[str, float | None] = Field(default_factory=dict)
    run_seconds: float | None
    attempts: int
    worker: str | None
    result_path: str | None
    error: str | None


class CampaignReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch: str
    name: str
    tasks: int
    succeeded: int
    failed: int
    cancelled: int
    execution_seconds: float = Field(description="Wall time from enqueue to the last result.")
    avg_seconds_per_backtest: float | None = Field(description="Mean handler time of the successful runs.")
    workers: int | None = None
    redis: str | None = None
    ranking: list[CampaignRow] = Field(description="Successful runs, best Sharpe first.")
    failures: list[CampaignRow]
    batch_file: str | None = Field(
        default=None, description="With compact artifacts: every cell's metrics and equity curve (Parquet)."
    )


def run_campaign(
    spec: BacktestSpec,
    *,
    name: str,
    batch: str,
    workers: int,
    redis_url: str | None = None,
    local_url: str | None = None,
    prefix: str | None = None,
    priority: int = 0,
    max_attempts: int = 3,
    report: bool = False,
    output_dir: Path = Path("results"),
    timeout: float | None = None,
    task_timeout: float | None = None,
    retry_failed: bool = False,
    artifacts: str = "compact",
    top_k: int = 10,
    on_start: Callable[[int, int, str], None] | None = None,
    on_progress: Callable[[BatchStats], None] | None = None,
) -> CampaignReport:
    """Fan a matrix spec out over the queue and gather its report: the one path behind
    `kubetrader parallel` and `kubetrader run -f matrix.yaml --workers N`.

    Without `redis_url` a local Redis (AOF on) is started for the duration; `workers`
    local worker processes help either way. `local_url`: that Redis, with its `workers`, was
    started by the caller already (`local.local_queue`), to overlap their start-up with its own.
    `on_start(cells, added, url)` is told what was enqueued (a re-submitted batch adds only the
    cells it does not have yet; its dead-lettered cells keep their verdict unless `retry_failed`).
    """
    from kubetrader.queue.local import local_queue, local_workers
    from kubetrader.queue.workqueue import DEFAULT_PREFIX

    prefix = prefix or DEFAULT_PREFIX
    tasks = campaign_tasks(
        spec,
        name=name,
        priority=priority,
        max_attempts=max_attempts,
        report=report,
        task_timeout=task_timeout,
        artifacts=artifacts,
    )
    # Every cell is in the top K, and only our own workers can reach the Redis we start: they write the
    # full files as they run each cell (`handlers.run_backtest`, `full_files`), where this process would
    # otherwise run the cell a second time for them. (Workers of a cluster's Redis may write to a volume
    # this process does not see.)
    full_in_workers = artifacts == "compact" and redis_url is None and workers > 0 and len(tasks) <= top_k
    if full_in_workers:
        tasks = [task.model_copy(update={"meta": {**task.meta, "full_files": True}}) for task in tasks]
    with contextlib.ExitStack() as stack:
        if local_url is not None:
            url = local_url
        elif redis_url is None:
            url = stack.enter_context(local_queue(workers, prefix=prefix, output_dir=output_dir))
        else:
            url = redis_url
            if workers:
                stack.enter_context(local_workers(url, workers, prefix=prefix, output_dir=output_dir))
        if artifacts == "compact":  # after the processes are started: no fork while the thread imports
            _warm_up(COMPACT_MODULES if full_in_workers or top_k == 0 else (*COMPACT_MODULES, *RERUN_MODULES))
        queue = WorkQueue.from_url(url, prefix=prefix)
        started = time.perf_counter()
        added = queue.enqueue(batch, tasks, retry_failed=retry_failed)
        if on_start is not None:
            on_start(len(tasks), added, url)
        unfinished_reason = None
        try:
            wait_for_batch(queue, batch, on_progress=on_progress, timeout=timeout)
        except TimeoutError:
            # The campaign's own --timeout: what has not run will not; say so in each row.
            queue.cancel_batch(batch)
            unfinished_reason = f"not finished when the campaign's timeout of {timeout:g} s passed"
        elapsed = time.perf_counter() - started
        results = queue.results(batch)
    result = build_report(
        batch=batch,
        name=name,
        tasks=tasks,
        results=results,
        execution_seconds=elapsed,
        workers=workers,
        redis=redis_url or "embedded",
        unfinished_reason=unfinished_reason,
    )
    if artifacts == "compact":
        result = _compact_output(result, tasks, results, name=name, output_dir=output_dir, top_k=top_k, report=report)
    return result


# What `_compact_output` imports: for the batch's Parquet file pyarrow, and pandas, which pyarrow 25 imports
# on its first `pa.array` when it is installed (0.5 s and more); and the engine's run path (Backtrader) when
# it runs the top K again itself.
COMPACT_MODULES = ("pandas", "pyarrow.parquet", "kubetrader.queue.artifacts")
RERUN_MODULES = ("kubetrader.pipeline", "kubetrader.runner")


def _warm_up(modules: tuple[str, ...]) -> None:
    """Import `modules` on a daemon thread while this process waits on Redis for the workers (which start
    and run the cells in their own processes), so `_compact_output` does not wait for them afterwards.
    An import error surfaces there, where the import is made again."""
    import importlib

    def load() -> None:
        for module in modules:
            with contextlib.suppress(ImportError):
                importlib.import_module(module)

    threading.Thread(target=load, name="campaign-warm-up", daemon=True).start()


def _compact_output(
    result: CampaignReport,
    tasks: list[NewTask],
    results: dict[str, TaskResult],
    *,
    name: str,
    output_dir: Path,
    top_k: int,
    report: bool,
) -> CampaignReport:
    """Gather the cells into the batch's Parquet file, then write full result files for the top K only
    (unless the worker that ran a cell wrote them: `full_files`)."""
    from kubetrader.queue.artifacts import write_batch_file

    rows: list[dict[str, Any]] = []
    for row in [*result.ranking, *result.failures]:
        record: dict[str, Any] = row.model_dump(exclude={"metrics", "result_path"})
        record.update({f"metric_{k}": v for k, v in sorted(row.metrics.items())})
        record["curve_path"] = row.result_path
        rows.append(record)
    path = write_batch_file(output_dir, result.batch, rows)
    specs = {task.id: task.spec for task in tasks}
    ranking = []
    for rank, row in enumerate(result.ranking):
        full_path = None
        if rank < top_k:
            written = results[row.task_id].data.get("result_json")
            if isinstance(written, str):
                full_path = written
            else:
                from kubetrader.pipeline import execute_one

                outcome = execute_one(
                    BacktestSpec.model_validate(specs[row.task_id]), name=name, output_dir=output_dir, report=report
                )
                full_path = str(outcome.paths.json) if outcome.paths else None
        ranking.append(row.model_copy(update={"result_path": full_path}))
    failures = [row.model_copy(update={"result_path": None}) for row in result.failures]
    return result.model_copy(update={"ranking": ranking, "failures": failures, "batch_file": str(path)})


def build_report(
    *,
    batch: str,
    name: str,
    tasks: list[NewTask],
    results: dict[str, TaskResult],
    execution_seconds: float,
    workers: int | None = None,
    redis: str | None = None,
    unfinished_reason: str | None = None,
) -> CampaignReport:
    """The consolidated report: rows in task order, ranked by Sharpe (None last), plus the failures.

    Every row that did not succeed names its reason: the error's first line (a timeout
    reads `timed out after N s`), or why a cell without a result has none.
    """
    missing_reason = unfinished_reason or "cancelled before it ran (the batch was cancelled)"
    rows = []
    for task in tasks:
        result = results.get(task.id)
        rows.append(
            CampaignRow(
                task_id=task.id,
                symbols=" ".join(task.meta.get("symbols", [])),
                strategy=str(task.meta.get("strategy", "")),
                params=json.dumps(task.meta.get("params", {}), sort_keys=True),
                status=result.status if result else "cancelled",
                metrics=result.metrics if result else {},
                run_seconds=result.run_seconds if result else None,
                attempts=result.attempts if result else 0,
                worker=result.worker if result else None,
                result_path=result.result_path if result else None,
                error=_reason(result) if result else missing_reason,
            )
        )
    ok = [row for row in rows if row.status == "succeeded"]
    ranking = sorted(ok, key=lambda row: _sort_key(row.metrics.get("sharpe_ratio")))
    times = [row.run_seconds for row in ok if row.run_seconds is not None]
    return CampaignReport(
        batch=batch,
        name=name,
        tasks=len(tasks),
        succeeded=len(ok),
        failed=sum(1 for row in rows if row.status == "failed"),
        cancelled=sum(1 for row in rows if row.status == "cancelled"),
        execution_seconds=round(execution_seconds, 3),
        avg_seconds_per_backtest=round(sum(times) / len(times), 4) if times else None,
        workers=workers,
        redis=redis,
        ranking=ranking,
        failures=[row for row in rows if row.status != "succeeded"],
    )


def _reason(result: TaskResult) -> str | None:
    if result.status == "succeeded":
        return None
    if result.error:
        return result.error.splitlines()[0]
    return f"{result.status} after {result.attempts} attempt(s) with no error recorded"


def _sort_key(value: float | None) -> tuple[int, float]:
    return (1, 0.0) if value is None else (0, -value)


def write_report(report: CampaignReport, csv_path: Path) -> tuple[Path, Path]:
    """The CSV (one row per backtest, ranked) and, beside it, the JSON with the batch metadata."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["rank", "task_id", "symbols", "strategy", "params", "status", *CSV_METRICS]
    columns += ["run_seconds", "attempts", "worker", "result_path", "error"]
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for rank, row in enumerate([*report.ranking, *report.failures], start=1):
            writer.writerow(_csv_row(rank if row.status == "succeeded" else None, row))
    json_path = csv_path.with_suffix(".json")
    json_path.write_text(json.dumps(report.model_dump(mode="json"), indent=2), encoding="utf-8")
    return csv_path, json_path


def _csv_row(rank: int | None, row: CampaignRow) -> dict[str, Any]:
    data: dict[str, Any] = {
        "rank": rank if rank is not None else "",
        **row.model_dump(exclude={"metrics"}),
    }
    for metric in CSV_METRICS:
        data[metric] = row.metrics.get(metric)
    return data


def headline(row: CampaignRow) -> str:
    """One line for the terminal: symbol, strategy and the headline metrics."""
    parts = [f"{m}={row.metrics[m]:.3f}" for m in HEADLINE_METRICS if row.metrics.get(m) is not None]
    return f"{row.symbols:<8} {row.strategy.rsplit('.', 1)[-1]:<22} " + " ".join(parts)
