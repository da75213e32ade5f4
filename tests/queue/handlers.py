"""Deterministic task handlers for the queue tests (worker processes load them by import path)."""

from __future__ import annotations

import threading

import redis

from kubetrader.errors import StrategyError
from kubetrader.queue.tasks import HandlerOutcome, Task
from kubetrader.queue.worker import TaskContext


def succeed(task: Task, context: TaskContext) -> HandlerOutcome:
    """Returns at once with a metric taken from the task, so results can be checked per task."""
    return HandlerOutcome(metrics={"sharpe_ratio": float(task.meta.get("sharpe", 1.0))}, result_path=f"{task.id}.json")


def hang(task: Task, context: TaskContext) -> HandlerOutcome:
    """Never returns: the worker holding it can only be killed, or release it after its grace period."""
    threading.Event().wait()
    raise AssertionError("unreachable")


def hang_until_released(task: Task, context: TaskContext) -> HandlerOutcome:
    """Blocks until the test sets the Redis key `release:{task id}`, then succeeds.

    It rides out Redis restarts itself: the tests restart Redis under it and check
    that the *worker* keeps its task, not that this handler fails.
    """
    while True:
        try:
            if context.queue.redis.exists(f"release:{task.id}"):
                return succeed(task, context)
            context.queue.redis.blpop([f"release-signal:{task.id}"], timeout=0.2)
        except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
            context.stopping.wait(0.05)


def poison(task: Task, context: TaskContext) -> HandlerOutcome:
    """Fails tasks marked `poison` (a retryable crash) or `fatal` (a strategy error); others succeed."""
    if task.meta.get("poison"):
        raise RuntimeError(f"poisoned task {task.id} crashed the engine")
    if task.meta.get("fatal"):
        raise StrategyError(f"strategy in {task.id} raised")
    return succeed(task, context)


def slow_succeed(task: Task, context: TaskContext) -> HandlerOutcome:
    """Succeeds after 0.3 s, so a batch is still running when a test restarts Redis under it."""
    context.stopping.wait(0.3)
    return succeed(task, context)


def hang_when_asked(task: Task, context: TaskContext) -> HandlerOutcome:
    """Hangs (like a strategy stuck in `next()`) when the task's meta or its params say `hang`; else succeeds."""
    if task.meta.get("hang") or task.meta.get("params", {}).get("hang"):
        return hang(task, context)
    return succeed(task, context)


def bulky(task: Task, context: TaskContext) -> HandlerOutcome:
    """Succeeds with a 50 KB result, so a few hundred of them fill a small Redis."""
    return HandlerOutcome(metrics={"sharpe_ratio": 1.0}, data={"blob": "x" * 50_000})


def counted(task: Task, context: TaskContext) -> HandlerOutcome:
    """Records each run (the worker's id on the list `runs:{task id}`), then hangs when the task's
    meta says `hang` and this worker was not started with KUBETRADER_TEST_NEVER_HANG; else succeeds.

    The run lists are what "ran exactly once" is checked against, independently of the queue's books.
    """
    import os

    context.queue.redis.rpush(f"runs:{task.id}", context.worker_id)
    if task.meta.get("hang") and not os.environ.get("KUBETRADER_TEST_NEVER_HANG"):
        return hang(task, context)
    return succeed(task, context)
