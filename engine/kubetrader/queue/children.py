"""Child processes that do not outlive the process that started them.

A driver (`kubetrader parallel`, `optimize --workers N`) starts its own Redis and
worker processes. Killed with SIGKILL it runs no cleanup, so without help they
keep running, holding tasks and a temporary folder. Linux's
`prctl(PR_SET_PDEATHSIG, sig)` makes the kernel send `sig` to the child when its
parent dies (see prctl(2): the signal is sent when the *thread* that created the
child exits, so children are started from the driver's main thread). Workers get
SIGKILL (their tasks come back when the lease expires, the queue's normal path);
Redis gets SIGTERM, so it flushes its append-only file before it exits.

Elsewhere (macOS) nothing is set: children are still stopped on a normal exit.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(signum: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen` that asks for `signum` when the parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: no dlopen in the child

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signum)

    return preexec


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
