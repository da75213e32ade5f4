"""The UI's API client shares one connection pool among every session of the app: nothing of one
user's request (credential, cookies) may ride on another's."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.xdist_group("dashboard")


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the request's credential and cookies, and sets a cookie (as a
    session-cookie API or a proxy in front of it might)."""

    def do_GET(self) -> None:
        body = json.dumps({"authorization": self.headers.get("Authorization"), "cookie": self.headers.get("Cookie")})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "session=first-users; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_clients_of_two_users_share_the_pool_but_send_only_their_own_credential(echo_url: str) -> None:
    from kubetrader_dashboard.ui.client import ApiClient

    alice, bob = ApiClient(echo_url, token="alice-token"), ApiClient(echo_url, token="bob-token")
    nobody = ApiClient(echo_url)
    assert alice._http is bob._http is nobody._http, "one pool for the app"
    assert alice._request("GET", "/me") == {"authorization": "Bearer alice-token", "cookie": None}
    # The answer set a cookie: it is kept for no one, so Alice's session cannot reach Bob's requests.
    assert bob._request("GET", "/me") == {"authorization": "Bearer bob-token", "cookie": None}
    assert nobody._request("GET", "/me") == {"authorization": None, "cookie": None}
    assert alice._request("GET", "/me") == {"authorization": "Bearer alice-token", "cookie": None}
