"""Authentication of the emulated API server: a bearer token names a user or a ServiceAccount.

kube-apiserver's bearer-token authenticator reads `Authorization: Bearer <token>` (the scheme
case-insensitive, the token the second space-separated word: k8s.io/apiserver
pkg/authentication/request/bearertoken/bearertoken.go) and turns it into a user name and groups.
Every authenticated user also gets `system:authenticated` (pkg/authentication/group
authenticated_group_adder.go), and a ServiceAccount's identity is `system:serviceaccount:NS:NAME`
in the groups `system:serviceaccounts` and `system:serviceaccounts:NS`
(k8s.io/apiserver/pkg/authentication/serviceaccount/util.go, MakeUsername / MakeGroupNames).

A request without a token, or with one nobody minted, gets 401 with the API server's own
Status body (filters/authentication.go answers `apierrors.NewUnauthorized("Unauthorized")`).
The stand-in runs as `--anonymous-auth=false` does: no `system:anonymous` fallback, which is
the stricter of the two settings.

Tokens are minted here (`TokenAuthenticator.mint`), one per identity and call, so the operator
under test, a kubectl user and the test's own admin client are different identities;
`kubeconfig` and `write_service_account_files` hand a token to a client.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"  # the privileged group: allowed everything before RBAC is asked
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """What the authenticator hands the authorizer (k8s.io/apiserver user.Info, without extras)."""

    name: str
    groups: tuple[str, ...] = ()


def user(name: str, groups: tuple[str, ...] = ()) -> Identity:
    """A user (as a client certificate's CN and O, or an OIDC token, would name one)."""
    return Identity(name, (*groups, AUTHENTICATED))


def service_account(namespace: str, name: str) -> Identity:
    """The identity of a ServiceAccount's token, as kube-apiserver derives it."""
    return Identity(
        f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}",
        (SERVICE_ACCOUNTS_GROUP, f"{SERVICE_ACCOUNTS_GROUP}:{namespace}", AUTHENTICATED),
    )


def parse_service_account(username: str) -> tuple[str, str] | None:
    """(namespace, name) of a ServiceAccount user name, None for any other user."""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    namespace, sep, name = username.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")
    if not sep or not namespace or not name or ":" in name:
        return None
    return namespace, name


# kubeadm's admin.conf: a client certificate with CN kubernetes-admin in the system:masters group.
ADMIN = user("kubernetes-admin", (MASTERS,))


def unauthorized_status() -> dict[str, Any]:
    """The body of kube-apiserver's 401 (apierrors.NewUnauthorized("Unauthorized"))."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer ...` header, None without one (bearertoken.go)."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "").strip()
    parts = value.split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
        return None
    return parts[1]


class TokenAuthenticator:
    """Tokens minted by the test set-up, each naming one identity (thread-safe: tests mint from
    their own thread while the emulator's loop authenticates)."""

    def __init__(self) -> None:
        self._tokens: dict[str, Identity] = {}
        self._lock = threading.Lock()

    def mint(self, identity: Identity) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = identity
        return token

    def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        """The identity behind the request's token; None means 401."""
        token = bearer_token(headers)
        return None if token is None else self._tokens.get(token)


def kubeconfig(server: str, token: str, user_name: str, *, ca_file: Path | None = None) -> dict[str, Any]:
    """A kubeconfig (as a dict) that reaches `server` with `token` as `user_name` (trusting the CA
    in `ca_file` for an https server)."""
    cluster: dict[str, Any] = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": cluster}],
        "users": [{"name": user_name, "user": {"token": token}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": user_name}}],
        "current-context": "emulator",
    }


def write_service_account_files(directory: Path, token: str, namespace: str, ca_cert: bytes | None = None) -> Path:
    """The files a pod sees at /var/run/secrets/kubernetes.io/serviceaccount (token, namespace and,
    for a TLS API, ca.crt), for an in-cluster client pointed at this directory. Returns the token file."""
    directory.mkdir(parents=True, exist_ok=True)
    if ca_cert is not None:
        (directory / "ca.crt").write_bytes(ca_cert)
    (directory / "namespace").write_text(namespace)
    token_file = directory / "token"
    token_file.write_text(token)
    return token_file
