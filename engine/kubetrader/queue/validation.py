"""What a task may carry, checked where it enters the queue and again where a worker takes it.

Why twice: Redis is a trust boundary. A producer of ours validates its tasks before they are
sent (`WorkQueue.enqueue`), but anyone who can write to Redis can put a task hash there
directly, and the worker joins the batch, the task id and `meta.name` into paths under its
output directory (a result `<output>/backtests/<name>-<hash>.json`, a campaign cell
`<output>/campaigns/<batch>/cells/<id>.npy`). A name like `../../etc/x` once wrote a result
outside the output directory. So the worker checks every claimed task with `refusal` before
its handler runs and dead-letters a bad one with the reason, and `under` makes each path
joined from those names prove it stays below its root.

Names are DNS-1123-like (Kubernetes' object names are what usually ends up in them): ASCII
letters, digits, `_`, `-` and `.`, not starting with `.` or `-`, no `..`, at most 253
characters; so no `/`, `\\`, NUL, or a path component of its own.
A task's spec is one backtest: a `matrix` in it (a whole campaign, up to 10,000 backtests in
one task) is refused, because campaigns are expanded into tasks before they are enqueued
(kubetrader.queue.campaign).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kubetrader.errors import FatalError

MAX_NAME_LENGTH = 253  # a DNS-1123 subdomain, Kubernetes' longest object name
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class TaskRefusedError(FatalError):
    """A task field the queue does not accept; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"task refused: {field}: {problem}")


def check_name(value: object, field: str) -> str:
    """`value` if it is a safe path component, else TaskRefusedError naming `field`."""
    if not isinstance(value, str):
        raise TaskRefusedError(field, f"must be a string, not {type(value).__name__}")
    shown = repr(value[:80])
    if not value or len(value) > MAX_NAME_LENGTH:
        raise TaskRefusedError(field, f"{shown} must have 1 to {MAX_NAME_LENGTH} characters")
    if "\x00" in value or "/" in value or "\\" in value or ".." in value or not NAME_PATTERN.fullmatch(value):
        raise TaskRefusedError(
            field,
            f"{shown} is not a name: letters, digits, '_', '-' and '.', not starting with '.' or '-', "
            "no '..', '/' or NUL",
        )
    return value


def check_task(batch: str, task_id: str, spec: Any, meta: dict[str, Any]) -> None:
    """Every field of a task that becomes part of a path, and the one-backtest rule."""
    check_name(batch, "batch")
    check_name(task_id, "id")
    if meta.get("name") is not None:
        check_name(meta["name"], "meta.name")
    if isinstance(spec, dict) and spec.get("matrix") is not None:
        raise TaskRefusedError(
            "spec.matrix",
            "a task is one backtest; a matrix is expanded into one task per cell before it is enqueued",
        )


def refusal(batch: str, task_id: str, spec: Any, meta: dict[str, Any]) -> str | None:
    """The reason a claimed task is refused, or None (the worker dead-letters with this reason)."""
    try:
        check_task(batch, task_id, spec, meta)
    except TaskRefusedError as exc:
        return str(exc)
    return None


def under(root: Path, *parts: str) -> Path:
    """`root / parts...`, resolved, proven to stay below `root` (symlinks followed)."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base):
        raise TaskRefusedError("path", f"{'/'.join(parts)!r} resolves outside {base}")
    return path
