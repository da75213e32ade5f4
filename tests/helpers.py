"""Small helpers every test area uses: free loopback ports and waiting on a condition."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "",
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` s.

    An exception from `condition` fails the wait AT ONCE, unless the caller names it in
    `retry_on` (a server that is not up yet refuses connections): a helper that swallowed
    every exception hid a `ConnectionError` escaping the code under test, in tests that
    then passed.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except retry_on as exc:
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what or condition!r}; last error: {last_error!r}")


def cli_in_process(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """Run the `kubetrader` CLI in this process: (exit code, stdout, stderr) as pytest's `capsys` caught them.

    In-process (not a subprocess) so a test that patches a broker or the environment reaches the
    command; click exits only on an error, so no SystemExit means 0.
    """
    from kubetrader.cli.main import main

    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_valid_children_owned_by(owner: dict[str, Any], *children: dict[str, Any]) -> None:
    """Each child passes Kubernetes' own strict schema (1.37, as a real API server would check it)
    and names `owner` (kind, name, uid) as its first ownerReference."""
    import kubernetes_validate

    for child in children:
        clean = {k: v for k, v in child.items() if k != "status"}
        clean["metadata"] = {k: v for k, v in child["metadata"].items() if k not in {"uid", "resourceVersion"}}
        kubernetes_validate.validate(clean, "1.37", strict=True)
        reference = child["metadata"]["ownerReferences"][0]
        expected = (owner["kind"], owner["metadata"]["name"], owner["metadata"]["uid"])
        assert (reference["kind"], reference["name"], reference["uid"]) == expected, child["metadata"]
