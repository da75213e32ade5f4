"""Per-identity rate limits: a sliding window of timestamps per key, in the API's memory.

One API replica (the chart's default) holds every count; with several replicas each counts its own
requests, so the effective limit is the sum over the replicas (written in README.md). A request
over the limit is told when the oldest counted one leaves the window: the Retry-After of a 429
(RFC 9110, 10.2.3; RFC 6585, 4).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

MAX_KEYS = 10_000  # bounded memory: keys idle past the window are dropped when the map is full


class RateLimiter:
    def __init__(self, limit: int, window_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window_seconds
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float | None:
        """Count a request of `key`: None when allowed, else the seconds to wait (>= 1, whole)."""
        if self.limit <= 0:
            return None
        now = self._clock()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= MAX_KEYS:
                    self._forget_idle(now)
                hits = self._hits[key] = deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return float(max(1, math.ceil(hits[0] + self.window - now)))
            hits.append(now)
            return None

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self.window]:
            del self._hits[key]
