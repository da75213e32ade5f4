"""Fixtures of the queue's process-level tests: worker processes started by a test, always cleaned up.

`spawn(url, handler, **start_worker_kwargs)` starts a real `kubetrader worker` running one of the
handlers in `tests.queue.handlers` (by name); whatever a test leaves running is SIGKILLed after it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest

from kubetrader.queue.local import start_worker
from tests.helpers import ROOT

WorkerSpawner = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The worker processes of the test (append any started by hand); killed if still running after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def spawn(processes: list[subprocess.Popen[bytes]]) -> WorkerSpawner:
    """Start a worker process with the test handler `name` (`tests.queue.handlers:name`)."""

    def start(
        url: str, handler: str, *, env: dict[str, str] | None = None, **kwargs: object
    ) -> subprocess.Popen[bytes]:
        process = start_worker(
            url, handler=f"tests.queue.handlers:{handler}", env={"PYTHONPATH": str(ROOT), **(env or {})}, **kwargs
        )
        processes.append(process)
        return process

    return start
