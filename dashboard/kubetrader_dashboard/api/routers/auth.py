"""/auth: the built-in login (a user name and password for a signed session token) and "who am I"."""

from __future__ import annotations

from fastapi import APIRouter, Request

from kubetrader_dashboard.api.deps import OptionalIdentity, ServicesDep, ensure
from kubetrader_dashboard.api.problems import PROBLEM_RESPONSES, ProblemError
from kubetrader_dashboard.auth.roles import Identity, Role
from kubetrader_dashboard.models.auth import LoginRequest, SessionToken

router = APIRouter(prefix="/auth", tags=["auth"], responses=PROBLEM_RESPONSES)


@router.post("/login", response_model=SessionToken, summary="Sign in with the built-in login")
def login(services: ServicesDep, body: LoginRequest, request: Request) -> SessionToken:
    limiter = services.login_limiter
    client = request.client.host if request.client else "unknown"
    for key in (f"user:{body.username}", f"client:{client}"):
        wait = limiter.acquire(key)
        if wait is not None:
            raise ProblemError(
                429, "Too many sign-in attempts", f"try again in {wait:.0f} s", headers={"Retry-After": f"{wait:.0f}"}
            )
    if services.auth.users.path is None:
        raise ProblemError(404, "Not available", "the built-in login is off here (no users file): sign in with OIDC")
    session = services.auth.login(body.username, body.password)
    if session is None:
        raise ProblemError(401, "Unauthorized", "wrong user name or password")
    return SessionToken(token=session.token, expires_in=session.expires_in, identity=session.identity)


@router.get("/me", response_model=Identity, summary="Who the API takes the caller for")
def me(identity: OptionalIdentity) -> Identity:
    return ensure(identity, Role.VIEWER)
