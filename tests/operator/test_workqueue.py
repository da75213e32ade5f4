"""The Backtests' work queue on its own (no cluster): bounded, one run per key at a time, no event lost,
retries from a timer that holds no worker (issue 20)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable

import kopf

from kubetrader_operator.workqueue import Action, WorkQueue

Key = tuple[str, str]
DEADLINE = 20.0  # seconds a condition may take; never a sleep that the test relies on


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for `condition` (polled in the event loop, which runs the queue's workers), with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Recorder:
    """A work function that records each call, holds every call until `release` is set, and tracks
    how many run at once."""

    def __init__(self, fail: Callable[[str, Action, int], None] = lambda *_: None) -> None:
        self.release = threading.Event()
        self.calls: list[tuple[str, Action]] = []
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()
        self._fail = fail

    def __call__(self, namespace: str, name: str, action: Action) -> None:
        with self._lock:
            self.calls.append((name, action))
            self.running += 1
            self.most = max(self.most, self.running)
            count = sum(1 for called, _ in self.calls if called == name)
        try:
            if not self.release.wait(DEADLINE):
                raise TimeoutError("the test never released the work")
            self._fail(name, action, count)
        finally:
            with self._lock:
                self.running -= 1


@contextlib.asynccontextmanager
async def _running(work: Recorder, *, workers: int, retry_seconds: float) -> AsyncIterator[WorkQueue]:
    """A started queue over `work`; at the end the work is released and the queue stopped."""
    queue = WorkQueue("test", work, workers=workers, retry_seconds=retry_seconds)
    queue.start()
    try:
        yield queue
    finally:
        work.release.set()
        await queue.stop()


def test_a_burst_runs_at_most_workers_at_once_and_each_key_once() -> None:
    work = Recorder()

    async def scenario() -> None:
        async with _running(work, workers=2, retry_seconds=60) as queue:
            names = [f"bt-{i}" for i in range(10)]
            for name in names:
                queue.submit(("ns", name), Action.START)
            for name in names[5:]:  # more events for keys still waiting: no second run
                queue.submit(("ns", name), Action.RECONCILE)
            await _until(lambda: work.running == 2, "two works running")
            assert queue.pending() == 10
            work.release.set()
            await _until(lambda: queue.pending() == 0, "every key done")
        assert sorted(work.calls) == sorted((name, Action.START) for name in names)
        assert work.most == 2

    asyncio.run(scenario())


def test_an_event_while_a_key_runs_runs_it_again_after_and_the_stronger_action_wins() -> None:
    work = Recorder()

    async def scenario() -> None:
        async with _running(work, workers=3, retry_seconds=60) as queue:
            queue.submit(("ns", "a"), Action.RECONCILE)
            await _until(lambda: work.running == 1, "a running")
            for action in (Action.RECONCILE, Action.START, Action.RECONCILE):  # while a runs
                queue.submit(("ns", "a"), action)
            assert work.running == 1  # never two runs of one key, though two workers are free
            work.release.set()
            await _until(lambda: queue.pending() == 0 and len(work.calls) == 2, "a run again")
        assert work.calls == [("a", Action.RECONCILE), ("a", Action.START)]
        assert work.most == 1

    asyncio.run(scenario())


def test_a_retry_waits_in_a_timer_and_the_one_worker_serves_the_others_meanwhile() -> None:
    """kopf sleeps through a handler's retry delay inside the object's worker; here the delay holds
    no worker, so with one worker an object waiting an hour leaves the others unhindered."""

    def fail(name: str, action: Action, count: int) -> None:
        if name == "waits":
            raise kopf.TemporaryError("the old Job is still there", delay=3600)
        if name == "broken":
            raise kopf.PermanentError("invalid spec")
        if name == "flaky" and count == 1:
            raise RuntimeError("connection reset")

    work = Recorder(fail)
    work.release.set()

    async def scenario() -> None:
        async with _running(work, workers=1, retry_seconds=0.01) as queue:
            for name in ("waits", "broken", "flaky", "other"):
                queue.submit(("ns", name), Action.START)
            await _until(lambda: [n for n, _ in work.calls].count("flaky") == 2, "flaky retried")
            await _until(lambda: queue.pending() == 0, "the others done")
            assert queue.retrying() == 1  # the hour-long retry of "waits", and nothing else
        names = [name for name, _ in work.calls]
        assert names.count("waits") == 1 and names.count("broken") == 1 and "other" in names

    asyncio.run(scenario())


def test_a_failure_before_the_work_is_retried_and_leaves_no_key_stuck_as_running() -> None:
    """`enter` (the Event poster's set-up) runs in the worker before the work; had it raised outside
    the worker's error handling, the worker would have died holding its key as running for good."""
    work = Recorder()
    work.release.set()
    entered: list[int] = []

    def enter() -> None:
        entered.append(1)
        if len(entered) == 1:
            raise KeyError("kubetrader_resync")

    async def scenario() -> None:
        queue = WorkQueue("test", work, workers=1, retry_seconds=0.01, enter=enter)
        queue.start()
        try:
            queue.submit(("ns", "a"), Action.START)
            await _until(lambda: work.calls == [("a", Action.START)], "a retried after the failed enter")
            queue.submit(("ns", "b"), Action.START)  # the one worker is still alive
            await _until(lambda: queue.pending() == 0 and len(work.calls) == 2, "b done")
        finally:
            await queue.stop()

    asyncio.run(scenario())
