"""A local HTTP server that answers like Finnhub's `/search` and `/stock/symbol`.

Shapes from Finnhub's API documentation (https://finnhub.io/docs/api/symbol-search and
/docs/api/stock-symbols): `/search` gives `{"count", "result": [{"description",
"displaySymbol", "symbol", "type"}]}`, `/stock/symbol` a list of `{"currency",
"description", "displaySymbol", "figi", "isin", "mic", "shareClassFIGI", "symbol",
"symbol2", "type"}`. As strict as the real one where the client depends on it: the
`token` query parameter is required (401 `{"error": "Invalid API key"}` otherwise),
`/search` needs `q`, `/stock/symbol` needs `exchange`, and a scripted number of
requests can be answered 429 `{"error": "API limit reached..."}` first.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.helpers import free_port

KEY = "test-key-7f3a9c"

SEARCH = {
    "apple": [
        {"description": "APPLE INC", "displaySymbol": "AAPL", "symbol": "AAPL", "type": "Common Stock"},
        {"description": "APPLE HOSPITALITY REIT INC", "displaySymbol": "APLE", "symbol": "APLE", "type": "REIT"},
        {"description": "DIREXION DAILY AAPL BULL 2X", "displaySymbol": "AAPU", "symbol": "AAPU", "type": "ETP"},
    ],
}
US_SYMBOLS = [
    {
        "currency": "USD",
        "description": "APPLE INC",
        "displaySymbol": "AAPL",
        "figi": "BBG000B9XRY4",
        "isin": None,
        "mic": "XNAS",
        "shareClassFIGI": "BBG001S5N8V8",
        "symbol": "AAPL",
        "symbol2": "",
        "type": "Common Stock",
    },
    {
        "currency": "USD",
        "description": "APPLE HOSPITALITY REIT INC",
        "displaySymbol": "APLE",
        "figi": "BBG006273YR6",
        "isin": None,
        "mic": "XNYS",
        "shareClassFIGI": "BBG006273YS5",
        "symbol": "APLE",
        "symbol2": "",
        "type": "REIT",
    },
]


@dataclass
class FinnhubDouble:
    url: str
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    throttle: int = 0  # answer this many next requests with 429
    retry_after: str | None = None


@contextmanager
def finnhub_double() -> Iterator[FinnhubDouble]:
    port = free_port()
    double = FinnhubDouble(url=f"http://127.0.0.1:{port}/api/v1")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            params = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
            path = "/" + parsed.path.removeprefix("/api/v1").lstrip("/")  # the client sends /api/v1//search
            double.requests.append((path, {k: v for k, v in params.items() if k != "token"}))
            if params.get("token") != KEY:
                self._send(401, {"error": "Invalid API key"})
                return
            if double.throttle > 0:
                double.throttle -= 1
                headers = {"Retry-After": double.retry_after} if double.retry_after is not None else {}
                self._send(429, {"error": "API limit reached. Please try again later. Remaining Limit: 0"}, headers)
                return
            if path == "/search" and "q" in params:
                result = SEARCH.get(params["q"].lower(), [])
                self._send(200, {"count": len(result), "result": result})
            elif path == "/stock/symbol" and "exchange" in params:
                self._send(200, US_SYMBOLS if params["exchange"] == "US" else [])
            else:
                self._send(404, {"error": "Not found"})

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield double
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
