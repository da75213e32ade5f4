"""The runner's small HTTP endpoint: health, status, and the three stop buttons.

The operator (and `kubetrader live stop`) reach a running trader through it. It is a
stdlib `ThreadingHTTPServer` on purpose: no web framework in the trading process, and
nothing here touches the broker. Requests only read `Session.snapshot()` and post
commands to `Session.commands`; the session's own thread acts on them, so orders keep
one path (risk -> journal -> broker) and one thread.

Every route but `/healthz` needs `Authorization: Bearer <token>` (compared in
constant time). Without a token the server refuses to start, unless the caller
explicitly asks for an insecure local endpoint (bound to loopback only).

- `GET /healthz`: 200 while the process serves (a liveness probe; says nothing of IB).
- `GET /metrics`: Prometheus gauges (connected, halted, stop blocked, PnL, open orders), no
  token: aggregates only (`live.metrics`).
- `GET /status` (alias `/state`): positions, PnL, open orders, halted, connected,
  last heartbeat, flat_confirmed_at.
- `GET /journal?limit=N`: the newest N journal events (default 100, at most 1000),
  oldest first, read from the journal database; read-only.
- `POST /stop`: graceful: no new entries, close positions, then the runner exits.
- `POST /flatten?wait=S`: halt, cancel all, close everything, confirm with fresh broker
  queries; waits up to S seconds: 200 with `"flat": true` once confirmed, else 202.
- `POST /halt`: the kill switch: no new exposure, positions kept.
  `POST /halt?cancel=entries` also cancels the runner's working orders that would increase
  exposure, leaving its exits (a stop with `stopPolicy: {flatten: false, cancelOrders: false}`).
  The kill switch is saved in the journal: a restarted runner is still halted.
- `POST /resume`: lifts the kill switch or a reconciliation halt (never the drawdown's
  halt for good, nor the day's daily-loss halt).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubetrader.errors import SpecError

log = logging.getLogger(__name__)

TOKEN_ENV = "KUBETRADER_RUNNER_TOKEN"
MAX_WAIT_SECONDS = 60.0
COMMANDS = ("stop", "flatten", "halt", "resume")
JOURNAL_DEFAULT_LIMIT = 100
JOURNAL_MAX_LIMIT = 1000
READS = ("/status", "/state", "/journal")


class SessionView:
    """What the endpoint needs from a session; a Protocol in spirit, a tiny class to keep mypy exact."""

    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        post: Callable[[str], None],
        journal: Callable[[int], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.post = post
        self.journal = journal  # newest N events, oldest first (the journal DB, never the session thread)


def check_token(expected: str | None, header: str | None) -> bool:
    """True when `header` is `Bearer <expected>`; constant-time, so timing says nothing of the token."""
    if not expected:
        return True
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].encode(), expected.encode())


def flatten_confirmed_since(snapshot: dict[str, Any], requested_at: float) -> bool:
    """Was flat confirmed at the broker after `requested_at` (wall clock)? Older proofs do not count."""
    confirmed = snapshot.get("flat_confirmed_at")
    return confirmed is not None and confirmed >= requested_at


class RunnerHTTPServer:
    """Serve a session's status and commands on `host:port` in a daemon thread."""

    def __init__(
        self, view: SessionView, *, host: str, port: int, token: str | None, insecure_local: bool = False
    ) -> None:
        if not token:
            if not insecure_local:
                raise SpecError("--http-port", f"the endpoint needs a token in {TOKEN_ENV} (or --insecure-local)")
            if host not in ("127.0.0.1", "localhost", "::1"):
                raise SpecError("--http-host", "--insecure-local serves on loopback only")
        self.view = view
        self.token = token or None
        handler = _handler_class(self)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> RunnerHTTPServer:
        self._thread = threading.Thread(target=self.server.serve_forever, name="runner-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # ------------------------------------------------------------ routes (called from handler threads)

    def route(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path in ("/status", "/state"):
            return HTTPStatus.OK, self.view.snapshot()
        if method == "GET" and path == "/journal":
            if self.view.journal is None:
                return HTTPStatus.NOT_FOUND, {"error": "this runner serves no journal"}
            try:
                limit = int(query.get("limit", [str(JOURNAL_DEFAULT_LIMIT)])[0])
            except ValueError:
                return HTTPStatus.BAD_REQUEST, {"error": "limit must be an integer"}
            if not 1 <= limit <= JOURNAL_MAX_LIMIT:
                return HTTPStatus.BAD_REQUEST, {"error": f"limit must be between 1 and {JOURNAL_MAX_LIMIT}"}
            return HTTPStatus.OK, {"limit": limit, "events": self.view.journal(limit)}
        if method == "POST" and path.lstrip("/") in COMMANDS:
            command = path.lstrip("/")
            requested_at = time.time()
            cancel = query.get("cancel", [""])[0]
            if cancel and (command != "halt" or cancel != "entries"):
                return HTTPStatus.BAD_REQUEST, {"error": "cancel=entries is the one cancel option, on /halt"}
            self.view.post("halt-cancel-entries" if cancel else command)
            if command != "flatten":
                return HTTPStatus.ACCEPTED, {"accepted": command}
            try:
                wait = min(MAX_WAIT_SECONDS, max(0.0, float(query.get("wait", ["0"])[0])))
            except ValueError:
                return HTTPStatus.BAD_REQUEST, {"error": "wait must be a number of seconds"}
            deadline = time.monotonic() + wait
            while True:
                snapshot = self.view.snapshot()
                if flatten_confirmed_since(snapshot, requested_at):
                    return HTTPStatus.OK, {"flat": True, "status": snapshot}
                if time.monotonic() >= deadline:
                    return HTTPStatus.ACCEPTED, {"flat": False, "status": snapshot}
                time.sleep(0.05)  # a handler thread waiting on the session thread, not a test
        if path in (*READS, *(f"/{c}" for c in COMMANDS)):
            return HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{method} not allowed on {path}"}
        return HTTPStatus.NOT_FOUND, {"error": f"no route {path}"}


def _handler_class(server: RunnerHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            log.debug("http %s", format % args)

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reply_text(self, data: bytes) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _dispatch(self, method: str) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/healthz" and method == "GET":
                self._reply(HTTPStatus.OK, {"ok": True})
                return
            if parts.path == "/metrics" and method == "GET":
                from kubetrader.live.metrics import render

                self._reply_text(render(server.view.snapshot))
                return
            if not check_token(server.token, self.headers.get("Authorization")):
                self._reply(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong bearer token"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 65536))
            status, body = server.route(method, parts.path, parse_qs(parts.query))
            self._reply(status, body)

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

    return Handler


def call_runner(url: str, path: str, *, token: str | None, method: str = "GET", timeout: float = 5.0) -> dict[str, Any]:
    """One request to a runner endpoint (used by `kubetrader live stop` and the operator).

    Raises `RunnerUnreachableError` for anything but a 200/202 JSON answer.
    """
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url.rstrip("/") + path, method=method, data=b"" if method == "POST" else None)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: dict[str, Any] = json.loads(response.read() or b"{}")
            body["_http_status"] = response.status
            return body
    except urllib.error.HTTPError as exc:
        raise RunnerUnreachableError(f"{method} {path}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RunnerUnreachableError(f"{method} {path}: {exc}") from exc


class RunnerUnreachableError(Exception):
    """The runner's endpoint did not answer as expected (down, wrong token, bad reply)."""
