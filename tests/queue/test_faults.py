"""Fault tests with a real Redis and real worker processes: kills, restarts, poison tasks, SIGTERM."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import redis

from kubetrader.queue import HandlerOutcome, NewTask, TaskState, WorkQueue
from kubetrader.queue.local import stop_workers
from kubetrader.queue.server import redis_client
from kubetrader.queue.worker import Worker, WorkerSettings
from tests.fixtures.redis import RedisServerFactory
from tests.helpers import wait_until
from tests.queue import handlers
from tests.queue.conftest import WorkerSpawner

PREFIX = "faults"


def batch_of(n: int, **kwargs: object) -> list[NewTask]:
    return [NewTask(id=f"t{i:02d}", spec={"i": i}, meta={"sharpe": i / 10}, **kwargs) for i in range(n)]


def finished(queue: WorkQueue, batch: str, n: int) -> bool:
    return len(queue.results(batch)) == n


def holder_of(queue: WorkQueue, batch: str, n: int) -> str:
    """Id of a task of the batch that is running right now, or '' (falsy: keep waiting)."""
    for i in range(n):
        if queue.task_state(batch, f"t{i:02d}") == TaskState.RUNNING:
            return f"t{i:02d}"
    return ""


def test_a_sigkilled_worker_s_task_is_rerun_after_its_lease_and_the_batch_yields_exactly_n_results(
    redis_url: str, spawn: WorkerSpawner
) -> None:
    queue = WorkQueue(redis_client(redis_url), prefix=PREFIX)
    queue.enqueue("kill", batch_of(6))
    doomed = spawn(redis_url, "hang", prefix=PREFIX, lease_seconds=1)
    held = wait_until(lambda: holder_of(queue, "kill", 6), timeout=20, what="the hanging worker to hold a task")

    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    spawn(redis_url, "succeed", prefix=PREFIX, lease_seconds=1)
    wait_until(lambda: finished(queue, "kill", 6), timeout=30, what="all 6 results")

    results = queue.results("kill")
    assert sorted(results) == [f"t{i:02d}" for i in range(6)]
    assert all(r.status == "succeeded" for r in results.values())
    assert results[held].attempts == 2
    assert "lease expired" in queue.task_fields("kill", held)["last_error"]
    assert queue.redis.scard(queue.key("batch", "kill", "done")) == 6


def test_restarting_redis_with_aof_loses_no_queued_running_or_finished_task(
    redis_server_factory: RedisServerFactory, tmp_path: Path
) -> None:
    server = redis_server_factory(tmp_path / "aof", appendfsync="always")
    queue = WorkQueue(redis_client(server.url), prefix=PREFIX, lease_seconds=1)
    queue.enqueue("aof", batch_of(8, priority=3))
    worker = Worker(queue, handlers.succeed, settings=WorkerSettings(lease_seconds=1), worker_id="w")
    worker.run(max_tasks=3)
    held = queue.claim("about-to-die", lease_seconds=1)  # a running task at the moment of the crash
    assert held is not None

    server.kill()  # SIGKILL: only what the AOF holds survives
    server.start()

    queue = WorkQueue(redis_client(server.url), prefix=PREFIX, lease_seconds=1)
    assert sorted(queue.results("aof")) == ["t00", "t01", "t02"]
    assert queue.task_state("aof", held.id) == TaskState.RUNNING
    assert queue.redis.zcard(queue.key("pending")) == 4
    worker = Worker(queue, handlers.succeed, settings=WorkerSettings(lease_seconds=1), worker_id="w2")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: finished(queue, "aof", 8), timeout=20, what="all 8 results after the restart")
    finally:
        worker.stop()
        thread.join(10)
    assert queue.result("aof", held.id).attempts == 2  # type: ignore[union-attr]


def test_a_worker_rides_out_a_redis_restart_in_the_middle_of_a_batch(
    redis_server_factory: RedisServerFactory, tmp_path: Path, spawn: WorkerSpawner
) -> None:
    server = redis_server_factory(tmp_path / "aof", appendfsync="always")
    queue = WorkQueue(redis_client(server.url), prefix=PREFIX)
    queue.enqueue("ride", batch_of(4))
    spawn(server.url, "hang_until_released", prefix=PREFIX, lease_seconds=5)
    held = wait_until(lambda: holder_of(queue, "ride", 4), timeout=20, what="a task to be held")

    server.stop()
    server.start()
    queue = WorkQueue(redis_client(server.url), prefix=PREFIX)
    for i in range(4):
        queue.redis.set(f"release:t{i:02d}", 1)
    wait_until(lambda: finished(queue, "ride", 4), timeout=30, what="the batch to finish after the restart")
    assert queue.result("ride", held).attempts == 1  # type: ignore[union-attr]


def test_a_poison_task_is_dead_lettered_after_max_attempts_and_the_rest_of_the_batch_completes(
    redis_url: str, spawn: WorkerSpawner
) -> None:
    queue = WorkQueue(redis_client(redis_url), prefix=PREFIX)
    tasks = batch_of(6, max_attempts=3)
    tasks[2] = NewTask(id="t02", spec={}, meta={"poison": True}, max_attempts=3)
    tasks[4] = NewTask(id="t04", spec={}, meta={"fatal": True}, max_attempts=3)
    queue.enqueue("poison", tasks)
    spawn(redis_url, "poison", prefix=PREFIX, lease_seconds=2)
    wait_until(lambda: finished(queue, "poison", 6), timeout=30, what="6 results")

    results = queue.results("poison")
    assert {i for i, r in results.items() if r.status == "succeeded"} == {"t00", "t01", "t03", "t05"}
    assert results["t02"].status == "failed" and results["t02"].attempts == 3
    assert "RuntimeError: poisoned task t02 crashed the engine" in (results["t02"].error or "")
    assert results["t04"].attempts == 1  # a strategy error is fatal: no retry
    assert "StrategyError" in (results["t04"].error or "")
    assert {d.task_id for d in queue.dead_letters()} == {"t02", "t04"}


def test_sigterm_releases_a_task_still_running_after_the_grace_period_and_exits_0(
    redis_url: str, spawn: WorkerSpawner
) -> None:
    queue = WorkQueue(redis_client(redis_url), prefix=PREFIX)
    queue.enqueue("term", batch_of(1))
    worker = spawn(redis_url, "hang", prefix=PREFIX, lease_seconds=30, grace_seconds=0.5)
    wait_until(lambda: holder_of(queue, "term", 1), timeout=20, what="the task to be held")

    assert stop_workers([worker], timeout=20) == [0]
    assert queue.task_state("term", "t00") == TaskState.QUEUED
    assert queue.task_fields("term", "t00")["attempts"] == "0"  # released, not spent
    assert queue.redis.zcard(queue.key("workers")) == 0


def test_sigterm_lets_a_task_that_finishes_within_the_grace_period_complete(
    redis_url: str, spawn: WorkerSpawner
) -> None:
    queue = WorkQueue(redis_client(redis_url), prefix=PREFIX)
    queue.enqueue("finish", batch_of(2))
    worker = spawn(redis_url, "hang_until_released", prefix=PREFIX, lease_seconds=30, grace_seconds=30)
    held = wait_until(lambda: holder_of(queue, "finish", 2), timeout=20, what="the task to be held")
    worker.send_signal(signal.SIGTERM)
    wait_until(
        lambda: queue.redis.hget(queue.key("worker", f"{worker_pod()}-{worker.pid}"), "state") == "stopping",
        timeout=10,
        what="the worker to report it is stopping",
    )
    queue.redis.set(f"release:{held}", 1)
    assert worker.wait(20) == 0
    assert list(queue.results("finish")) == [held]  # finished, and the other task was not claimed
    assert queue.task_state("finish", "t01" if held == "t00" else "t00") == TaskState.QUEUED


# The idle waits below are the longest the worker allows (20 s), twice the bound the tests give a stop:
# a stop noticed only when the wait times out (the code before `WorkQueue.interrupt_wait`) overruns it
# every time, whatever the machine's load; one that ends the wait takes a round trip.
LONG_IDLE_WAIT = 20.0
STOP_BOUND = LONG_IDLE_WAIT / 2


def in_blpop(queue: WorkQueue) -> bool:
    """Some client of the server is blocked in BLPOP right now (the worker's state says "idle" before it is)."""
    return any(client.get("cmd") == "blpop" for client in queue.redis.client_list())


def test_stop_ends_an_idle_worker_s_wait_for_work_at_once_and_leaves_no_wake_key(redis_url: str) -> None:
    queue = WorkQueue(redis_client(redis_url), prefix=PREFIX)  # the workers' client (30 s socket timeout)
    settings = WorkerSettings(idle_wait_seconds=LONG_IDLE_WAIT)
    worker = Worker(queue, handlers.succeed, settings=settings, worker_id="idle")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    wait_until(lambda: in_blpop(queue), what="the worker blocked in its wait for work")

    worker.stop()
    thread.join(STOP_BOUND)
    assert not thread.is_alive(), "the stopped worker is still in its wait for work"
    assert queue.redis.exists(queue.key("wake", "idle"), queue.key("worker", "idle")) == 0


def test_sigterm_stops_an_idle_worker_process_without_waiting_out_its_idle_wait(
    redis_url: str, spawn: WorkerSpawner
) -> None:
    queue = WorkQueue(redis_client(redis_url), prefix=PREFIX)
    worker = spawn(redis_url, "succeed", prefix=PREFIX, extra=["--idle-wait-seconds", str(LONG_IDLE_WAIT)])
    wait_until(lambda: in_blpop(queue), timeout=30, what="the worker blocked in its wait for work")

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(STOP_BOUND) == 0
    assert queue.redis.zcard(queue.key("workers")) == 0


def test_a_worker_woken_to_stop_leaves_the_shared_wake_tokens_to_the_others(redis_client: redis.Redis) -> None:
    queue = WorkQueue(redis_client, prefix=PREFIX)
    queue.redis.lpush(queue.key("wake"), "1")  # an enqueue's hint for whichever worker is idle
    queue.interrupt_wait("stopping")
    queue.wait_for_work(LONG_IDLE_WAIT, worker="stopping")
    assert queue.redis.llen(queue.key("wake")) == 1
    assert queue.redis.llen(queue.key("wake", "stopping")) == 0


def test_a_handler_crash_is_recorded_and_the_worker_keeps_going(redis_client: redis.Redis) -> None:
    queue = WorkQueue(redis_client, prefix=PREFIX)
    queue.enqueue("crash", [NewTask(id="boom", spec={}, meta={"poison": True}, max_attempts=1), *batch_of(2)])
    worker = Worker(queue, handlers.poison, worker_id="w")
    summary = worker.run(exit_when_idle=True)
    assert (summary.succeeded, summary.failed) == (2, 1)
    assert queue.result("crash", "boom").status == "failed"  # type: ignore[union-attr]


def worker_pod() -> str:
    from kubetrader.queue.worker import default_worker_id

    return default_worker_id()[0]


def test_handler_outcome_round_trips_through_a_worker_process(redis_url: str, spawn: WorkerSpawner) -> None:
    queue = WorkQueue(redis_client(redis_url), prefix=PREFIX)
    queue.enqueue("proc", batch_of(3))
    worker = spawn(redis_url, "succeed", prefix=PREFIX, extra=["--exit-when-idle"])
    assert worker.wait(30) == 0
    results = queue.results("proc")
    assert {k: r.metrics["sharpe_ratio"] for k, r in results.items()} == {"t00": 0.0, "t01": 0.1, "t02": 0.2}
    assert {r.result_path for r in results.values()} == {"t00.json", "t01.json", "t02.json"}
    assert all(isinstance(r, type(results["t00"])) for r in results.values())
    assert HandlerOutcome.model_validate({"metrics": {"x": 1.0}}).metrics == {"x": 1.0}


def test_worker_concurrency_runs_several_processes_that_share_the_batch(redis_url: str, spawn: WorkerSpawner) -> None:
    queue = WorkQueue(redis_client(redis_url), prefix=PREFIX)
    queue.enqueue("many", batch_of(10))
    queue.enqueue("many", [NewTask(id="slow", spec={}, priority=9)])
    supervisor = spawn(
        redis_url, "hang_until_released", prefix=PREFIX, extra=["--concurrency", "2", "--exit-when-idle"]
    )
    wait_until(lambda: holder_of(queue, "many", 10), timeout=30, what="the second process to take a normal task")
    queue.redis.set("release:slow", 1)
    for i in range(10):
        queue.redis.set(f"release:t{i:02d}", 1)
    assert supervisor.wait(60) == 0
    results = queue.results("many")
    assert len(results) == 11
    assert len({r.worker for r in results.values()}) == 2  # two worker processes took part


def test_a_worker_killed_holding_a_batch_claim_gives_back_all_k_tasks_and_each_runs_exactly_once_elsewhere(
    redis_url: str, spawn: WorkerSpawner
) -> None:
    # t00 is quick, so the worker's next claim is a batch of --prefetch 4 (short tasks are batched);
    # the first of the four hangs, so the worker dies running one and holding three it never started.
    queue = WorkQueue(redis_client(redis_url), prefix=PREFIX)
    queue.enqueue("held", [NewTask(id="t00", spec={})])
    queue.enqueue("held", [NewTask(id=f"t{i:02d}", spec={}, meta={"hang": True}) for i in range(1, 5)])
    doomed = spawn(redis_url, "counted", prefix=PREFIX, lease_seconds=1, extra=["--prefetch", "4"])
    doomed_id = f"{worker_pod()}-{doomed.pid}"
    batch = [f"t{i:02d}" for i in range(1, 5)]

    def holds_all() -> bool:
        fields = [queue.task_fields("held", task_id) for task_id in batch]
        return all(f.get("state") == "running" and f.get("worker") == doomed_id for f in fields)

    wait_until(holds_all, timeout=20, what="the worker to hold all 4 tasks of one claim")
    assert [queue.redis.llen(f"runs:{task_id}") for task_id in batch] == [1, 0, 0, 0]  # one started, 3 held

    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    rescuer = spawn(redis_url, "counted", prefix=PREFIX, lease_seconds=1, env={"KUBETRADER_TEST_NEVER_HANG": "1"})
    rescuer_id = f"{worker_pod()}-{rescuer.pid}"
    wait_until(lambda: finished(queue, "held", 5), timeout=30, what="all 5 results")

    results = queue.results("held")
    assert all(r.status == "succeeded" for r in results.values())
    for task_id in batch:
        assert results[task_id].worker == rescuer_id
        assert results[task_id].attempts == 2  # the lost lease counted one attempt
        assert queue.redis.lrange(f"runs:{task_id}", 0, -1).count(rescuer_id) == 1  # exactly once elsewhere
        assert "lease expired" in queue.task_fields("held", task_id)["last_error"]
    assert queue.redis.scard(queue.key("batch", "held", "done")) == 5
