"""Queue semantics against a real Redis: order, leases, idempotent results, cancel, release."""

from __future__ import annotations

import pytest
import redis

from kubetrader.queue import HandlerOutcome, NewTask, TaskState, WorkQueue
from tests.helpers import wait_until


@pytest.fixture
def queue(redis_client: redis.Redis) -> WorkQueue:
    return WorkQueue(redis_client, prefix="qt", lease_seconds=5)


def tasks(*ids: str, priority: int = 0, **kwargs: object) -> list[NewTask]:
    return [NewTask(id=i, spec={"id": i}, priority=priority, **kwargs) for i in ids]


def test_higher_priority_is_claimed_first_and_fifo_within_a_priority(queue: WorkQueue) -> None:
    queue.enqueue("b", tasks("low1", "low2", priority=-5))
    queue.enqueue("b", tasks("mid1", "mid2"))
    queue.enqueue("b", tasks("high1", "high2", priority=10))
    claimed = []
    while (task := queue.claim("w")) is not None:
        claimed.append(task.id)
    assert claimed == ["high1", "high2", "mid1", "mid2", "low1", "low2"]


def test_enqueue_is_idempotent_and_never_reruns_a_finished_task(queue: WorkQueue) -> None:
    assert queue.enqueue("b", tasks("a", "b")) == 2
    assert queue.enqueue("b", tasks("a", "b")) == 0
    task = queue.claim("w")
    assert task is not None
    assert queue.complete(task, "w", HandlerOutcome(metrics={"sharpe_ratio": 1.5}), run_seconds=0.1) == "done"
    assert queue.enqueue("b", tasks("a", "b")) == 0
    assert queue.claim("w") is not None  # the other one
    assert queue.claim("w") is None


def test_the_same_task_id_in_two_batches_is_two_tasks(queue: WorkQueue) -> None:
    queue.enqueue("b1", tasks("cell"))
    queue.enqueue("b2", tasks("cell"))
    assert {queue.claim("w").batch, queue.claim("w").batch} == {"b1", "b2"}  # type: ignore[union-attr]


def test_an_expired_lease_puts_the_task_back_with_one_more_attempt(queue: WorkQueue) -> None:
    queue.enqueue("b", tasks("t"))
    first = queue.claim("dead-worker", lease_seconds=0.2)
    assert first is not None and first.attempt == 1
    again = wait_until(lambda: queue.claim("live-worker"), timeout=5, what="the expired task to be re-claimed")
    assert again is not None
    assert again.id == "t" and again.attempt == 2
    assert "lease expired: worker dead-worker" in (again.last_error or "")


def test_two_completions_of_a_rerun_task_yield_one_result(queue: WorkQueue) -> None:
    queue.enqueue("b", tasks("t"))
    slow = queue.claim("slow", lease_seconds=0.2)
    fast = wait_until(lambda: queue.claim("fast"), timeout=5, what="re-claim")
    assert slow is not None and fast is not None
    assert queue.complete(fast, "fast", HandlerOutcome(metrics={"x": 1.0}), run_seconds=0.1) == "done"
    assert queue.complete(slow, "slow", HandlerOutcome(metrics={"x": 2.0}), run_seconds=0.3) == "duplicate"
    results = queue.results("b")
    assert list(results) == ["t"]
    assert results["t"].metrics == {"x": 1.0}
    assert results["t"].worker == "fast"
    assert results["t"].attempts == 2


def test_a_failure_reported_by_a_worker_that_lost_its_lease_is_ignored(queue: WorkQueue) -> None:
    queue.enqueue("b", tasks("t"))
    stale = queue.claim("stale", lease_seconds=0.2)
    current = wait_until(lambda: queue.claim("current"), timeout=5, what="re-claim")
    assert stale is not None and current is not None
    assert queue.fail(stale, "stale", "late error", fatal=True, run_seconds=1.0) == "ignored"
    assert queue.task_state("b", "t") == TaskState.RUNNING
    assert queue.renew(stale, "stale") is False
    assert queue.renew(current, "current") is True


def test_retryable_failures_requeue_until_max_attempts_then_dead_letter(queue: WorkQueue) -> None:
    queue.enqueue("b", tasks("t", max_attempts=2))
    first = queue.claim("w")
    assert first is not None
    assert queue.fail(first, "w", "boom 1", fatal=False, run_seconds=0.1) == "requeued"
    second = queue.claim("w")
    assert second is not None and second.attempt == 2 and second.last_error == "boom 1"
    assert queue.fail(second, "w", "boom 2", fatal=False, run_seconds=0.1) == "dead"
    dead = queue.dead_letters()
    assert [(d.task_id, d.status, d.error, d.attempts) for d in dead] == [("t", "failed", "boom 2", 2)]


