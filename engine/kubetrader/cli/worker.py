"""`kubetrader worker`: claim backtests from Redis and run them until told to stop."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from kubetrader.queue.defaults import DEFAULT_PREFIX
from kubetrader.redaction import redact_uri

log = logging.getLogger("kubetrader.worker")

# The idle wait is a BLPOP, and redis-py does not lengthen the socket's read timeout for a blocking
# command (`server.redis_client`: 30 s): a longer wait would end in a TimeoutError, not in a poll.
MAX_IDLE_WAIT_SECONDS = 20.0


@click.command()
@click.option("--redis", "redis_url", envvar="KUBETRADER_REDIS_URL", required=True, help="redis://host:port/db")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 256), help="Worker processes.")
@click.option(
    "--handler",
    default="kubetrader.queue.handlers:dispatch",
    show_default=True,
    help="Task handler as module:attribute (default: backtests and study trials with the engine).",
)
@click.option("--prefix", default=DEFAULT_PREFIX, envvar="KUBETRADER_QUEUE_PREFIX", show_default=True)
@click.option("--lease-seconds", default=30.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option(
    "--grace-seconds",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="On SIGTERM, how long the running task may go on before it is released to the queue.",
)
@click.option(
    "--retention",
    envvar="KUBETRADER_QUEUE_RETENTION",
    default="7d",
    show_default=True,
    help="How long finished batches stay in Redis (7d, 12h; 0: until `kubetrader queue purge`).",
)
@click.option(
    "--prefetch",
    default=64,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Most tasks one claim takes; short tasks are claimed in batches up to this, long ones one at a time.",
)
@click.option(
    "--idle-wait-seconds",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, max=MAX_IDLE_WAIT_SECONDS, min_open=True),
    help="Longest wait for work on an empty queue before polling again (an enqueue or a stop ends it at once).",
)
@click.option("--output-dir", default="results", show_default=True, type=click.Path(path_type=Path))
@click.option(
    "--metrics-port",
    envvar="KUBETRADER_WORKER_METRICS_PORT",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics (tasks, durations, queue depth) on this port; 0: off.",
)
@click.option("--max-tasks", type=click.IntRange(min=1), default=None, help="Exit after this many tasks.")
@click.option("--exit-when-idle", is_flag=True, help="Exit when the queue is empty instead of waiting.")
@click.option("-v", "--verbose", is_flag=True)
def worker(
    redis_url: str,
    concurrency: int,
    handler: str,
    prefix: str,
    lease_seconds: float,
    grace_seconds: float,
    retention: str,
    prefetch: int,
    idle_wait_seconds: float,
    output_dir: Path,
    metrics_port: int,
    max_tasks: int | None,
    exit_when_idle: bool,
    verbose: bool,
) -> None:
    """Run backtests from the work queue. SIGTERM: stop claiming, finish or release the task, exit 0."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if concurrency > 1:
        from kubetrader.queue.local import worker_command

        if metrics_port:  # one port per pod: the child processes would each want it
            raise click.BadParameter("--metrics-port needs --concurrency 1 (one worker process per pod)")

        extra = ["--retention", retention, "--prefetch", str(prefetch), "--idle-wait-seconds", str(idle_wait_seconds)]
        extra += ["--max-tasks", str(max_tasks)] if max_tasks else []
        extra += ["--exit-when-idle"] if exit_when_idle else []
        extra += ["--verbose"] if verbose else []
        command = worker_command(
            redis_url,
            handler=handler,
            prefix=prefix,
            lease_seconds=lease_seconds,
            grace_seconds=grace_seconds,
            output_dir=output_dir,
            extra=extra,
        )
        sys.exit(_supervise(command, concurrency))

    from kubetrader.queue.lifecycle import parse_duration, set_retention
    from kubetrader.queue.worker import Worker, WorkerSettings, load_handler, restart_in_place
    from kubetrader.queue.workqueue import WorkQueue

    retention_seconds = parse_duration(retention, field="--retention")
    # The handler first: its warm-up (importing the engine, most of the worker's start-up) needs no Redis, so
    # a local campaign starts its workers before its Redis (`local.local_queue`) and the two overlap.
    task_handler = load_handler(handler)
    queue = WorkQueue.from_url(redis_url, prefix=prefix, lease_seconds=lease_seconds)
    set_retention(queue.redis, retention_seconds, prefix=prefix)
    settings = WorkerSettings(
        lease_seconds=lease_seconds,
        grace_seconds=grace_seconds,
        prefetch=prefetch,
        idle_wait_seconds=idle_wait_seconds,
        output_dir=output_dir,
        queue_metrics=bool(metrics_port),
    )
    if metrics_port:
        from kubetrader.queue import metrics

        metrics.serve(metrics_port)
    the_worker = Worker(queue, task_handler, settings=settings, on_stuck=restart_in_place)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stop claiming, %.0f s grace for the running task", signum, grace_seconds)
        the_worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "worker %s (pod %s) on %s, handler %s", the_worker.worker_id, the_worker.pod, redact_uri(redis_url), handler
    )
    summary = the_worker.run(max_tasks=max_tasks, exit_when_idle=exit_when_idle)
    log.info("worker %s done: %s", the_worker.worker_id, summary.model_dump())
    _exit_now(0)


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown. A worker has numpy, pyarrow and Backtrader loaded, and
    freeing them module by module took 0.1-0.3 s on every stop, which a local campaign's driver waits
    for (`kubetrader parallel` of one cell). Everything the worker owes is done by now: its tasks are
    reported or given back (`Worker.run`), results and MLflow runs written synchronously; so flush
    what is buffered and go."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _supervise(command: list[str], concurrency: int) -> int:
    """Run `concurrency` single workers as child processes; restart one that dies, forward SIGTERM.

    Processes, not threads: backtests are CPU-bound Python. A child that crashed
    (say the engine segfaulted) is replaced; its task comes back when its lease expires.
    """
    stopping = threading.Event()
    children = [subprocess.Popen(command) for _ in range(concurrency)]

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping.is_set():
        for i, child in enumerate(children):
            code = child.poll()
            if code is not None and not stopping.is_set():
                if code == 0:  # --max-tasks / --exit-when-idle: a clean exit is not replaced
                    continue
                log.warning("worker process %d exited with %d; starting another", child.pid, code)
                children[i] = subprocess.Popen(command)
        if all(child.poll() == 0 for child in children):
            break
        stopping.wait(0.5)
    codes = [child.wait() for child in children]
    return 0 if all(code == 0 for code in codes) else 1
