"""Queue bookkeeping: the pure health score and throughput, and `queue_stats` over a live queue."""

from __future__ import annotations

import threading

import redis

from kubetrader.queue import NewTask, WorkQueue
from kubetrader.queue.stats import (
    QueueStats,
    health_score,
    queue_stats,
    stats_as_dict,
    throughput_per_min,
    window_counts,
    window_minutes,
)
from kubetrader.queue.tasks import HandlerOutcome
from kubetrader.queue.worker import Worker, WorkerSettings
from kubetrader.queue.workqueue import Finished
from tests.helpers import wait_until
from tests.queue import handlers


def score(**kwargs: float) -> tuple[int, list[str]]:
    values = dict(
        pending=0, running=0, workers_alive=0, workers_stale=0, recent_done=0, recent_failed=0, throughput_per_min=0.0
    )
    values.update(kwargs)
    return health_score(**values)  # type: ignore[arg-type]


def test_an_idle_queue_without_workers_is_healthy() -> None:
    assert score() == (100, [])


def test_work_waiting_with_no_live_worker_scores_at_most_10() -> None:
    value, reasons = score(pending=5, workers_stale=2)
    assert value <= 10
    assert any("no live worker" in r for r in reasons)


def test_failures_and_stale_workers_take_points_in_proportion() -> None:
    assert score(pending=1, running=1, workers_alive=2, recent_done=3, recent_failed=1, throughput_per_min=10)[0] == 90
    assert score(running=1, workers_alive=1, workers_stale=1, throughput_per_min=10)[0] == 85


def test_live_workers_that_do_not_claim_pending_work_are_flagged() -> None:
    value, reasons = score(pending=10, workers_alive=3)
    assert value == 70 and "none running" in reasons[0]


def test_throughput_counts_over_the_span_since_the_first_finish_but_at_least_10_s() -> None:
    now = 1_000_000
    assert throughput_per_min([], now) == 0
    assert throughput_per_min([(now - 30_000, 12), (now - 20_000, 8)], now) == 40.0
    assert throughput_per_min([(now - 1000, 1)], now) == 6.0  # one task, 10 s floor
    assert throughput_per_min([(now - 400_000, 50)], now) == 0  # outside the 5-minute window


def test_queue_stats_reports_depth_workers_busy_pods_and_batches(redis_client: redis.Redis) -> None:
    queue = WorkQueue(redis_client, prefix="st")
    queue.enqueue("b1", [NewTask(id=f"t{i}", spec={}) for i in range(5)])
    queue.enqueue("b2", [NewTask(id="slow", spec={}, priority=100)])
    worker = Worker(
        queue, handlers.hang_until_released, settings=WorkerSettings(lease_seconds=5), worker_id="w1", pod="pod-a"
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        stats = wait_until(lambda: stats_when(redis_client, running=1), timeout=10, what="a busy worker")
        assert stats is not None
        assert (stats.pending, stats.running) == (5, 1)
        assert stats.busy_pods == {"pod-a"}
        assert [w.task for w in stats.workers] == ["b2:slow"]
        assert {b.id: (b.total, b.queued, b.running) for b in stats.batches} == {"b1": (5, 5, 0), "b2": (1, 0, 1)}
        assert stats.health == 100
        redis_client.set("release:slow", 1)
        for i in range(5):
            redis_client.set(f"release:t{i}", 1)
        done = wait_until(lambda: stats_when(redis_client, done_total=6), timeout=10, what="6 done")
        assert done is not None
        assert done.throughput_per_min > 0 and done.recent_done == 6
        assert stats_as_dict(done)["workers"][0]["pod"] == "pod-a"
    finally:
        worker.stop()
        thread.join(10)
    assert queue_stats(redis_client, prefix="st").workers == []


def stats_when(client: redis.Redis, **expected: int) -> QueueStats | None:
    """The queue's stats once the given fields have the given values, else None (keep waiting)."""
    stats = queue_stats(client, prefix="st")
    return stats if all(getattr(stats, k) == v for k, v in expected.items()) else None


def test_the_throughput_window_stays_small_however_many_tasks_finish(redis_client: redis.Redis) -> None:
    """The 15-minute window is per-second counts in per-minute buckets that expire, so its Redis
    memory depends on the seconds in the window, not on the task rate (one entry per finished task
    held 90 MB at 1,000 tasks/s)."""
    queue = WorkQueue(redis_client, prefix="win")
    tasks = 3000
    queue.enqueue("b", [NewTask(id=f"t{i}", spec={}) for i in range(tasks)])
    failed = 0
    while claimed := queue.claim_many("w1", 500):
        finished = [Finished(task=t, run_seconds=0.0, outcome=HandlerOutcome()) for t in claimed[1:]]
        finished.append(Finished(task=claimed[0], run_seconds=0.0, error="boom", fatal=True))
        failed += 1
        queue.report("w1", finished)
    window = list(redis_client.scan_iter("win:finished*"))
    assert window, "the window keeps its counts in Redis"
    assert sum(int(redis_client.memory_usage(key) or 0) for key in window) <= 16 * 1024
    assert all(0 < redis_client.pttl(key) <= 17 * 60_000 for key in window)  # gone once out of the window
    stats = queue_stats(redis_client, prefix="win")
    assert (stats.recent_done, stats.recent_failed) == (tasks - failed, failed)
    assert stats.throughput_per_min > 0


def test_window_counts_reads_the_per_second_fields_within_15_minutes() -> None:
    now = 10_000 * 60_000 + 30_500  # second 30 of minute 10000
    assert window_minutes(now)[0] == 10_000 - 15 and window_minutes(now)[-1] == 10_000
    buckets = [
        (10_000 - 15, {"ok:30": "7", "ok:31": "2"}),  # 15 min ago: second 30 is out, 31 is in
        (10_000, {"ok:29": "3", "failed:30": "1", "other:1": "9"}),
    ]
    counts = window_counts(buckets, now)
    assert counts == {
        "ok": [((10_000 - 15) * 60_000 + 31_000, 2), (10_000 * 60_000 + 29_000, 3)],
        "failed": [(10_000 * 60_000 + 30_000, 1)],
    }
