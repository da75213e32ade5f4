"""Connecting, staying connected and knowing it: retries with backoff, and a health check
that proves the API answers (a reqCurrentTime round trip, not an open port).

A gateway can hold its port open while the API behind it is dead (logging in, a
daily restart, a hung JVM): only an answered request says the connection is usable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from kubetrader.live.broker import Broker, BrokerUnavailableError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 10
    base_delay: float = 1.0
    max_delay: float = 30.0


def backoff_delays(policy: RetryPolicy) -> list[float]:
    """Delays before attempts 2..n: doubling from `base_delay`, capped at `max_delay`."""
    return [min(policy.max_delay, policy.base_delay * 2**i) for i in range(max(0, policy.attempts - 1))]


def connect_with_retry(broker: Broker, policy: RetryPolicy, *, sleep: Callable[[float], None] = time.sleep) -> int:
    """Connect and prove the API answers; returns the attempts used, raises the last error."""
    delays = backoff_delays(policy)
    for attempt in range(1, policy.attempts + 1):
        try:
            broker.connect()
            broker.ping()
            return attempt
        except BrokerUnavailableError as exc:
            broker.disconnect()
            if attempt == policy.attempts:
                raise
            log.warning("connect attempt %d/%d failed: %s", attempt, policy.attempts, exc)
            sleep(delays[attempt - 1])
    raise AssertionError("unreachable")


class HealthCheck:
    """Decides when a ping is due and remembers the last proof of life."""

    def __init__(self, interval: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.last_ok: float | None = None
        self.last_error: str | None = None
        self._next = 0.0

    def due(self) -> bool:
        return self.clock() >= self._next

    def run(self, broker: Broker) -> bool:
        """Ping now; True when the API answered."""
        self._next = self.clock() + self.interval
        try:
            broker.ping()
        except BrokerUnavailableError as exc:
            self.last_error = str(exc)
            return False
        self.last_ok = self.clock()
        self.last_error = None
        return True
