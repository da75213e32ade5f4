"""Service URLs as they may be shown or written down: no credentials in them.

A Redis, PostgreSQL or MLflow URL can carry a secret in two places: the user-info
(`redis://:pw@host`, `postgresql://u:pw@host/db`) and the query (`?password=`, `?token=`,
S3/Azure-style `?sig=`, `?X-Amz-Credential=`...). Everything that logs a URL, puts it in
an error message, a status or a file someone else reads (the pending-MLflow markers) goes
through `redact_uri`. Standard library only (the dashboard and the engine both use it).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameter names (lower-cased) whose value is a credential; a name containing one of
# the fragments counts too (`api_key`, `access_token`, `X-Amz-Signature`, `client_secret`).
SECRET_FRAGMENTS = ("password", "passwd", "pwd", "token", "key", "secret", "signature", "sig", "credential", "auth")


def is_secret_parameter(name: str) -> bool:
    lowered = name.lower()
    return any(fragment in lowered for fragment in SECRET_FRAGMENTS)


def has_credentials(uri: str | None) -> bool:
    """Whether `uri` holds a user name, a password or a secret query parameter."""
    return bool(uri) and redact_uri(uri) != uri


def redact_uri(uri: str | None) -> str | None:
    """`uri` without its user-info and with every secret query value masked.

    `postgresql://u:p@h/db` -> `postgresql://***@h/db`; `rediss://h:6380/0?password=x&ssl_cert_reqs=none`
    -> `rediss://h:6380/0?password=***&ssl_cert_reqs=none`. A string that is no URL is kept.
    """
    if not uri:
        return uri
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:  # e.g. a port that is no number: show the scheme only, never the rest
        return f"{uri.split(':', 1)[0]}://{MASK}" if "://" in uri else MASK
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host  # IPv6 literal
        netloc = f"{MASK}@{host}" + (f":{port}" if port else "")
    query = parts.query
    if query and any(is_secret_parameter(k) for k, _ in parse_qsl(query, keep_blank_values=True)):
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if is_secret_parameter(k) else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
