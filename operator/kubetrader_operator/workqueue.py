"""A bounded work queue for one kind: kopf's handlers only enqueue, a few workers do the API work.

Why (issue 20, bench/RESULTS.md "operator"): kopf starts one worker per object with no limit, and a
sync handler's worker waits for a thread of kopf's executor holding the object's event, body, cause
and kwargs. A burst of 250 Backtests left ~250 such workers waiting behind 8 threads, and the
Python heap that burst needed stayed with the process (CPython returns an arena of its allocator only
when every object in it is gone): about 17 MB of RSS for the first 250 Backtests, +27 MB for 1,000,
still there after they were deleted. kopf's own `settings.queueing.worker_limit` is not the answer: it
applies to every watched kind alike and a kopf worker keeps its slot while it sleeps through a
handler's retry delay (kopf/_core/actions/application.py `apply`), so waiting objects would hold up
the others, LiveDeployments' emergency stops included.

Here a kind's handlers put `(namespace, name)` and what is wanted (`Action`) in the queue and return
at once, so kopf's worker lets go of the event. `workers` tasks take the keys in order and run the
kind's work function in the queue's own threads, never in kopf's executor: a burst of Backtests
cannot delay a LiveDeployment's handlers, which keep kopf's threads for themselves. What a client-go
workqueue guarantees holds here too: a key waits in the queue once however many events arrive for
it (the strongest wanted action wins), a key is never worked on by two workers at once, and an
event that arrives while its key is being worked on runs the work again after that run. A failure
is retried after its delay (`kopf.TemporaryError.delay`, else `retry_seconds`) from a timer that
holds no worker; `kopf.PermanentError` is logged and not retried, as kopf does.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import enum
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import kopf

Key = tuple[str, str]  # (namespace, name)

logger = logging.getLogger(__name__)


class Action(enum.IntEnum):
    """What an object needs; a stronger action includes the weaker ones (start ends with a reconcile)."""

    RECONCILE = 1
    START = 2


Work = Callable[[str, str, Action], None]


@dataclasses.dataclass
class WorkQueue:
    """One kind's queue. Create it and call `start()` in the event loop, `stop()` before it closes.

    `enter` runs in each work item's context before the work (the resync loop's kopf Event poster,
    see resync._Run.posting).
    """

    name: str
    work: Work
    workers: int
    retry_seconds: float
    enter: Callable[[], None] = lambda: None
    _wanted: dict[Key, Action] = dataclasses.field(default_factory=dict)  # keys waiting, and for what
    _running: set[Key] = dataclasses.field(default_factory=set)
    _ready: asyncio.Queue[Key] = dataclasses.field(default_factory=asyncio.Queue)
    _tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    _timers: set[asyncio.TimerHandle] = dataclasses.field(default_factory=set)
    _executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix=f"kubetrader-{self.name}")
        self._tasks = [asyncio.create_task(self._worker(), name=f"kubetrader {self.name}") for _ in range(self.workers)]

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def submit(self, key: Key, action: Action) -> None:
        """Want `action` for `key` (from the event loop's thread): queued once, the strongest action wins."""
        if key in self._wanted:
            self._wanted[key] = max(self._wanted[key], action)
            return
        self._wanted[key] = action
        if key not in self._running:  # else queued when the running work ends
            self._ready.put_nowait(key)

    def pending(self) -> int:
        """Keys waiting or being worked on (shown at the liveness endpoint)."""
        return len(self._wanted.keys() | self._running)

    def retrying(self) -> int:
        """Keys whose retry timer is set."""
        return len(self._timers)

    def _retry(self, key: Key, action: Action, delay: float) -> None:
        def fire() -> None:
            self._timers.discard(timer)
            self.submit(key, action)

        timer = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(timer)

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key = await self._ready.get()
            action = self._wanted.pop(key)
            self._running.add(key)
            context = contextvars.copy_context()
            try:  # `enter` too: a worker that died here would hold its key as running for good
                context.run(self.enter)
                await loop.run_in_executor(self._executor, context.run, self.work, *key, action)
            except kopf.PermanentError as exc:
                logger.warning("%s of %s/%s failed permanently: %s", action.name.lower(), *key, exc)
            except kopf.TemporaryError as exc:
                logger.warning("%s of %s/%s: %s (again in %ss)", action.name.lower(), *key, exc, exc.delay)
                self._retry(key, action, self.retry_seconds if exc.delay is None else exc.delay)
            except Exception:
                logger.exception("%s of %s/%s failed (again in %ss)", action.name.lower(), *key, self.retry_seconds)
                self._retry(key, action, self.retry_seconds)
            finally:
                self._running.discard(key)
                if key in self._wanted:  # an event came while it ran: run again
                    self._ready.put_nowait(key)
