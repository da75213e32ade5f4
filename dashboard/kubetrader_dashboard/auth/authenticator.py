"""One place that turns a bearer credential into an Identity, and a user name and password into one.

Three kinds of credential, told apart by their shape before any secret is compared:
- a session token of the built-in login (`kts1.` + itsdangerous' signed payload): the user must
  still be in the users file, and the role is the file's;
- the machine token (`KUBETRADER_API_TOKEN`), compared in constant time, with its own role;
- an OIDC ID token (a JWT passed on by the auth proxy), verified against the issuer's JWKS.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from kubetrader_dashboard.auth.oidc import OidcError, OidcVerifier
from kubetrader_dashboard.auth.passwords import hash_password, verify_password
from kubetrader_dashboard.auth.roles import Identity, Role
from kubetrader_dashboard.auth.sessions import PREFIX as SESSION_PREFIX
from kubetrader_dashboard.auth.sessions import SessionSigner
from kubetrader_dashboard.auth.users import UserDirectory, ensure_local_admin
from kubetrader_dashboard.settings import Settings

log = logging.getLogger(__name__)

MACHINE = "machine"
# Password checks cost ~16 MiB and a tenth of a second of CPU each: at most this many at once.
CONCURRENT_PASSWORD_CHECKS = 2


@dataclass(frozen=True)
class Session:
    token: str
    identity: Identity
    expires_in: int


class Authenticator:
    def __init__(
        self,
        *,
        users: UserDirectory,
        sessions: SessionSigner,
        machine_token: str | None,
        machine_role: Role,
        oidc: OidcVerifier | None,
        warn_placeholder: bool = False,
    ) -> None:
        self.users = users
        self.sessions = sessions
        self._machine_token = machine_token.encode() if machine_token else None
        self.machine_role = machine_role
        self.oidc = oidc
        self.warn_placeholder = warn_placeholder
        self._checks = threading.BoundedSemaphore(CONCURRENT_PASSWORD_CHECKS)
        self._dummy_hash: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        users_file = settings.users_file
        if users_file is None and settings.environment == "development" and settings.local_defaults:
            try:
                users_file, password_file = ensure_local_admin(settings.data_dir / "dashboard")
                log.warning("development sign-in: user 'admin', password in %s", password_file)
            except OSError as exc:  # a read-only data directory (an image run as it is): no built-in login
                log.warning("no local admin (cannot write %s: %s); set KUBETRADER_USERS_FILE", settings.data_dir, exc)
        secret = settings.session_secret.get_secret_value() or secrets.token_urlsafe(32)
        oidc = None
        if settings.oidc_issuer and settings.oidc_audience:
            oidc = OidcVerifier(
                issuer=settings.oidc_issuer,
                audience=settings.oidc_audience,
                jwks_url=settings.oidc_jwks_url,
                role_groups={
                    Role.VIEWER: settings.oidc_viewer_groups,
                    Role.RESEARCHER: settings.oidc_researcher_groups,
                    Role.TRADER: settings.oidc_trader_groups,
                },
                default_role=settings.oidc_default_role,
                username_claim=settings.oidc_username_claim,
                groups_claim=settings.oidc_groups_claim,
            )
        if settings.uses_placeholder_token:
            log.warning(
                "KUBETRADER_API_TOKEN is the placeholder 'changethis': anyone who knows it acts as the machine "
                "(role %s). Development only; outside it the API refuses to start with it.",
                settings.api_token_role,
            )
        token = settings.api_token.get_secret_value() if settings.api_token else None
        return cls(
            users=UserDirectory(Path(users_file) if users_file else None),
            sessions=SessionSigner(secret, max_age_seconds=settings.session_ttl_seconds),
            machine_token=token,
            machine_role=settings.api_token_role,
            oidc=oidc,
            warn_placeholder=settings.uses_placeholder_token,
        )

    @property
    def methods(self) -> list[str]:
        """How one can sign in here (shown by the sign-in page)."""
        return [m for m, on in (("password", self.users.path is not None), ("oidc", self.oidc is not None)) if on]

    def identify(self, credential: str) -> Identity | None:
        """The identity of a bearer credential; None when it is not valid (never raises)."""
        if not credential:
            return None
        if credential.startswith(SESSION_PREFIX):
            name = self.sessions.verify(credential)
            entry = self.users.get(name) if name else None
            return Identity(name=name, role=entry.role, method="session") if name and entry else None
        if self._machine_token is not None and hmac.compare_digest(credential.encode(), self._machine_token):
            if self.warn_placeholder:
                log.warning("a request used the placeholder machine token 'changethis'")
            return Identity(name=MACHINE, role=self.machine_role, method="token")
        if self.oidc is not None and credential.count(".") == 2:
            try:
                return self.oidc.verify(credential)
            except OidcError as exc:
                log.info("%s", exc)
        return None

    def login(self, name: str, password: str) -> Session | None:
        """A new session for a user name and password of the users file; None when they do not match.

        An unknown user costs the same scrypt check as a wrong password, so the time taken does not
        tell which user names exist."""
        entry = self.users.get(name)
        with self._checks:
            if entry is None:
                if self._dummy_hash is None:
                    self._dummy_hash = hash_password(secrets.token_urlsafe(16))
                verify_password(password, self._dummy_hash)
                return None
            if not verify_password(password, entry.password_hash):
                return None
        identity = Identity(name=name, role=entry.role, method="session")
        return Session(self.sessions.issue(name), identity, self.sessions.max_age_seconds)
