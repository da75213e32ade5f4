"""Typed dependencies: settings, the service objects and the two access levels.

Routes declare what they need (`store: StoreDep`) instead of reaching for globals,
so tests build an app on their own settings and stores.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kubetrader_dashboard.api.problems import ProblemError
from kubetrader_dashboard.services.container import Services
from kubetrader_dashboard.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="KUBETRADER_API_TOKEN")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def _token_matches(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> bool:
    if credentials is None or credentials.scheme.lower() != "bearer":
        return False
    expected = settings.api_token.get_secret_value().encode()
    # Constant-time: the time a wrong token takes must not reveal how much of it was right.
    return hmac.compare_digest(credentials.credentials.encode(), expected)


def require_token(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Every state-changing endpoint: a bearer token equal to KUBETRADER_API_TOKEN."""
    if not _token_matches(settings, credentials):
        raise ProblemError(401, "Unauthorized", "a valid bearer token is required")


def _header_credentials(
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> HTTPAuthorizationCredentials | None:
    """The bearer token of a read request, parsed without declaring security in OpenAPI: reads are
    public by default, and a schema that marks them as secured sends every client looking for a token."""
    scheme, _, token = (authorization or "").partition(" ")
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip()) if token else None


def require_read_access(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_header_credentials)]
) -> None:
    """Read-only endpoints: open when KUBETRADER_PUBLIC_READ is true, else the token as for writes."""
    if not settings.public_read and not _token_matches(settings, credentials):
        raise ProblemError(401, "Unauthorized", "a valid bearer token is required (public read is off)")


WriteAccess = Depends(require_token)
ReadAccess = Depends(require_read_access)
