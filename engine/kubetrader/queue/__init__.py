"""The work queue: tasks, workers, batch bookkeeping and campaigns, on Redis.

No Kubernetes here: the operator reads `queue_stats` to scale workers, the CLI,
the API and the dashboard read the same function.
"""

from kubetrader.queue.server import RedisServer, embedded_redis, redis_client
from kubetrader.queue.tasks import HandlerOutcome, NewTask, Task, TaskResult, TaskState
from kubetrader.queue.workqueue import DEFAULT_PREFIX, WorkQueue

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