def test_a_fatal_error_dead_letters_at_once(queue: WorkQueue) -> None:
    queue.enqueue("b", tasks("t", max_attempts=5))
    task = queue.claim("w")
    assert task is not None
    assert queue.fail(task, "w", "SpecError: data.start: bad", fatal=True, run_seconds=0.0) == "dead"
    result = queue.result("b", "t")
    assert result is not None and result.status == "failed" and result.attempts == 1


def test_release_gives_the_task_back_without_spending_an_attempt(queue: WorkQueue) -> None:
    queue.enqueue("b", tasks("t"))
    task = queue.claim("stopping-worker")
    assert task is not None
    assert queue.release(task, "stopping-worker") is True
    again = queue.claim("other")
    assert again is not None and again.attempt == 1


def test_cancel_removes_queued_tasks_and_the_running_one_is_not_retried(queue: WorkQueue) -> None:
    queue.enqueue("b", tasks("run", "q1", "q2"))
    queue.enqueue("other", tasks("keep"))
    running = queue.claim("w")
    assert running is not None and running.id == "run"
    assert queue.cancel_batch("b") == 2
    assert queue.task_state("b", "q1") == TaskState.CANCELLED
    assert queue.fail(running, "w", "boom", fatal=False, run_seconds=0.1) == "cancelled"
    survivor = queue.claim("w")
    assert survivor is not None and (survivor.batch, survivor.id) == ("other", "keep")
    assert queue.claim("w") is None


def test_results_can_be_read_back_by_task_id_and_events_announce_them(queue: WorkQueue) -> None:
    queue.enqueue("study", [NewTask(id="t0", spec={}, meta={"trial": 0}), NewTask(id="t1", spec={})])
    task = queue.claim("w")
    assert task is not None
    outcome = HandlerOutcome(metrics={"sharpe_ratio": 0.7}, data={"returns": [0.01, -0.02]})
    queue.complete(task, "w", outcome, run_seconds=0.2)
    assert queue.next_event("study", timeout=1) == "t0"
    assert queue.next_event("study", timeout=0.05) is None
    found = queue.results("study", ["t0", "t1"])
    assert list(found) == ["t0"]
    assert found["t0"].meta == {"trial": 0}
    assert found["t0"].data == {"returns": [0.01, -0.02]}
    assert found["t0"].run_seconds == pytest.approx(0.2)
    assert found["t0"].total_seconds >= 0


def test_float_metrics_survive_the_round_trip_exactly(queue: WorkQueue) -> None:
    queue.enqueue("b", tasks("t"))
    task = queue.claim("w")
    assert task is not None
    value = 1.2345678901234567
    queue.complete(task, "w", HandlerOutcome(metrics={"sharpe_ratio": value, "alpha": None}), run_seconds=0)
    result = queue.result("b", "t")
    assert result is not None and result.metrics == {"sharpe_ratio": value, "alpha": None}


def test_bad_batch_ids_are_refused_before_reaching_redis(queue: WorkQueue) -> None:
    with pytest.raises(ValueError, match="batch id"):
        queue.enqueue("has:colon", tasks("t"))


def test_re_enqueueing_keeps_a_dead_letter_verdict_unless_retry_failed(queue: WorkQueue) -> None:
    queue.enqueue("b", [NewTask(id="poison", spec={}, max_attempts=1)])
    task = queue.claim("w")
    assert task is not None
    assert queue.fail(task, "w", "it killed its worker", fatal=False, run_seconds=0.1) == "dead"

    assert queue.enqueue("b", [NewTask(id="poison", spec={}, max_attempts=1)]) == 0  # a restarted driver
    assert queue.claim("w") is None
    assert [d.task_id for d in queue.dead_letters()] == ["poison"]
    assert queue.result("b", "poison").error == "it killed its worker"  # type: ignore[union-attr]

    assert queue.enqueue("b", [NewTask(id="poison", spec={}, max_attempts=1)], retry_failed=True) == 1
    assert queue.dead_letters() == []
    assert queue.claim("w") is not None


def test_a_finished_task_is_compacted_to_its_bookkeeping(queue: WorkQueue) -> None:
    queue.enqueue("b", [NewTask(id="t", spec={"big": "x" * 5000}, meta={"name": "n"})])
    task = queue.claim("w")
    assert task is not None and task.spec == {"big": "x" * 5000}
    queue.complete(task, "w", HandlerOutcome(), run_seconds=0.1)
    fields = queue.task_fields("b", "t")
    assert "spec" not in fields and "meta" not in fields and fields["state"] == "done"
    assert queue.result("b", "t").meta == {"name": "n"}  # type: ignore[union-attr]
