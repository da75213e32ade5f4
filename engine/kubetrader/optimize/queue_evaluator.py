"""Trials over the work queue: the driver enqueues, workers (local processes or the
cluster's pool) run them, results come back by task id.

The batch of a trial is its study (`study-{key}`, kubetrader.optimize.naming), so deleting a study cancels
exactly its queued trials, and a restarted driver finds the results of trials it
submitted before it died. Lost workers are the queue's business (an expired lease
puts the task back); the queue's dead-letter verdict (fatal error, or attempts
exhausted) is final for the trial.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kubetrader.optimize.evaluation import Evaluation
from kubetrader.optimize.trial_handler import TRIAL_HANDLER, TRIAL_KIND
from kubetrader.specs.backtest import BacktestSpec


def study_batch(key: str) -> str:
    """`sma-t12` -> `study-sma`: the batch of a trial key (keys are `{study}-t{number}`)."""
    from kubetrader.optimize.naming import trial_batch

    study, sep, number = key.rpartition("-t")
    if not sep or not number.isdigit():
        raise ValueError(f"not a trial key: {key!r}")
    return trial_batch(study)


@dataclass
class QueueEvaluator:
    queue: object  # kubetrader.queue.WorkQueue (typed loosely: redis is imported lazily)
    capacity: int = 1
    priority: int = 0
    max_attempts: int = 2
    task_timeout: float | None = None  # execution deadline of one trial; None: from the data size
    _batches: set[str] = field(default_factory=set)

    def submit(self, key: str, spec: BacktestSpec) -> None:
        from kubetrader.queue import NewTask
        from kubetrader.queue.deadlines import default_task_timeout

        batch = study_batch(key)
        self._batches.add(batch)
        task = NewTask(
            id=key,
            spec=spec.to_wire(),
            priority=self.priority,
            max_attempts=self.max_attempts,
            meta={"kind": TRIAL_KIND},
            timeout_seconds=self.task_timeout or default_task_timeout(spec),
        )
        self.queue.enqueue(batch, [task])  # type: ignore[attr-defined]

    def collect(self, timeout: float) -> list[Evaluation]:
        """Wait up to `timeout` s for the first finished trial, then take every other one without waiting."""
        deadline = time.monotonic() + timeout
        found: list[Evaluation] = []
        if not self._batches:  # nothing submitted or adopted: nothing can finish; do not spin
            time.sleep(timeout)
            return found
        for batch in sorted(self._batches):
            ids = self.queue.pending_events(batch)  # type: ignore[attr-defined]
            if not ids and not found:
                first = self.queue.next_event(batch, max(deadline - time.monotonic(), 0.01))  # type: ignore[attr-defined]
                ids = [first] if first is not None else []
                ids += self.queue.pending_events(batch)  # type: ignore[attr-defined]
            for task_id in ids:
                evaluation = self._evaluation(batch, task_id)
                if evaluation is not None:
                    found.append(evaluation)
        return found

    def lookup(self, key: str) -> Evaluation | None:
        return self._evaluation(study_batch(key), key)

    def in_flight(self, key: str) -> bool:
        """True while the task is queued or running; the driver then waits for it, so its batch is listened to."""
        from kubetrader.queue import TaskState

        batch = study_batch(key)
        state = self.queue.task_state(batch, key)  # type: ignore[attr-defined]
        if state in (TaskState.QUEUED, TaskState.RUNNING):
            self._batches.add(batch)  # an adopted trial's result arrives as an event of its batch
            return True
        return False

    def publish_progress(self, study_name: str, progress: object) -> None:
        """Let watchers without Optuna access (the operator, the dashboard) see the study move."""
        from kubetrader.optimize.progress import publish_progress

        publish_progress(self.queue.redis, study_name, progress)  # type: ignore[attr-defined]

    def cancel(self) -> None:
        for batch in self._batches:
            self.queue.cancel_batch(batch)  # type: ignore[attr-defined]

    def _evaluation(self, batch: str, task_id: str) -> Evaluation | None:
        result = self.queue.result(batch, task_id)  # type: ignore[attr-defined]
        if result is None:
            return None
        if result.status == "succeeded":
            from kubetrader.optimize.trial_handler import load_returns

            returns = load_returns(result.result_path) or result.data.get("returns")
            return Evaluation(key=task_id, metrics=dict(result.metrics), returns=returns)
        return Evaluation(key=task_id, metrics=None, error=result.error or result.status)


@contextlib.contextmanager
def queue_evaluator(
    *,
    workers: int,
    redis_url: str | None = None,
    output_dir: Path | str = "results",
    lease_seconds: float = 30.0,
    task_timeout: float | None = None,
    queue_dir: Path | None = None,
) -> Iterator[QueueEvaluator]:
    """A QueueEvaluator on `redis_url` (its workers run elsewhere, plus `workers` local
    ones), or on an embedded Redis with `workers` local worker processes.

    The embedded Redis keeps its append-only file in `queue_dir` (one per study), so a
    driver restarted after a crash finds the trials the dead one had in flight, with
    their results, and adopts them; after a clean finish the folder is removed.
    """
    import shutil

    from kubetrader.queue import WorkQueue, embedded_redis
    from kubetrader.queue.local import local_workers

    with contextlib.ExitStack() as stack:
        url = redis_url or stack.enter_context(embedded_redis(queue_dir))
        if workers > 0:
            stack.enter_context(
                local_workers(url, workers, handler=TRIAL_HANDLER, output_dir=output_dir, lease_seconds=lease_seconds)
            )
        # With an external Redis its worker pool sets the pace (capacity 0: the study's parallelism).
        capacity = workers if redis_url else max(workers, 1)
        evaluator = QueueEvaluator(
            WorkQueue.from_url(url, lease_seconds=lease_seconds), capacity=capacity, task_timeout=task_timeout
        )
        try:
            yield evaluator
        except BaseException:
            evaluator.cancel()
            raise
    if redis_url is None and queue_dir is not None:  # finished cleanly: nothing left to adopt
        shutil.rmtree(queue_dir, ignore_errors=True)
