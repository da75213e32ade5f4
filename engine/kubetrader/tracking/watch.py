"""`kubetrader mlflow sync --watch`: a pass every N seconds until SIGTERM, for a long-running pod.

In a cluster the Backtest Jobs leave their runs to this loop (`--tracking-mode later`, set by the
operator when the chart runs the loop), so a Job exits as soon as its result is written. A
Deployment rather than a CronJob: a pass every few seconds, where a CronJob's schedule has a
one-minute granularity and each run would start a new pod and pay its cold start again.

The process is the container's PID 1, which the kernel does not stop on SIGTERM unless it handles
it, so the loop installs a handler: the pass in progress finishes its current marker, then the
command exits 0. A SIGKILL mid-marker is safe too: the marker stays, and the next pass finds the
run by its result id (or deletes a half-logged one first; kubetrader.tracking.record).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class _StopSignalled(Exception):  # noqa: N818 -- a control-flow signal, not an error
    """Raised by `beat` once a signal came: it ends the pass between two markers."""


def watch(
    one_pass: Callable[[Callable[[], None]], Any],
    *,
    interval: float,
    heartbeat: Path | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Call `one_pass(beat)` every `interval` s until SIGTERM/SIGINT (or `stop` is set).

    `one_pass` calls `beat` after each marker: it touches the heartbeat file (also touched around
    each pass, so a liveness probe on its age tells a stuck loop from one working through a long
    backlog) and, once a signal came, ends the pass there. An exception of a pass is logged and the
    next pass goes on: a store that is down now may be up in `interval` s."""
    stop = stop or threading.Event()

    def touch() -> None:
        if heartbeat is not None:
            heartbeat.touch()

    def beat() -> None:
        touch()
        if stop.is_set():
            raise _StopSignalled

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping after the current marker", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():  # signal handlers live on the main thread only
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)
    while not stop.is_set():
        touch()
        try:
            one_pass(beat)
        except _StopSignalled:
            break
        except Exception:  # the loop outlives a bad pass; the next one retries what is left
            log.exception("sync pass failed; trying again in %.1f s", interval)
        touch()
        stop.wait(interval)
