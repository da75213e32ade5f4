"""The operator's entry module: `kopf run -m kubetrader_operator.main` (or `python -m kubetrader_operator`).

Each kind's handlers live in their own module; add a line to HANDLER_MODULES to
register more (scaling, live). Settings are applied in the startup handler only.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections import Counter
from typing import Any

import kopf

from kubetrader_operator.labels import KOPF_PREFIX
from kubetrader_operator.metrics import serve
from kubetrader_operator.settings import get_settings

HANDLER_MODULES: list[str] = [
    "kubetrader_operator.backtest.handlers",
    "kubetrader_operator.live.handlers",
    "kubetrader_operator.scaling.handlers",
    "kubetrader_operator.study.handlers",
]

for _module in HANDLER_MODULES:
    importlib.import_module(_module)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    ours = get_settings()
    # Our CRDs give `status` a schema, so the API server would prune kopf's `status.kopf`:
    # keep kopf's handler progress and diff-base in annotations instead.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=KOPF_PREFIX)
    settings.persistence.finalizer = f"{KOPF_PREFIX}/finalizer"
    # One replica with a Recreate strategy (see README): no peering objects to install or watch.
    settings.peering.standalone = True
    settings.posting.level = logging.getLevelName(ours.posting_level)
    # Watches end and restart at this interval, so a silently dead connection cannot last long.
    settings.watching.server_timeout = ours.watch_timeout_seconds
    settings.watching.client_timeout = ours.watch_timeout_seconds + 10
    settings.watching.reconnect_backoff = min(ours.backoff_seconds, 1.0)
    settings.queueing.idle_timeout = 0.1  # react to a burst of Job events without waiting
    settings.queueing.exit_timeout = 2.0
    settings.execution.max_workers = 8  # sync handlers run in threads; the API calls are I/O-bound
    serve(ours.metrics_port)


@kopf.on.probe(id="handler_modules")
def loaded_modules(**_: Any) -> list[str]:
    """Shown at the liveness endpoint: which handler modules this operator runs."""
    return HANDLER_MODULES


@kopf.on.probe(id="asyncio_tasks")
async def running_tasks(**_: Any) -> dict[str, Any]:
    """Shown at the liveness endpoint: the operator's asyncio tasks (the most common coroutines by
    name), and when they were counted (kopf caches probes for a while). A count that grows with the
    number of objects is per-object work kopf keeps running, a timer or daemon each (issue 20)."""
    tasks = asyncio.all_tasks()
    names = (getattr(coro := task.get_coro(), "__qualname__", type(coro).__name__) for task in tasks)
    common = Counter(names).most_common(5)
    return {"count": len(tasks), "at": time.time(), "common": dict(common)}
