"""One JSON request to the emulated API over real HTTP, as the tests make it (status and decoded body).

Errors are answers here, not exceptions: a 4xx/5xx comes back as (code, Status) so a test asserts
on the API server's own body.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def call(
    base_url: str,
    method: str,
    path: str,
    token: str | None,
    body: Any = None,
    *,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
