"""Typed dependencies: settings, the service objects, and who may call what.

Routes declare what they need (`store: StoreDep`, `dependencies=[SubmitAccess]`) instead of
reaching for globals, so tests build an app on their own settings and stores.

Access, by role (kubetrader_dashboard.auth.roles; each includes the ones before it):
- reads: viewer (or nobody at all when KUBETRADER_PUBLIC_READ is true);
- submitting a Backtest or an OptimizationStudy: researcher, within the per-identity rate limit;
- live trading (`/live`: the runner's positions, orders, PnL and journal; `/cluster/livedeployments`):
  trader, whether or not reads are public.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kubetrader_dashboard.api.problems import ProblemError
from kubetrader_dashboard.auth.roles import Identity, Role
from kubetrader_dashboard.services.container import Services
from kubetrader_dashboard.settings import Settings

_bearer = HTTPBearer(
    auto_error=False, description="A session token (POST /auth/login), an OIDC ID token, or the machine token"
)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def _identify(services: Services, credentials: HTTPAuthorizationCredentials | None) -> Identity | None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        return None
    return services.auth.identify(credentials.credentials)


def _header_credentials(
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> HTTPAuthorizationCredentials | None:
    """The bearer credential of a read request, parsed without declaring security in OpenAPI: reads
    may be public, and a schema that marks them as secured sends every client looking for a token."""
    scheme, _, token = (authorization or "").partition(" ")
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip()) if token else None


def ensure(identity: Identity | None, role: Role) -> Identity:
    """401 without a valid credential, 403 when its role is below `role`."""
    if identity is None:
        raise ProblemError(401, "Unauthorized", "sign in first: a valid session, ID token or machine token is needed")
    if not identity.may(role):
        raise ProblemError(403, "Forbidden", f"{identity.name} is a {identity.role}; this needs the {role} role")
    return identity


def optional_identity(
    services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_header_credentials)]
) -> Identity | None:
    return _identify(services, credentials)


OptionalIdentity = Annotated[Identity | None, Depends(optional_identity)]


def require_read_access(services: ServicesDep, identity: OptionalIdentity) -> Identity | None:
    """Read-only endpoints: anyone when KUBETRADER_PUBLIC_READ is true, else a viewer or above."""
    if services.settings.public_read:
        return identity
    return ensure(identity, Role.VIEWER)


def require_trader(identity: OptionalIdentity) -> Identity:
    return ensure(identity, Role.TRADER)


def require_submitter(
    services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Identity:
    """Submitting work: a researcher or above, and at most `submit_rate_limit` a window per identity."""
    identity = ensure(_identify(services, credentials), Role.RESEARCHER)
    wait = services.submit_limiter.acquire(identity.key)
    if wait is not None:
        raise ProblemError(
            429,
            "Too many requests",
            f"{identity.name}: at most {services.submit_limiter.limit} submissions per "
            f"{services.submit_limiter.window:g} s; try again in {wait:.0f} s",
            headers={"Retry-After": f"{wait:.0f}"},
        )
    return identity


ReadAccess = Depends(require_read_access)
LiveAccess = Depends(require_trader)
SubmitAccess = Depends(require_submitter)
Submitter = Annotated[Identity, Depends(require_submitter)]
