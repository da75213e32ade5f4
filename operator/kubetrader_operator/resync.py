"""One operator-wide resync loop for the unfinished Backtests and studies, instead of a kopf timer each.

Why: kopf runs every timer as an asyncio task per object and handler, with its daemon bookkeeping
(kopf docs/timers.rst, "System resources": "significant OS resource usage on large clusters with
thousands of resources"), and a timer makes kopf put its finalizer on every object it serves. The
operator's RSS grew by about 55 MB per 1,000 unfinished Backtests (bench/RESULTS.md, "operator").

Here a kopf index per kind holds the identities of the unfinished objects (filled from the watch
kopf runs for the kind anyway, so no extra API request), and one task, started by a startup handler,
walks the indices every interval and calls the kind's `reconcile` for each entry, a few at a time in
kopf's executor. kopf documents that its indices are safe to hand to tasks started from startup
handlers (docs/indexing.rst, "Guarantees"); an object that ends or is deleted leaves the index at
that event ("When a previously indexed resource is deleted or stops matching the filters, all
associated values are removed", same page), so the loop never revisits it. The same index lets the
Job watches skip the Jobs of finished or deleted owners (`owner_unfinished`).

What the timers guaranteed stays: every unfinished object is reconciled once per
`resync_interval_seconds` whatever events were missed (a Job that vanished, never started, or
finished unseen; a study's progress in Redis), not before it has been quiet for
`resync_idle_seconds` when that is set, and a failure for one object is logged and retried at the
next pass (the timers retried after their backoff) without stopping the others. Their Events are
posted through kopf's poster as before (see `_Run.posting`).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from typing import Any

import kopf
from kopf._core.engines import posting as kopf_posting  # see _Run.posting

from kubetrader_operator.conditions import is_terminal
from kubetrader_operator.labels import owner_name
from kubetrader_operator.settings import get_settings

Key = tuple[str, str]  # (namespace, name)
Reconcile = Callable[[str, str], None]
# Resyncs in flight at once: half of kopf's executor (main.configure), so event handlers keep threads.
CONCURRENCY = 4
MEMO_KEY = "kubetrader_resync"

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Resync:
    """One kind's resync: the kopf index of its unfinished objects and what to call for each."""

    index_id: str
    reconcile: Reconcile


RESYNCS: list[Resync] = []


@dataclasses.dataclass
class _Run:
    """One operator run's loop, kept in kopf's operator-wide memo: each object's memo is a shallow
    copy of it (kopf docs/memos.rst), so the indexing functions see this same object.

    `posting`: kopf's Event poster of this run (its loop and queue). kopf puts them in the context
    of resource handlers only, not of startup handlers or the tasks they start, and kopf.info/warn
    read them from there; kopf posts from "explicitly started per-object threads" that way too
    (kopf/_core/engines/posting.py, `enqueue`). They are taken from the first indexing call (a
    resource handler) and set around every reconcile, so its Events go out exactly as before.
    """

    task: asyncio.Task[None] | None = None
    posting: tuple[asyncio.AbstractEventLoop, Any] | None = None

    def capture_posting(self) -> None:
        if self.posting is None:
            self.posting = (kopf_posting.event_queue_loop_var.get(), kopf_posting.event_queue_var.get())

    def enter_posting(self) -> None:
        if self.posting is not None:
            kopf_posting.event_queue_loop_var.set(self.posting[0])
            kopf_posting.event_queue_var.set(self.posting[1])


def unfinished(status: Mapping[str, Any], *, accepted_only: bool = False) -> bool:
    """Whether an object still needs resyncing: not terminal (and, if asked, already accepted)."""
    conditions = list(status.get("conditions") or [])
    if accepted_only and not conditions:
        return False
    return not is_terminal(conditions)


