"""The Redis work queue: depth, throughput, workers and health, via kubetrader.queue's stats."""

from __future__ import annotations

from typing import Any

from kubetrader_dashboard.models.operations import QueueView
from kubetrader_dashboard.services.mlflow import redact_uri


class QueueService:
    def __init__(self, redis_url: str | None) -> None:
        self.redis_url = redis_url
        self._client: Any = None

    @property
    def available(self) -> bool:
        return bool(self.redis_url)

    def client(self) -> Any:
        if self._client is None:
            from kubetrader.queue.server import redis_client

            assert self.redis_url is not None
            # The queue's retry policy, with a deadline short enough for a page load.
            self._client = redis_client(self.redis_url, retry_seconds=3, socket_timeout=3, socket_connect_timeout=3)
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
        except (redis.RedisError, InfrastructureError) as exc:
            return QueueView(available=False, reason=f"Redis at {redact_uri(self.redis_url)} unreachable: {exc}")
