"""A reliable, prioritized work queue on Redis: at-least-once delivery with leases.

Why a priority ZSET plus a lease ZSET moved by Lua scripts, and not Streams
---------------------------------------------------------------------------
Redis Streams with a consumer group (XREADGROUP, XAUTOCLAIM) give leases and
redelivery for free, but a stream is strictly FIFO: priorities would need one
stream per priority level and workers polling them in order, and cancelling a
batch means XACK+XDEL of entries scattered through the stream. A sorted set
scored by `-priority * 2^40 + sequence` is a priority queue with FIFO inside
each priority in one structure; ZRANGE 0 0 + ZREM in a script is an atomic pop.
The lease set (score = deadline on the server's clock) plays the part of the
stream's pending entries list: a task whose worker stops renewing its lease is
moved back (or, after `max_attempts`, to the dead-letter set) by whichever
worker next claims, so no separate janitor has to be alive. Each transition is
one Lua script (see `scripts.py`), so it is atomic and replicated/AOF-logged as
a unit.

Delivery is at-least-once: a worker that lost its lease may still finish. The
*result* is exactly-once: the first terminal outcome of a task is written and
every later one is reported as a duplicate, so a batch of N tasks yields exactly
N results, whatever was re-run.

The scripts touch keys they compute from the prefix, so this needs a single
Redis (or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis

from kubetrader.queue import scripts, validation
from kubetrader.queue.defaults import DEFAULT_PREFIX
from kubetrader.queue.tasks import HandlerOutcome, NewTask, Task, TaskResult, TaskState, task_ref

_ENQUEUE_CHUNK = 500  # tasks per script call: keeps one call short so other clients are not starved

CompleteOutcome = Literal["done", "duplicate", "missing"]
FailOutcome = Literal["dead", "requeued", "cancelled", "ignored", "missing"]


@dataclass(frozen=True)
class Finished:
    """One finished attempt for `WorkQueue.report`: a success (`outcome`) or a failure (`error`)."""

    task: Task
    run_seconds: float
    outcome: HandlerOutcome | None = None
    error: str = ""
    fatal: bool = False


class WorkQueue:
    """The producer and consumer API of the queue, over one Redis client (`decode_responses=True`)."""

    def __init__(self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX, lease_seconds: float = 30.0) -> None:
        self.redis = client
        self.prefix = prefix
        self.lease_seconds = lease_seconds
        self._enqueue = client.register_script(scripts.ENQUEUE)
        self._claim = client.register_script(scripts.CLAIM)
        self._complete = client.register_script(scripts.COMPLETE)
        self._fail = client.register_script(scripts.FAIL)
        self._renew = client.register_script(scripts.RENEW)
        self._release = client.register_script(scripts.RELEASE)
        self._cancel = client.register_script(scripts.CANCEL)
        self._reap = client.register_script(scripts.REAP)
        self._heartbeat = client.register_script(scripts.HEARTBEAT)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> WorkQueue:
        from kubetrader.queue.server import redis_client

        return cls(redis_client(url), **kwargs)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # ---- producer ---------------------------------------------------------------

    def enqueue(self, batch: str, tasks: Iterable[NewTask], *, retry_failed: bool = False) -> int:
        """Add tasks to `batch`; returns how many were added.

        Idempotent per task id: a task already queued, running or done is left
        alone (so a restarted campaign does not run finished cells again), and so
        is a dead-lettered one: its verdict stands (a poison cell that killed its
        worker must not run again because the driver was restarted) unless
        `retry_failed`, which queues it afresh with its attempts reset. A cancelled
        one is queued again. Enqueueing into a cancelled batch re-opens it.
        """
        _check_id(batch, "batch")
        flag = "1" if retry_failed else "0"
        added = 0
        chunk: list[str] = []
        count = 0
        for task in tasks:
            validation.check_task(batch, task.id, task.spec, task.meta)
            chunk += [
                task.id,
                str(task.priority),
                str(task.max_attempts),
                json.dumps(task.spec, separators=(",", ":")),
                json.dumps(task.meta, separators=(",", ":")),
                str(int((task.timeout_seconds or 0) * 1000)),
            ]
            count += 1
            if count == _ENQUEUE_CHUNK:
                added += int(self._enqueue(args=[self.prefix, batch, flag, *chunk]))
                chunk, count = [], 0
        if chunk or added == 0:
            added += int(self._enqueue(args=[self.prefix, batch, flag, *chunk]))
        return added

    def cancel_batch(self, batch: str) -> int:
        """Remove the batch's queued tasks (returns how many); running ones finish but are not retried."""
        return int(self._cancel(args=[self.prefix, batch]))

    def result(self, batch: str, task_id: str) -> TaskResult | None:
        fields = self.redis.hgetall(self.key("result", task_ref(batch, task_id)))
        return TaskResult.from_hash(fields) if fields else None  # type: ignore[arg-type]

    def results(self, batch: str, task_ids: Sequence[str] | None = None) -> dict[str, TaskResult]:
        """Results of a batch (or of the given task ids in it), by task id; tasks without one are absent."""
        if task_ids is None:
            members = self.redis.sunion([self.key("batch", batch, "done"), self.key("batch", batch, "failed")])
            refs = sorted(str(ref) for ref in members)
        else:
            refs = [task_ref(batch, task_id) for task_id in task_ids]
        pipe = self.redis.pipeline(transaction=False)
        for ref in refs:
            pipe.hgetall(self.key("result", ref))
        found: dict[str, TaskResult] = {}
        for fields in pipe.execute():
            if fields:
                res = TaskResult.from_hash(fields)
                found[res.task_id] = res
        return found

    def task_state(self, batch: str, task_id: str) -> TaskState | None:
        state = self.redis.hget(self.key("task", task_ref(batch, task_id)), "state")
        return TaskState(str(state)) if state else None

    def task_fields(self, batch: str, task_id: str) -> dict[str, str]:
        """The raw task hash (state, attempts, worker, last_error, ...), for inspection and tests."""
        return self.redis.hgetall(self.key("task", task_ref(batch, task_id)))  # type: ignore[return-value]

    def next_event(self, batch: str, timeout: float) -> str | None:
        """Block up to `timeout` s for the next task of `batch` to finish; its id, or None.

        A wake-up for one consumer (the batch's driver), not the record: after a
        driver restart, read `results()`.
        """
        popped = self.redis.blpop([self.key("batch", batch, "events")], timeout=max(timeout, 0.01))
        return str(popped[1]) if popped else None

    def pending_events(self, batch: str, limit: int = 1000) -> list[str]:
        """Ids of tasks of `batch` that finished since the last read, without waiting (see `next_event`)."""
        popped = self.redis.lpop(self.key("batch", batch, "events"), limit)
        return [str(item) for item in popped or []]

    def dead_letters(self, limit: int = 100) -> list[TaskResult]:
        """The most recent dead-lettered tasks, newest first, with their last error."""
        refs = self.redis.zrevrange(self.key("dead"), 0, limit - 1)
        pipe = self.redis.pipeline(transaction=False)
        for ref in refs:
            pipe.hgetall(self.key("result", str(ref)))
        return [TaskResult.from_hash(fields) for fields in pipe.execute() if fields]

    # ---- consumer ---------------------------------------------------------------

    def claim(self, worker: str, *, lease_seconds: float | None = None, reap_limit: int = 100) -> Task | None:
        """Take the highest-priority task and lease it to `worker`; first re-queue expired leases."""
        tasks = self.claim_many(worker, 1, lease_seconds=lease_seconds, reap_limit=reap_limit)
        return tasks[0] if tasks else None

    def claim_many(
        self, worker: str, count: int, *, lease_seconds: float | None = None, reap_limit: int = 100
    ) -> list[Task]:
        """Lease up to `count` tasks to `worker` in one round trip, highest priority first.

        Each task gets its own lease, renewed by the worker while it holds it, so one that
        dies holding several gives every one back when the leases expire.
        """
        (tasks,) = self.report(worker, [], claim=count, lease_seconds=lease_seconds, reap_limit=reap_limit)[1:]
        return tasks

    def report(
        self,
        worker: str,
        finished: Sequence[Finished],
        *,
        claim: int = 0,
        lease_seconds: float | None = None,
        reap_limit: int = 100,
    ) -> tuple[list[str], list[Task]]:
        """Record finished attempts and claim up to `claim` new tasks, all in one pipelined round trip.

        Each record is the same script `complete` or `fail` runs (atomic per task, idempotent:
        a repeat after a dropped connection answers `duplicate` / `ignored`), so batching changes
        the number of round trips, not what any task goes through. Returns each record's
        outcome (as `complete` / `fail` would) and the claimed tasks.
        """
        pipe = self.redis.pipeline(transaction=False)
        for item in finished:
            if item.outcome is not None:
                self._complete(args=self._complete_args(item.task, worker, item.outcome, item.run_seconds), client=pipe)
            else:
                self._fail(
                    args=self._fail_args(item.task, worker, item.error, item.fatal, item.run_seconds), client=pipe
                )
        if claim > 0:
            lease_ms = int((lease_seconds or self.lease_seconds) * 1000)
            self._claim(args=[self.prefix, worker, lease_ms, reap_limit, claim], client=pipe)
        replies = pipe.execute() if len(pipe) else []
        claimed = replies[len(finished)] if claim > 0 else []
        tasks = [Task.from_hash(json.loads(fields)) for fields in claimed or []]
        return [str(status) for status in replies[: len(finished)]], tasks

    def renew(self, task: Task, worker: str, *, lease_seconds: float | None = None) -> bool:
        """Extend the lease; False when it is no longer ours (expired and re-queued, or finished)."""
        return self.renew_many([task], worker, lease_seconds=lease_seconds)[0]

    def renew_many(self, tasks: Sequence[Task], worker: str, *, lease_seconds: float | None = None) -> list[bool]:
        """Extend the leases of every task the worker holds (running or claimed ahead), one round trip."""
        lease_ms = int((lease_seconds or self.lease_seconds) * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for task in tasks:
            self._renew(args=[self.prefix, task.ref, worker, lease_ms], client=pipe)
        return [bool(ok) for ok in pipe.execute()] if tasks else []

    def complete(self, task: Task, worker: str, outcome: HandlerOutcome, *, run_seconds: float) -> CompleteOutcome:
        status = self._complete(args=self._complete_args(task, worker, outcome, run_seconds))
        return status

    def fail(self, task: Task, worker: str, error: str, *, fatal: bool, run_seconds: float) -> FailOutcome:
        """Record a failed attempt: dead-letter it when fatal or out of attempts, else re-queue it."""
        status = self._fail(args=self._fail_args(task, worker, error, fatal, run_seconds))
        return status

    def _complete_args(self, task: Task, worker: str, outcome: HandlerOutcome, run_seconds: float) -> list[str]:
        metrics = json.dumps(outcome.metrics, separators=(",", ":"))
        data = json.dumps(outcome.data, separators=(",", ":"))
        return [self.prefix, task.ref, worker, metrics, outcome.result_path or "", f"{run_seconds:.6f}", data]

    def _fail_args(self, task: Task, worker: str, error: str, fatal: bool, run_seconds: float) -> list[str]:
        return [self.prefix, task.ref, worker, error[:4000], "1" if fatal else "0", f"{run_seconds:.6f}"]

    def release(self, task: Task, worker: str) -> bool:
        """Give the task back without spending an attempt (a worker told to stop)."""
        return self.release_many([task], worker)[0]

    def release_many(self, tasks: Sequence[Task], worker: str) -> list[bool]:
        """Give back tasks claimed ahead and not started (or interrupted), one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for task in tasks:
            self._release(args=[self.prefix, task.ref, worker], client=pipe)
        return [bool(ok) for ok in pipe.execute()] if tasks else []

    def reap(self, limit: int = 1000) -> int:
        """Re-queue (or dead-letter) expired leases now; claims do this anyway."""
        return int(self._reap(args=[self.prefix, limit]))

    def wait_for_work(self, timeout: float, *, worker: str | None = None) -> None:
        """Block until something was enqueued or re-queued, or `timeout` s passed, or (with `worker`)
        `interrupt_wait(worker)` was called.

        The worker's own key comes first: BLPOP pops from the first non-empty key, so a worker woken
        to stop does not also take a shared token another idle worker could use.
        """
        keys = [self.key("wake", worker), self.key("wake")] if worker else [self.key("wake")]
        self.redis.blpop(keys, timeout=max(timeout, 0.01))

    def interrupt_wait(self, worker: str) -> None:
        """End `worker`'s idle wait now (its stop): a token on its own wake key.

        A signal cannot end a blocking read (Python retries the system call after the handler, PEP 475),
        so without this a stopped worker noticed its stop only when BLPOP timed out. The token outlives
        the call (a worker between two waits finds it at the next one) and expires, or goes with
        `forget_worker`.
        """
        pipe = self.redis.pipeline(transaction=True)
        pipe.lpush(self.key("wake", worker), "stop")
        pipe.pexpire(self.key("wake", worker), 60_000)
        pipe.execute()

    def heartbeat(self, worker: str, fields: dict[str, str], *, ttl_seconds: float) -> None:
        flat = [item for pair in fields.items() for item in pair]
        self._heartbeat(args=[self.prefix, worker, int(ttl_seconds * 1000), *flat])

    def forget_worker(self, worker: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.key("worker", worker), self.key("wake", worker))
        pipe.zrem(self.key("workers"), worker)
        pipe.execute()


def _check_id(value: str, what: str) -> None:
    import re

    from kubetrader.queue.tasks import ID_PATTERN

    if not re.fullmatch(ID_PATTERN, value):
        raise ValueError(f"{what} id {value!r} must match {ID_PATTERN}")
