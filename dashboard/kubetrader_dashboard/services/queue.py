"""The Redis work queue: depth, throughput, workers and health, via kubetrader.queue's stats."""

from __future__ import annotations

from typing import Any

from kubetrader.redaction import redact_uri
from kubetrader_dashboard.models.operations import QueueView


class QueueService:
    """One Redis. `local_default`: nobody named it, it is the loopback Redis `kubetrader
    parallel` and `monitor` use, read when it runs; work is never queued on it (no worker
    may be listening), and its absence is a state, not a failure."""

    def __init__(self, redis_url: str | None, *, local_default: bool = False) -> None:
        self.redis_url = redis_url
        self.local_default = local_default
        self._client: Any = None

    @property
    def available(self) -> bool:
        return bool(self.redis_url)

    @property
    def accepts_work(self) -> bool:
        """Submissions go to this queue only when it was configured on purpose."""
        return self.available and not self.local_default

    @property
    def not_running_reason(self) -> str:
        return f"no local Redis running at {self.redis_url} (kubetrader parallel starts one; or KUBETRADER_REDIS_URL)"

    def client(self) -> Any:
        if self._client is None:
            from kubetrader.queue.server import redis_client

            assert self.redis_url is not None
            # The queue's retry policy, with a deadline short enough for a page load; none for the
            # local default, which not running is the usual state, not an outage to wait out.
            retry = 0 if self.local_default else 3
            self._client = redis_client(self.redis_url, retry_seconds=retry, socket_timeout=3, socket_connect_timeout=3)
        return self._client

    def ping(self) -> None:
        self.client().ping()

    def view(self) -> QueueView:
        if not self.available:
            return QueueView(available=False, reason="KUBETRADER_REDIS_URL is not set")
        import redis

        from kubetrader.errors import InfrastructureError
        from kubetrader.queue.stats import queue_stats

        try:
            return QueueView(stats=queue_stats(self.client()))
        except (redis.ConnectionError, InfrastructureError):
            if self.local_default:
                return QueueView(available=False, reason=self.not_running_reason)
            return QueueView(available=False, reason=f"Redis at {redact_uri(self.redis_url)} unreachable")
        except redis.RedisError as exc:
            return QueueView(available=False, reason=f"Redis at {redact_uri(self.redis_url)} unreachable: {exc}")
