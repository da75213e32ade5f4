"""The work queue: tasks, workers, batch bookkeeping and campaigns, on Redis.

No Kubernetes here: the operator reads `queue_stats` to scale workers, the CLI,
the API and the dashboard read the same function.

The names below are imported on first use (PEP 562), not with the package: `kubetrader parallel`
starts its worker processes from `queue.local` before it has loaded redis-py and the task models
(0.3 s), so the workers' start-up overlaps with the rest of the driver's.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kubetrader.queue.defaults import DEFAULT_PREFIX

if TYPE_CHECKING:
    from kubetrader.queue.server import RedisServer, embedded_redis, redis_client
    from kubetrader.queue.tasks import HandlerOutcome, NewTask, Task, TaskResult, TaskState
    from kubetrader.queue.workqueue import WorkQueue

_WHERE = {
    "RedisServer": "server",
    "embedded_redis": "server",
    "redis_client": "server",
    "HandlerOutcome": "tasks",
    "NewTask": "tasks",
    "Task": "tasks",
    "TaskResult": "tasks",
    "TaskState": "tasks",
    "WorkQueue": "workqueue",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "DEFAULT_PREFIX",
    "HandlerOutcome",
    "NewTask",
    "RedisServer",
    "Task",
    "TaskResult",
    "TaskState",
    "WorkQueue",
    "embedded_redis",
    "redis_client",
]
