"""Worker processes on this machine: what `parallel`, `optimize --workers` and the tests start.

Each worker is an ordinary `kubetrader worker` process (the same command a pod
runs), so a laptop campaign exercises the production code path, and a test can
SIGKILL one exactly like a node failure would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from kubetrader.queue.children import die_with_parent
from kubetrader.queue.defaults import DEFAULT_HANDLER, DEFAULT_PREFIX


def worker_command(
    redis_url: str,
    *,
    handler: str = DEFAULT_HANDLER,
    prefix: str = DEFAULT_PREFIX,
    lease_seconds: float = 30.0,
    grace_seconds: float = 20.0,
    output_dir: Path | str = "results",
    extra: Sequence[str] = (),
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kubetrader.cli.main",
        "worker",
        "--redis",
        redis_url,
        "--handler",
        handler,
        "--prefix",
        prefix,
        "--lease-seconds",
        str(lease_seconds),
        "--grace-seconds",
        str(grace_seconds),
        "--output-dir",
        str(output_dir),
        *extra,
    ]


def start_worker(redis_url: str, *, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.Popen[bytes]:
    """One `kubetrader worker` process (concurrency 1); the caller owns it, and it dies with the caller
    (`children.die_with_parent`): a killed driver leaves no worker behind."""
    command = worker_command(redis_url, **kwargs)  # type: ignore[arg-type]
    return subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent(),  # noqa: PLW1509 - it only calls prctl (resolved before fork): no lock taken
    )


def stop_workers(processes: Sequence[subprocess.Popen[bytes]], *, timeout: float = 30.0) -> list[int]:
    """SIGTERM all (they finish or release their task), wait, SIGKILL stragglers; exit codes."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
    return codes


@contextlib.contextmanager
def local_queue(count: int, **kwargs: object) -> Iterator[str]:
    """A Redis of our own (AOF on, in a temporary folder) and `count` worker processes on it; its URL.

    The workers are started first: most of a worker's start-up is importing the engine, which needs no
    Redis (`kubetrader worker` loads its handler before it connects), so Redis starts meanwhile instead of
    before. On the way out the workers are stopped first (they report or give back their tasks), then Redis.
    """
    from kubetrader.queue.server import RedisServer, embedded_folder

    with contextlib.ExitStack() as stack:
        server = RedisServer(stack.enter_context(embedded_folder()))
        stack.callback(server.stop)
        if count:
            stack.enter_context(local_workers(server.url, count, **kwargs))
        server.start()
        yield server.url


@contextlib.contextmanager
def local_workers(redis_url: str, count: int, **kwargs: object) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` worker processes for the duration of the block, stopped gracefully after it."""
    processes = [start_worker(redis_url, **kwargs) for _ in range(count)]  # type: ignore[arg-type]
    try:
        yield processes
    finally:
        stop_workers(processes)
