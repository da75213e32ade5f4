"""Bounded requests: a body larger than the limit is refused before it is read (so before any
parsing or authentication), and submissions are rate-limited per identity."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.fixtures.dashboard import DASHBOARD_RUNS, backtest_document, dashboard_settings, sign_in
from tests.helpers import free_port, wait_until

pytestmark = pytest.mark.xdist_group("dashboard")

BODY_BYTES = 16 * 1024 * 1024  # the 39 MB took the API from 70 MB to 716 MB; 16 MB shows the same
MEMORY_SLACK_KB = 24 * 1024  # what parsing a 16 MB JSON array costs is several times this


def _oversize_json() -> bytes:
    """A valid JSON document of BODY_BYTES: parsed, it is a list of millions of objects."""
    items = (BODY_BYTES - 16) // 2
    return b'{"spec": [' + b"0," * items + b"0]}"


def _peak_rss_kb(pid: int) -> int:
    """The process's peak resident set (VmHWM, /proc/PID/status): a transient spike counts too."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


@pytest.fixture
def api_process(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The API as the chart runs it (production, a 32-character machine token), in a process of its own."""
    (tmp_path / "results" / "backtests").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBETRADER_", "MLFLOW_", "FASTAPI_"))}
    env.update(
        KUBETRADER_ENVIRONMENT="production",
        KUBETRADER_API_TOKEN="0123456789abcdef0123456789abcdef",
        KUBETRADER_RESULTS_DIR=str(tmp_path / "results"),
        KUBETRADER_KUBERNETES="off",
        KUBETRADER_LOCAL_DEFAULTS="false",
    )
    port = free_port()
    log = (tmp_path / "api.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "kubetrader_dashboard.api", "--port", str(port)], env=env,
                               stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(url + "/api/v1/health").status_code in (200, 401), timeout=120, what="the API",
                   retry_on=(httpx.TransportError,))  # fmt: skip
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def _post_raw(port: int, headers: list[str], body: Iterator[bytes], *, answer_within: float) -> bytes:
    """POST over a plain socket: send the head, then the body a piece at a time while the server has not
    answered. A server that answers before reading the body is not fed the rest. Returns the answer
    (empty when the server closed the connection without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        head = "\r\n".join(["POST /api/v1/backtests HTTP/1.1", "Host: 127.0.0.1", *headers]) + "\r\n\r\n"
        sock.sendall(head.encode())
        readable, _, _ = select.select([sock], [], [], answer_within)
        try:
            for piece in body:
                if readable:
                    break
                sock.sendall(piece)
                readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                sock.shutdown(socket.SHUT_WR)  # all sent: now wait for the answer
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer:
                    break
        except (BrokenPipeError, ConnectionResetError):
            return b""
        return answer


def _pieces(data: bytes, size: int, *, chunked: bool) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        piece = data[start : start + size]
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
    if chunked:
        yield b"0\r\n\r\n"


def test_an_oversize_anonymous_post_is_refused_before_it_is_read_and_memory_stays_flat(
    api_process: tuple[str, int],
) -> None:
    url, pid = api_process
    port = int(url.rsplit(":", 1)[1])
    small = httpx.post(url + "/api/v1/backtests", json=backtest_document(*DASHBOARD_RUNS[0]))
    assert small.status_code == 401  # warmed up: every import of the request path is done
    body = _oversize_json()
    before = _peak_rss_kb(pid)
    declared = _post_raw(port, ["Content-Type: application/json", f"Content-Length: {len(body)}"],
                         _pieces(body, 1 << 20, chunked=False), answer_within=5)  # fmt: skip
    assert declared.startswith(b"HTTP/1.1 413"), declared[:300]
    assert b"application/problem+json" in declared
    # No Content-Length: the limit counts the bytes as they are read and stops the read.
    streamed = _post_raw(port, ["Content-Type: application/json", "Transfer-Encoding: chunked"],
                         _pieces(body, 1 << 16, chunked=True), answer_within=0)  # fmt: skip
    assert streamed == b"" or streamed.startswith(b"HTTP/1.1 413"), streamed[:300]
    grown = _peak_rss_kb(pid) - before
    assert grown < MEMORY_SLACK_KB, f"the API's peak memory grew by {grown} kB for a refused body"
    assert httpx.get(url + "/api/v1/health").status_code == 401, "still serving"


def test_a_chunked_body_over_the_limit_is_a_413_problem(tmp_path: Path) -> None:
    from kubetrader_dashboard.api.main import create_app

    (tmp_path / "results" / "backtests").mkdir(parents=True)
    app = create_app(dashboard_settings(tmp_path / "results", None, None, max_body_bytes=64 * 1024))

    def stream() -> Iterator[bytes]:
        yield b'{"a": "'
        for _ in range(100):
            yield b"x" * 4096
        yield b'"}'

    with TestClient(app) as client:
        refused = client.post("/api/v1/backtests", content=stream(), headers={"Content-Type": "application/json"})
    assert refused.status_code == 413, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["detail"] == "the body is larger than 65536 bytes"


def test_submissions_are_rate_limited_per_identity_with_retry_after(tmp_path: Path, dashboard_users: Path) -> None:
    from kubetrader_dashboard.api.main import create_app

    (tmp_path / "results" / "backtests").mkdir(parents=True)
    settings = dashboard_settings(tmp_path / "results", None, None, dashboard_users, submit_rate_limit=2,
                                  submit_rate_window_seconds=600)  # fmt: skip
    document = backtest_document(*DASHBOARD_RUNS[0])
    document["spec"]["data"]["symbols"] = ["ORCX"]  # refused after the limit is counted: nothing runs
    with TestClient(create_app(settings)) as client:
        rita = {"Authorization": f"Bearer {sign_in(client, 'researcher')}"}
        theo = {"Authorization": f"Bearer {sign_in(client, 'trader')}"}
        codes = [client.post("/api/v1/backtests", json=document, headers=rita).status_code for _ in range(2)]
        limited = client.post("/api/v1/studies", json=document, headers=rita)
        other = client.post("/api/v1/backtests", json=document, headers=theo)
    assert codes == [422, 422]
    assert limited.status_code == 429, limited.text
    assert limited.headers["content-type"] == "application/problem+json"
    assert 1 <= int(limited.headers["retry-after"]) <= 600
    assert "rita: at most 2 submissions per 600 s" in limited.json()["detail"]
    assert other.status_code == 422, "another identity has its own budget"
