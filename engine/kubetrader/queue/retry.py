"""Riding out Redis faults: one retry policy for every Redis client of ours.

Redis restarting, failing over or being briefly unreachable is the queue's most
likely fault, and it must not kill the process that gathers the results. So the
client itself retries (redis-py calls `Retry.call_with_retry` around every
command, pipeline and connect; see `redis/client.py` `_execute_command`), with
exponential backoff and jitter, for up to a *deadline* rather than a count of
attempts: an outage is measured in seconds, not in tries. Every call our code
makes is safe to repeat (the queue's scripts are idempotent per task; see
`workqueue.py`).

Two kinds of faults are retried:

- the server is unreachable (`ConnectionError`, `TimeoutError`, `BusyLoadingError`
  while it replays its append-only file);
- the server is out of memory (`-OOM command not allowed`): with `noeviction` it
  refuses writes until someone frees memory, so a worker backs off and carries on
  once `kubetrader queue purge` (or the retention) made room.

When the deadline passes the call raises `RedisUnavailableError` or `RedisOutOfMemoryError`,
both `InfrastructureError`s, so the CLI prints one line saying what to do and
exits 3 (retryable), never a traceback. Any other server error (a wrong type, a
script bug) is not retried and is reported as an infrastructure error by
`infrastructure_error`.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kubetrader.errors import InfrastructureError

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_SECONDS_ENV = "KUBETRADER_REDIS_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 60.0
PURGE_HINT = "free memory with `kubetrader queue purge --older-than 7d` (or --dead-letters), or raise Redis' maxmemory"

UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError)


class RedisUnavailableError(InfrastructureError):
    """Redis stayed unreachable past the retry deadline."""


class RedisOutOfMemoryError(InfrastructureError):
    """Redis refused writes (maxmemory reached with noeviction) past the retry deadline."""


def retry_seconds(default: float = DEFAULT_RETRY_SECONDS) -> float:
    """The retry deadline: `KUBETRADER_REDIS_RETRY_SECONDS` if set, else `default`."""
    raw = os.environ.get(RETRY_SECONDS_ENV)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InfrastructureError(f"{RETRY_SECONDS_ENV}={raw!r}: expected a number of seconds") from None
    if value < 0:
        raise InfrastructureError(f"{RETRY_SECONDS_ENV}={raw!r}: must be >= 0")
    return value


def is_out_of_memory(exc: BaseException) -> bool:
    """OOM as redis-py reports it: its own class for a plain command, a ResponseError wrapping
    `-OOM` for a write inside a Lua script (Redis 6 and 7 word it that way)."""
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or (
        isinstance(exc, redis.exceptions.ResponseError) and "OOM command not allowed" in str(exc)
    )


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, UNREACHABLE) or is_out_of_memory(exc)


def _where(url: str | None) -> str:
    if not url:
        return "Redis"
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"Redis at {parts.hostname}:{parts.port or 6379}"  # no password in a message


def give_up(exc: BaseException, *, url: str | None, seconds: float) -> InfrastructureError:
    """The one-line infrastructure error for a fault that outlived the deadline."""
    where = _where(url)
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if is_out_of_memory(exc):
        return RedisOutOfMemoryError(f"{where} is out of memory (maxmemory reached) for {seconds:.0f} s: {PURGE_HINT}")
    return RedisUnavailableError(
        f"{where} unreachable for {seconds:.0f} s ({type(exc).__name__}: {first}); "
        f"check that it is running (retry deadline: {RETRY_SECONDS_ENV})"
    )


def infrastructure_error(exc: BaseException, *, url: str | None = None) -> InfrastructureError:
    """Any Redis error as an InfrastructureError with one line saying what happened and what to do."""
    if isinstance(exc, InfrastructureError):
        return exc
    if is_retryable(exc):
        return give_up(exc, url=url, seconds=0)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return InfrastructureError(f"{_where(url)} refused a command ({type(exc).__name__}: {first})")


class DeadlineRetry(Retry):
    """redis-py's retry hook, bounded by a deadline from the first failure, not by a count.

    Each call keeps its own state (redis-py deep-copies the policy per connection and
    nests the connect retry inside the command retry; threads share a client), so the
    object itself is immutable.
    """

    def __init__(
        self, seconds: float, *, url: str | None = None, base: float = 0.05, cap: float = 2.0, what: str = "Redis"
    ) -> None:
        super().__init__(NoBackoff(), -1, supported_errors=(redis.exceptions.RedisError,))
        self.seconds = seconds
        self.url = url
        self.base = base
        self.cap = cap

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, DeadlineRetry) and (self.seconds, self.url) == (other.seconds, other.url)

    __hash__ = Retry.__hash__

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        deadline: float | None = None
        failures = 0
        while True:
            try:
                return do()
            except redis.exceptions.RedisError as error:
                if not _retryable(error) or (is_retryable is not None and not is_retryable(error)):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.seconds
                if now >= deadline:
                    raise give_up(error, url=self.url, seconds=self.seconds) from error
                delay = min(self.cap, self.base * 2 ** min(failures - 1, 16)) * random.uniform(0.5, 1.0)
                if failures == 1 or failures % 10 == 0:
                    log.warning("%s: %s; retrying for up to %.0f s", _where(self.url), _first_line(error), self.seconds)
                time.sleep(min(delay, max(deadline - now, 0.0)))


def _retryable(exc: BaseException) -> bool:
    return is_retryable(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
