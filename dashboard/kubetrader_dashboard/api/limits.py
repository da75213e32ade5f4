"""The request body limit, enforced in front of everything else (parsing, authentication, routes).

FastAPI reads and parses a JSON body before it resolves a route's dependencies, the bearer-token
check included, so without a limit an anonymous client could make the API hold any body in memory.
This ASGI middleware answers 413 at once when Content-Length says the body is too large (without
reading a byte of it), and otherwise counts the bytes as the application reads them and stops the
read at the limit (a chunked body has no Content-Length).
"""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubetrader_dashboard.api.problems import problem_json


class _BodyTooLargeError(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        title = "Request body too large" if status == 413 else "Invalid request"
        # Connection: close, so the server does not wait for (or read) the rest of the body.
        response = problem_json(status, title, detail, scope.get("path"), headers={"Connection": "close"})
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await self._refuse(scope, receive, send, 400, "Content-Length is not a number")
                return
            if length > limit:
                detail = f"the body is {length} bytes; at most {limit} are accepted"
                await self._refuse(scope, receive, send, 413, detail)
                return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the application's answer to the aborted read is replaced by the 413 below
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(_BodyTooLargeError):
            await self.app(scope, limited_receive, guarded_send)
        if exceeded and not started:
            await self._refuse(scope, receive, send, 413, f"the body is larger than {limit} bytes")


def install(app: Any, max_bytes: int) -> None:
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes)
