"""Sessions of the built-in login: signed, expiring tokens (itsdangerous), nothing stored server-side.

A token carries the user name and when it was issued; `itsdangerous.URLSafeTimedSerializer`
signs it with HMAC-SHA1 over a key derived from the session secret and the salt, and refuses it
after `max_age` (itsdangerous docs, "Signing Interface" / `TimestampSigner`). The role is *not*
taken from the token: it is read from the users file on every request, so a removed user or a
lowered role takes effect at once instead of when the token expires.
"""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeTimedSerializer

SALT = "kubetrader-dashboard-session"
PREFIX = "kts1."  # tells a session token from the machine token and from an OIDC JWT at a glance


class SessionSigner:
    def __init__(self, secret: str, *, max_age_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=SALT)
        self.max_age_seconds = max_age_seconds

    def issue(self, user: str) -> str:
        return PREFIX + self._serializer.dumps({"u": user})

    def verify(self, token: str) -> str | None:
        """The user name of a valid, unexpired token; None otherwise."""
        if not token.startswith(PREFIX):
            return None
        try:
            data = self._serializer.loads(token[len(PREFIX) :], max_age=self.max_age_seconds)
        except BadSignature:  # SignatureExpired is a BadSignature too
            return None
        user = data.get("u") if isinstance(data, dict) else None
        return user if isinstance(user, str) else None
