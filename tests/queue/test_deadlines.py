"""Task execution deadlines: a hung handler is stopped and its task dead-lettered, the worker goes on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import redis

from kubetrader.queue import NewTask, TaskState, WorkQueue
from kubetrader.queue.deadlines import default_task_timeout
from kubetrader.queue.server import redis_client
from kubetrader.queue.worker import Worker
from kubetrader.specs import BacktestSpec
from tests.helpers import wait_until
from tests.queue import handlers
from tests.queue.conftest import WorkerSpawner


def test_a_worker_process_stops_a_hung_task_at_its_deadline_dead_letters_it_and_carries_on(
    redis_url: str, spawn: WorkerSpawner
) -> None:
    queue = WorkQueue(redis_client(redis_url))
    queue.enqueue(
        "hung",
        [
            NewTask(id="stuck", spec={}, meta={"hang": True}, timeout_seconds=1, max_attempts=3),
            NewTask(id="fine", spec={}, timeout_seconds=30),
        ],
    )
    worker = spawn(redis_url, "hang_when_asked", lease_seconds=2)
    wait_until(lambda: len(queue.results("hung")) == 2, timeout=60, what="both results")

    stuck, fine = queue.result("hung", "stuck"), queue.result("hung", "fine")
    assert stuck is not None and fine is not None
    assert stuck.status == "failed" and stuck.attempts == 1  # final at once: it would hang again
    assert (stuck.error or "").startswith("timed out after 1 s")
    assert [d.task_id for d in queue.dead_letters()] == ["stuck"]
    assert fine.status == "succeeded"
    assert worker.poll() is None  # the same process (its image replaced) goes on serving the queue
    assert fine.worker == stuck.worker  # same pod and pid


def test_an_embedded_worker_times_a_hung_task_out_and_takes_the_next(redis_client: redis.Redis) -> None:
    queue = WorkQueue(redis_client)
    queue.enqueue("hung", [NewTask(id="stuck", spec={}, meta={"hang": True}, timeout_seconds=0.3)])
    queue.enqueue("hung", [NewTask(id="fine", spec={})])
    summary = Worker(queue, handlers.hang_when_asked, worker_id="w").run(exit_when_idle=True)
    assert (summary.timed_out, summary.succeeded) == (1, 1)
    assert queue.task_state("hung", "stuck") == TaskState.FAILED


def test_a_campaign_report_names_every_cell_that_did_not_succeed_with_its_reason(
    redis_url: str, tmp_path: Path, spawn: WorkerSpawner
) -> None:
    from kubetrader.queue.campaign import run_campaign

    spec = BacktestSpec.model_validate(
        {
            "strategy": {"path": "strategies.sma_crossover.SMACrossover"},
            "data": {"symbols": ["ORCL"], "start": "2012-01-01", "end": "2012-12-31"},
            "matrix": {"params": {"fast": [5, 10], "hang": [False, True]}, "taskTimeoutSeconds": 1.5},
        }
    )
    spawn(redis_url, "hang_when_asked")
    report = run_campaign(spec, name="c", batch="c", workers=0, redis_url=redis_url, output_dir=tmp_path)
    assert (report.succeeded, report.failed, report.cancelled) == (2, 2, 0)
    assert all(json_params(row.params)["hang"] for row in report.failures)
    assert [row.error for row in report.failures] == [
        "timed out after 1.5 s (the task's execution deadline); the handler was stopped"
    ] * 2


def test_cells_left_when_the_campaign_timeout_passes_are_cancelled_with_that_reason(
    redis_url: str, tmp_path: Path
) -> None:
    from kubetrader.queue.campaign import run_campaign

    spec = BacktestSpec.model_validate(
        {
            "strategy": {"path": "strategies.sma_crossover.SMACrossover"},
            "data": {"symbols": ["ORCL"], "start": "2012-01-01", "end": "2012-12-31"},
            "matrix": {"params": {"fast": [5, 10]}},
        }
    )
    report = run_campaign(spec, name="c", batch="late", workers=0, redis_url=redis_url, timeout=0.3)
    assert report.cancelled == 2
    assert {row.error for row in report.failures} == {"not finished when the campaign's timeout of 0.3 s passed"}
    assert WorkQueue(redis_client(redis_url)).redis.zcard("kubetrader:pending") == 0  # nothing left to run


def test_the_default_deadline_grows_with_the_data_a_cell_reads() -> None:
    def spec(years: int, timeframe: str, symbols: list[str]) -> BacktestSpec:
        start = dt.date(2010, 1, 1)
        return BacktestSpec.model_validate(
            {
                "strategy": {"path": "strategies.sma_crossover.SMACrossover"},
                "data": {
                    "symbols": symbols,
                    "start": start,
                    "end": start.replace(year=2010 + years),
                    "timeframe": timeframe,
                },
            }
        )

    daily = default_task_timeout(spec(5, "1d", ["ORCL"]))
    assert 300 < daily < 320  # 1,260 bars
    assert default_task_timeout(spec(5, "1d", ["ORCL", "GOOG"])) > daily
    assert default_task_timeout(spec(1, "1m", ["ORCL"])) > 700  # 98,280 bars


def json_params(text: str) -> dict[str, object]:
    import json

    return dict(json.loads(text))
