"""A worker: claim a task, run it with a pluggable handler, store its result, repeat.

The handler is any `(Task, TaskContext) -> HandlerOutcome` callable, named by
import path (`module:attribute`) on the command line, so the production worker
runs backtests (`kubetrader.queue.handlers:run_backtest`) and the fault tests run
the very same loop with handlers that block until killed or always fail.

The handler runs in a thread of its own while the main thread waits for it *or*
for a stop request. That is what lets SIGTERM (Kubernetes scaling down) stop
claiming at once, give the running task its grace period, and, if it does not
finish, release it back to the queue without spending an attempt, then exit 0.
A background thread renews the lease and publishes the heartbeat (pod, task) the
scaler reads to protect busy pods.

Redis faults (a restart, a failover, `-OOM` with `noeviction`) are ridden out by the
client's retry policy (`queue.retry`): every queue call is retried with backoff up to
the deadline, then the worker exits 3 with a one-line reason.

Errors: a `FatalError` (or an invalid spec) dead-letters the task at once;
anything else counts an attempt and the task is retried until `max_attempts`.
Either way the worker records the error and goes on with the next task.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from kubetrader.errors import FatalError, InfrastructureError
from kubetrader.queue import metrics, validation
from kubetrader.queue.tasks import HandlerOutcome, Task
from kubetrader.queue.workqueue import Finished, WorkQueue

log = logging.getLogger(__name__)


@dataclass
class TaskContext:
    """What a handler may use besides the task: where to write, and whether to hurry."""

    queue: WorkQueue
    worker_id: str
    output_dir: Path
    stopping: threading.Event = field(default_factory=threading.Event)


TaskHandler = Callable[[Task, TaskContext], HandlerOutcome]


class WorkerSettings(BaseModel):
    lease_seconds: float = Field(default=30.0, gt=0, description="A lease not renewed for this long expires.")
    heartbeat_seconds: float | None = Field(
        default=None, gt=0, description="Renew and heartbeat interval; a third of the lease by default."
    )
    grace_seconds: float = Field(
        default=20.0, ge=0, description="On stop, how long the current task may run before it is released."
    )
    idle_wait_seconds: float = Field(default=1.0, gt=0, description="Longest wait for work before polling again.")
    prefetch: int = Field(
        default=64,
        ge=1,
        le=1000,
        description="Most tasks one claim takes (a batched claim); the worker takes fewer for longer tasks.",
    )
    prefetch_seconds: float = Field(
        default=0.05,
        ge=0,
        description="How much work (by the average task time so far) a worker may hold beyond the running task,"
        " and how long a finished result may wait to be reported with others. 0: one task at a time.",
    )
    queue_metrics: bool = Field(
        default=False, description="Refresh the queue-depth gauges with each heartbeat (when serving /metrics)."
    )
    output_dir: Path = Path("results")

    @property
    def interval(self) -> float:
        return self.heartbeat_seconds or self.lease_seconds / 3


class WorkerSummary(BaseModel):
    worker_id: str
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    released: int = 0
    duplicates: int = 0
    timed_out: int = 0


def load_handler(path: str, *, warm_up: bool = True) -> TaskHandler:
    """`module:attribute` -> the handler callable; runs the module's `warm_up()` if it has one."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"handler {path!r}: expected 'module:attribute'")
    module = importlib.import_module(module_name)
    handler = getattr(module, attr)
    hook = getattr(module, "warm_up", None)
    if warm_up and callable(hook):
        hook()
    if not callable(handler):
        raise TypeError(f"handler {path!r} is not callable")
    return handler


def default_worker_id() -> tuple[str, str]:
    """(pod, worker id): the pod is HOSTNAME (the pod name on Kubernetes), the id adds the pid."""
    pod = os.environ.get("HOSTNAME") or socket.gethostname()
    return pod, f"{pod}-{os.getpid()}"


def describe_error(exc: BaseException) -> str:
    """One line with the type and message, then the innermost frames (enough to find the bug)."""
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
    tail = "".join(frames[-3:]).strip()
    return f"{type(exc).__name__}: {exc}\n{tail}"


def restart_in_place() -> None:
    """Replace this process with a fresh run of the same command line (`execv`, same pid).

    The one way to stop a handler thread stuck past its deadline; keeping the pid means
    a supervisor (`local_workers`, the kubelet) sees the worker carry on, not crash, and
    the worker id (pod + pid) stays the same. The new image warms up and claims again.
    """
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)


def is_fatal(exc: BaseException) -> bool:
    return isinstance(exc, FatalError | ValidationError)


