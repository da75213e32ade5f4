"""A short command's start-up: two costs that are the interpreter's and the BLAS library's, not its work's.

`kubetrader run` (a laptop's command, a cluster's Job) is mostly start-up: imports, model classes,
validation, data, before a daily backtest's few tenths of a second of bars. Measured (bench/RESULTS.md,
cli, with the profile):

- The cyclic garbage collector scans, again and again, the objects the imports create (modules,
  classes, functions, Backtrader's metaclass products, pydantic's schemas), none of which is garbage:
  about 200 collections before the first bar, then a full one at exit. `gc_paused` (on `run` and
  `backtest`) turns it off for the start-up; `resume_gc` (called before the strategy's first bar,
  kubetrader.runner) moves what exists by then into the permanent generation, which later collections
  and the one at exit skip (`gc.freeze`, https://docs.python.org/3.11/library/gc.html#gc.freeze), and
  turns it back on: the strategy's run and everything after it collect as usual. What the pause leaves
  uncollected is the start-up's own cyclic garbage: 2 MB of peak RSS, measured.
- OpenBLAS, which numpy loads at import, starts a worker thread per extra core that busy-waits (yielding
  in a loop) for 2**28 cycles before it sleeps, whether or not anything calls BLAS: 25-50 ms of CPU at
  every start, taken from the command itself on a busy 2-core machine or in a pod with a CPU limit.
  `OPENBLAS_THREAD_TIMEOUT=4` makes an idle worker sleep after 2**4 cycles instead. It is OpenBLAS's own
  setting, read once at load (driver/others/openblas_env.c); in driver/others/blas_server.c,
  `blas_thread_server` spins while `rpcc() - last_tick <= thread_timeout`, `1 << 28` unless the
  variable says otherwise, and `blas_thread_init` clamps the variable to 4..30. Nothing else changes:
  the same threads exist and compute the same results when BLAS is called; they are woken by the
  condition variable they sleep on rather than found spinning.

Both apply only where the process is the command (`kubetrader.cli.main.main()` with no arguments: the
console script, `python -m kubetrader.cli.main`), never to a program or a test that calls the CLI in its
own process; a value the user set for the variable, or a collector the caller turned off, is kept.
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

BLAS_IDLE_ENV = "OPENBLAS_THREAD_TIMEOUT"
BLAS_IDLE_DEFAULT = "4"

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class _State:
    own_process: bool = False  # this process is a `kubetrader` command (set by the entry point only)
    paused: bool = False


STATE = _State()


def own_process() -> None:
    """The entry point's call, before any command imports numpy: this process is the command."""
    STATE.own_process = True
    os.environ.setdefault(BLAS_IDLE_ENV, BLAS_IDLE_DEFAULT)


def pause_gc() -> None:
    """Turn the cyclic collector off for the start-up: in the command's own process, if it is on."""
    if STATE.own_process and not STATE.paused and gc.isenabled():
        gc.disable()
        STATE.paused = True


def resume_gc() -> None:
    """End the start-up: freeze what it built, collect as usual from here on. A no-op unless `pause_gc` paused."""
    if STATE.paused:
        STATE.paused = False
        gc.freeze()
        gc.enable()


def gc_paused(command: Callable[P, R]) -> Callable[P, R]:
    """`command` (a short command's body) with the collector paused until `resume_gc`, and resumed on its
    way out whatever happens (for the ways that never reach a strategy's first bar)."""

    @functools.wraps(command)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        pause_gc()
        try:
            return command(*args, **kwargs)
        finally:
            resume_gc()

    return paused