def register(
    resource: tuple[str, str, str], index_id: str, reconcile: Reconcile, *, accepted_only: bool = False
) -> None:
    """Index the kind's unfinished objects as `{(namespace, name): time of their last event}`.

    kopf calls the indexing function on every watch event of the object, so the value is the time
    of the last change (what a timer's `idle` counted from); the `when` filter drops finished ones
    and those being deleted.
    The function is async: kopf would run a sync one in a thread, per event.
    """

    async def index(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> dict[Key, float]:
        assert namespace is not None  # our kinds are namespaced (the CRDs say so)
        memo[MEMO_KEY].capture_posting()
        return {(namespace, name): time.monotonic()}

    def when(status: kopf.Status, meta: kopf.Meta, **_: Any) -> bool:
        # kopf stopped an object's timers "as soon as the object is marked for deletion"
        # (kopf/_core/engines/daemons.py, stop_daemons); so does the loop.
        return meta.get("deletionTimestamp") is None and unfinished(status, accepted_only=accepted_only)

    kopf.index(*resource, id=index_id, when=when)(index)
    RESYNCS.append(Resync(index_id, reconcile))


def owner_unfinished(kind: str, index_id: str) -> Callable[..., bool]:
    """A kopf `when` filter for a child's events: its owner `kind` is in the index of unfinished ones.

    reconcile does nothing for an owner that is finished or gone, so a child's event is skipped for
    one before any thread or API call: after 1,000 Backtests are deleted, their 1,000 Jobs' deletion
    events cost the operator nothing (kopf passes the indices to filters as to handlers,
    kopf/_core/intents/causes.py `_super_kwargs`). The owner is indexed before its child exists:
    the child is created by a handler of the owner, and kopf indexes an object's event before
    running its handlers (docs/indexing.rst, "Guarantees").
    """

    def check(body: kopf.Body, namespace: str | None, **kwargs: Any) -> bool:
        owner = owner_name(dict(body), kind)
        return owner is not None and namespace is not None and (namespace, owner) in kwargs[index_id]

    return check


def due(entries: Iterable[tuple[Key, Iterable[float]]], *, now: float, idle: float) -> list[Key]:
    """The keys to reconcile now: those whose last change is at least `idle` seconds old.

    A key holds one value per object of that name (two briefly, while a deleted one's successor
    is indexed and the deleted one's DELETED event is not yet seen); the newest change counts.
    """
    return [key for key, changed in entries if now - max(changed, default=now) >= idle]


def snapshot(index: kopf.Index[Key, float]) -> list[tuple[Key, list[float]]]:
    """A copy of the index's entries, taken at once: kopf updates it while the pass runs."""
    return [(key, list(index.get(key, ()))) for key in list(index)]


async def reconcile_all(
    keys: list[Key], reconcile: Reconcile, executor: Executor, *, enter: Callable[[], None] = lambda: None
) -> None:
    """`reconcile` each key once, CONCURRENCY at a time in `executor`, each in a copy of this task's
    context after `enter()` (kopf's sync handlers run in a copied context too); a failure is logged."""
    loop = asyncio.get_running_loop()
    pending: Iterator[Key] = iter(keys)

    async def worker() -> None:
        for namespace, name in pending:  # one iterator shared by the workers: each key once
            context = contextvars.copy_context()
            context.run(enter)
            try:
                await loop.run_in_executor(executor, context.run, reconcile, namespace, name)
            except kopf.TemporaryError as exc:
                logger.warning("resync of %s/%s: %s (again at the next pass)", namespace, name, exc)
            except Exception:
                logger.exception("resync of %s/%s failed (again at the next pass)", namespace, name)

    await asyncio.gather(*(worker() for _ in range(min(CONCURRENCY, len(keys)))))


async def _loop(run: _Run, indices: Mapping[str, kopf.Index[Key, float]], settings: kopf.OperatorSettings) -> None:
    """Every interval, reconcile each due entry of each registered index; runs until cancelled."""
    clock = asyncio.get_running_loop().time
    while True:
        ours = get_settings()
        started = clock()
        for resync in RESYNCS:
            keys = due(snapshot(indices[resync.index_id]), now=time.monotonic(), idle=ours.resync_idle_seconds)
            await reconcile_all(keys, resync.reconcile, settings.execution.executor, enter=run.enter_posting)
        await asyncio.sleep(max(0.0, ours.resync_interval_seconds - (clock() - started)))


@kopf.on.startup()
async def start_resync_loop(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    """Start the loop; it reads the indices as kopf fills them (empty until the first listing)."""
    run = memo[MEMO_KEY] = _Run()
    indices = {resync.index_id: kwargs[resync.index_id] for resync in RESYNCS}
    run.task = asyncio.create_task(_loop(run, indices, settings), name="kubetrader resync")


@kopf.on.probe(id="resyncing")
def resyncing(**kwargs: Any) -> dict[str, int]:
    """Shown at the liveness endpoint: how many objects of each kind the loop keeps in sync."""
    return {resync.index_id: len(kwargs[resync.index_id]) for resync in RESYNCS}


@kopf.on.cleanup()
async def stop_resync_loop(memo: kopf.Memo, **_: Any) -> None:
    """Cancel the loop (and wait for it) before kopf closes its executor."""
    run: _Run | None = memo.get(MEMO_KEY)  # None if the operator stopped before its startup
    if run is not None and run.task is not None:
        run.task.cancel()
        await asyncio.gather(run.task, return_exceptions=True)