class Worker:
    def __init__(
        self,
        queue: WorkQueue,
        handler: TaskHandler,
        *,
        settings: WorkerSettings | None = None,
        worker_id: str | None = None,
        pod: str | None = None,
        on_stuck: Callable[[], None] | None = None,
    ) -> None:
        default_pod, default_id = default_worker_id()
        self.queue = queue
        self.handler = handler
        self.settings = settings or WorkerSettings()
        self.pod = pod or default_pod
        self.worker_id = worker_id or default_id
        self.summary = WorkerSummary(worker_id=self.worker_id)
        self.on_stuck = on_stuck
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._beat_wake = threading.Event()
        self._current: Task | None = None
        self._held: deque[Task] = deque()  # claimed ahead, not started
        self._unreported: list[Finished] = []  # finished, to report with the next round trip
        self._unreported_since = 0.0
        self._avg_run: float | None = None
        self._state = "idle"
        self._started_at = str(int(time.time() * 1000))
        self._lock = threading.Lock()

    # ---- control ----------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; the running task gets the grace period. Safe from a signal handler."""
        self._stop.set()
        self._wake.set()
        self._beat_wake.set()  # publish "stopping" now, not at the next interval

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # ---- loop -------------------------------------------------------------------

    def run(self, *, max_tasks: int | None = None, exit_when_idle: bool = False) -> WorkerSummary:
        """Claim and run tasks until stopped (or `max_tasks` claimed, or the queue is empty).

        Round trips are what limit short tasks, so a worker claims several at once when its
        tasks are short (`claim_size`), and reports finished ones together with the next claim
        (`WorkQueue.report`). Every task claimed ahead is leased and renewed like the running
        one and given back (`release`) on a stop, so batching changes no guarantee: a worker
        killed while holding K tasks loses their leases, and all K run again elsewhere.
        """
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._beat_loop, args=(beat_stop,), name="heartbeat", daemon=True)
        self._heartbeat()
        self._refresh_metrics()
        beat.start()
        redis_gone = False
        try:
            while not self._stop.is_set():
                if not self._held:
                    room = None if max_tasks is None else max_tasks - self.summary.claimed
                    if room is not None and room <= 0:
                        break
                    want = self.claim_size() if room is None else min(self.claim_size(), room)
                    tasks = self._flush(claim=want)
                    if not tasks:
                        if exit_when_idle:
                            break
                        self._set_state("idle", None)
                        self.queue.wait_for_work(self.settings.idle_wait_seconds, worker=self.worker_id)
                        continue
                    self.summary.claimed += len(tasks)
                    with self._lock:
                        self._held.extend(tasks)
                with self._lock:
                    task = self._held.popleft()
                self._set_state("busy", task)
                self._process(task)
                with self._lock:
                    self._current = None
                if self._unreported and (
                    not self._held or time.monotonic() - self._unreported_since >= self.settings.prefetch_seconds
                ):
                    self._flush()
        except InfrastructureError:
            redis_gone = True  # the client retried up to its deadline already; do not wait again
            raise
        finally:
            beat_stop.set()
            self._beat_wake.set()
            beat.join(timeout=5)
            if not redis_gone:
                self._give_back()
            self._state = "stopped"
            metrics.BUSY.set(0)
            if not redis_gone:
                try:
                    self.queue.forget_worker(self.worker_id)
                except Exception:  # Redis gone at shutdown: the heartbeat will simply expire
                    log.warning("could not remove worker %s from the registry", self.worker_id, exc_info=True)
        return self.summary

    def claim_size(self) -> int:
        """How many tasks to claim: as many as fit in `prefetch_seconds` of work at the average
        handler time so far (one until a task has been timed), at most `prefetch`.

        Long tasks (backtests) are claimed one at a time, so no worker sits on work another
        idle one could take; only short ones, where round trips dominate, are batched, and the
        work held back is bounded by `prefetch_seconds`.
        """
        if self._avg_run is None or self.settings.prefetch_seconds <= 0:
            return 1
        fits = int(self.settings.prefetch_seconds / max(self._avg_run, 1e-6))
        return max(1, min(self.settings.prefetch, fits))

    def _flush(self, *, claim: int = 0) -> list[Task]:
        """Report the results not yet reported and claim up to `claim` more, in one round trip."""
        with self._lock:
            finished, self._unreported = self._unreported, []
        statuses, tasks = self.queue.report(
            self.worker_id, finished, claim=claim, lease_seconds=self.settings.lease_seconds
        )
        for item, status in zip(finished, statuses, strict=True):
            metrics.record_task(status, item.run_seconds)
            if item.outcome is not None:
                if status == "duplicate":
                    self.summary.duplicates += 1
                else:
                    self.summary.succeeded += 1
            else:
                self.summary.failed += 1
                log.warning("task %s attempt %d failed (%s): %s", item.task.ref, item.task.attempt, status, item.error)
        return tasks

    def _give_back(self) -> None:
        """On the way out: report what finished, release what was claimed ahead and not started."""
        try:
            self._flush()
            with self._lock:
                held, self._held = list(self._held), deque()
            if held:
                self.queue.release_many(held, self.worker_id)
                self.summary.released += len(held)
        except Exception:  # Redis gone: the leases expire and the tasks run again elsewhere
            log.warning("could not report or release the tasks %s held", self.worker_id, exc_info=True)

    def _process(self, task: Task) -> None:
        refused = validation.refusal(task.batch, task.id, task.spec, task.meta)
        if refused is not None:  # written to Redis by something other than our producers
            result = self.queue.fail(task, self.worker_id, refused, fatal=True, run_seconds=0.0)
            metrics.record_task(result, 0.0)
            self.summary.failed += 1
            log.error("task %s dead-lettered before running: %s", task.ref, refused)
            return
        context = TaskContext(
            queue=self.queue, worker_id=self.worker_id, output_dir=self.settings.output_dir, stopping=self._stop
        )
        outcome: list[HandlerOutcome] = []
        error: list[BaseException] = []
        finished = threading.Event()

        def target() -> None:
            try:
                outcome.append(self.handler(task, context))
            except BaseException as exc:  # a handler may raise anything; the worker must survive it
                error.append(exc)
            finally:
                finished.set()
                self._wake.set()

        self._wake.clear()
        started = time.perf_counter()
        thread = threading.Thread(target=target, name=f"task-{task.id}", daemon=True)
        thread.start()
        deadline = None if task.timeout_seconds is None else started + task.timeout_seconds
        while not finished.is_set() and not self._stop.is_set():
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                self._time_out(task, run_seconds=time.perf_counter() - started)
                return
            self._wake.wait(remaining)
            self._wake.clear()
        if not finished.is_set() and not finished.wait(self.settings.grace_seconds):
            released = self.queue.release(task, self.worker_id)
            self.summary.released += 1
            metrics.record_task("released", time.perf_counter() - started)
            log.warning("task %s still running after the grace period; released=%s", task.ref, released)
            return
        run_seconds = time.perf_counter() - started
        self._avg_run = run_seconds if self._avg_run is None else 0.8 * self._avg_run + 0.2 * run_seconds
        if outcome:
            item = Finished(task=task, run_seconds=run_seconds, outcome=outcome[0])
        else:
            exc = error[0]
            item = Finished(task=task, run_seconds=run_seconds, error=describe_error(exc), fatal=is_fatal(exc))
        with self._lock:
            if not self._unreported:
                self._unreported_since = time.monotonic()
            self._unreported.append(item)

    def _time_out(self, task: Task, *, run_seconds: float) -> None:
        """Dead-letter a task past its execution deadline, then get rid of its handler.

        A strategy stuck in `next()` would otherwise renew its lease forever. The
        verdict is final (fatal): the same cell would hang again. Python cannot stop
        a thread, so `on_stuck` does it: the CLI worker replaces its process image
        (`restart_in_place`); an embedded worker (tests) leaves the daemon thread
        behind and carries on. Before that, the results not yet reported are reported
        and the tasks claimed ahead given back: the new image would not know of them.
        """
        message = f"timed out after {task.timeout_seconds:g} s (the task's execution deadline); the handler was stopped"
        result = self.queue.fail(task, self.worker_id, message, fatal=True, run_seconds=run_seconds)
        metrics.record_task("timed_out", run_seconds)
        self.summary.failed += 1
        self.summary.timed_out += 1
        log.error("task %s %s (%s)", task.ref, message, result)
        if self.on_stuck is not None:
            self._give_back()
            self.on_stuck()

    # ---- heartbeat --------------------------------------------------------------

    def _set_state(self, state: str, task: Task | None) -> None:
        # Published at once only when the state changes (the scaler must see a pod turn busy);
        # the task a busy worker is on is refreshed by the periodic beat, not per task.
        changed = state != self._state
        with self._lock:
            self._state = state
            self._current = task
        metrics.BUSY.set(1 if state == "busy" else 0)
        if changed:
            self._heartbeat()

    def _heartbeat(self) -> None:
        with self._lock:
            task = self._current
            state = "stopping" if self._stop.is_set() and self._state != "stopped" else self._state
        interval = self.settings.interval
        self.queue.heartbeat(
            self.worker_id,
            {
                "pod": self.pod,
                "pid": str(os.getpid()),
                "state": state,
                "task": task.ref if task else "",
                "processed": str(self.summary.succeeded),
                "failed": str(self.summary.failed),
                "interval_ms": str(int(interval * 1000)),
                "started_at": self._started_at,
            },
            ttl_seconds=interval * 6,
        )

    def _refresh_metrics(self) -> None:
        if self.settings.queue_metrics:
            metrics.refresh_queue(self.queue.redis, self.queue.prefix)

    def _beat_loop(self, beat_stop: threading.Event) -> None:
        interrupted = False
        while True:
            self._beat_wake.wait(self.settings.interval)
            self._beat_wake.clear()
            if beat_stop.is_set():
                return
            try:
                if self._stop.is_set() and not interrupted:
                    # `stop` may run in a signal handler, which must not use the Redis connection the main
                    # thread is blocked on; this thread ends that idle wait for it, on a connection of its own.
                    self.queue.interrupt_wait(self.worker_id)
                    interrupted = True
                with self._lock:
                    current = [self._current] if self._current is not None else []
                    held = [*current, *self._held, *(item.task for item in self._unreported)]
                renewed = self.queue.renew_many(held, self.worker_id, lease_seconds=self.settings.lease_seconds)
                for task, ok in zip(held, renewed, strict=True):
                    if not ok:
                        log.warning("lease on %s lost; its result will count only if it is the first", task.ref)
                self._heartbeat()
                self._refresh_metrics()
            except Exception:  # Redis restarting: keep trying, the lease has slack for a few misses
                log.warning("heartbeat failed", exc_info=True)
