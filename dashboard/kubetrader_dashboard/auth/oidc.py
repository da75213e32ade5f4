"""OIDC sign-in through an auth proxy: the API verifies the user's ID token itself.

In a cluster, oauth2-proxy stands in front of the dashboard and the API. Started with
`--pass-authorization-header` it passes the user's OIDC ID token upstream as
`Authorization: Bearer <id token>` (oauth2-proxy docs, configuration/overview.md, "Command Line
Options"); the Streamlit app forwards that header to the API. The API trusts no identity header
(X-Forwarded-User, X-Forwarded-Groups...): anyone who reaches the API directly could set those.
It trusts a token only when it is signed by a key of the issuer's JWKS, names the issuer and our
client id as audience, and has not expired. Algorithms are the asymmetric ones only, so a token
"signed" with `none` or with HMAC over the public key is refused (RFC 8725, 3.1 and 3.2).

The role comes from the token's groups claim (oauth2-proxy's `--oidc-groups-claim`, default
`groups`), mapped by the API's settings; a user in no mapped group gets the default role, or is
refused when there is none.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import jwt

from kubetrader_dashboard.auth.roles import Identity, Role

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
LEEWAY_SECONDS = 30  # clock skew between the issuer and this pod


class OidcError(Exception):
    """A token that is not acceptable; the message says why (it goes to the log, not the caller)."""


class OidcVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None,
        role_groups: Mapping[Role, Sequence[str]],
        default_role: Role | None,
        username_claim: str = "email",
        groups_claim: str = "groups",
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.role_groups = {role: set(groups) for role, groups in role_groups.items()}
        self.default_role = default_role
        self.username_claim = username_claim
        self.groups_claim = groups_claim
        self._jwks_url = jwks_url
        self._client: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def _jwks(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._client is None:
                url = self._jwks_url or self._discover()
                # Keys cached for 5 minutes; an unknown `kid` refetches (PyJWKClient, PyJWT docs).
                self._client = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)
            return self._client

    def _discover(self) -> str:
        """The JWKS URL from the issuer's discovery document (OpenID Connect Discovery 1.0, 4)."""
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            document = httpx.get(url, timeout=5).raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"OIDC discovery at {url} failed: {type(exc).__name__}") from None
        if document.get("issuer") != self.issuer:
            raise OidcError(f"OIDC discovery: issuer {document.get('issuer')!r} is not {self.issuer!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise OidcError("OIDC discovery: no jwks_uri")
        return jwks_uri

    def verify(self, token: str) -> Identity:
        try:
            key = self._jwks().get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise OidcError(f"ID token refused: {type(exc).__name__}: {exc}") from None
        name = claims.get(self.username_claim) or claims["sub"]
        groups = claims.get(self.groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        role = self.role_for(set(map(str, groups)))
        if role is None:
            raise OidcError(f"{name}: in no group that has a role ({self.groups_claim}: {sorted(groups)})")
        return Identity(name=str(name), role=role, method="oidc")

    def role_for(self, groups: set[str]) -> Role | None:
        granted = [role for role, wanted in self.role_groups.items() if wanted & groups]
        return max(granted, key=lambda r: r.rank) if granted else self.default_role
