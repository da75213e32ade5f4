"""Every error as RFC 9457 problem details (`application/problem+json`).

One shape for all failures lets the UI show a useful message for any of them, and
a validation error names the field (`spec.data.end`) the way the CLI does. An
unexpected exception becomes a bare 500 without its text: messages can carry
connection strings, and secrets never leave the API.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from kubetrader_dashboard.models.common import Problem

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": text}
    for status, text in (
        (401, "Not signed in: no valid session, ID token or machine token"),
        (403, "Signed in, but the role does not allow it"),
        (404, "Not found"),
        (413, "The request body is larger than the API accepts"),
        (422, "Invalid request; `errors` names each field"),
        (429, "Too many requests from this identity; `Retry-After` says when to try again"),
        (503, "A store the endpoint needs is not reachable"),
    )
}


class ProblemError(Exception):
    """Raised by routes and services to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        errors: Sequence[dict[str, Any]] = (),
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.errors = status, title, detail, list(errors)
        self.headers = headers or {}


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return problem_json(status, title, detail, request.url.path, errors, headers)


def problem_json(
    status: int,
    title: str,
    detail: str | None = None,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(title=title, status=status, detail=detail, instance=instance, errors=errors or None)
    all_headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    all_headers.update(headers or {})
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_JSON, headers=all_headers or None
    )


def field_errors(errors: Sequence[Any], *, prefix: Sequence[str | int] = ()) -> list[dict[str, Any]]:
    """pydantic / FastAPI errors as [{field: 'spec.data.end', message: ...}] (inputs left out: they may be secret)."""
    out = []
    for error in errors:
        location = [*prefix, *(part for part in error.get("loc", ()) if part != "body")]
        out.append({"field": ".".join(str(part) for part in location), "message": str(error.get("msg", ""))})
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(request, exc.status, exc.title, exc.detail, exc.errors or None, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(request, exc.status_code, str(exc.detail), None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(
            error.get("type") == "json_invalid" or tuple(error.get("loc", ())) == ("body",) for error in exc.errors()
        ):
            # A YAML (or other non-JSON) body: say what the endpoint takes instead of a nameless field.
            kind = request.headers.get("content-type", "none")
            message = (
                f"the body must be the custom resource as JSON (Content-Type: application/json), got {kind}; "
                "convert a YAML file first, e.g. yq -o=json . FILE"
            )
            return problem_response(request, 422, "Invalid request", message, [{"field": "body", "message": message}])
        errors = field_errors(exc.errors())
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(request, 422, "Invalid request", detail, errors)

    @app.exception_handler(ValidationError)
    async def _pydantic(request: Request, exc: ValidationError) -> JSONResponse:
        errors = field_errors(exc.errors())
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(request, 422, "Invalid request", detail, errors)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem_response(request, 500, "Internal server error", "see the API's log")
