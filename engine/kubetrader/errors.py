"""One exception hierarchy, split by what a caller should do about it.

`FatalError`: the input is wrong (bad spec, unknown strategy, no data, a strategy
that raises). Running again cannot help: the engine exits 2, the Job is not
retried, the queue sends the task to the dead-letter set at once.

`RetryableError`: the world is wrong (Redis down, disk full, broker unreachable).
The engine exits 3, the Job is retried up to its backoffLimit, a queue task goes
back to the queue.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FATAL = 2
EXIT_RETRYABLE = 3


class KubetraderError(Exception):
    exit_code = 1


class FatalError(KubetraderError):
    exit_code = EXIT_FATAL


class SpecError(FatalError):
    """A spec or option is invalid; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class DataError(FatalError):
    """Missing, empty or corrupt market data; the message names the symbol and bar."""


class StrategyError(FatalError):
    """The strategy could not be loaded or raised while running."""


class RetryableError(KubetraderError):
    exit_code = EXIT_RETRYABLE


class InfrastructureError(RetryableError):
    """A service the engine depends on is unreachable or failed."""
