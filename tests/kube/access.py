"""Access control of the emulated API: authenticate, authorize with RBAC, record.

The emulator calls `AccessControl.check` first thing for every HTTP request (as kube-apiserver's
handler chain runs authentication, then authorization, before any handler): a refusal is
answered with its Status (401 or 403) and the request goes no further. Every decision is kept
in `AccessControl.log` (method, path, the parsed attributes, the identity, allowed or not), so a
test can assert that the operator was never refused, and record what it asked for.

The RBAC objects are the emulator's own stored Roles, ClusterRoles and bindings (served under
rbac.authorization.k8s.io/v1, so kubectl and tests create them as on a cluster): `StoreObjects`
reads them through the emulator's indexes, without copying.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kmock import resource

from tests.kube import rbac
from tests.kube.authn import ADMIN, Identity, TokenAuthenticator, unauthorized_status

if TYPE_CHECKING:
    from tests.kube.emulator import KubeEmulator

Obj = dict[str, Any]

ROLES = resource(group=rbac.RBAC_GROUP, version="v1", plural="roles")
ROLE_BINDINGS = resource(group=rbac.RBAC_GROUP, version="v1", plural="rolebindings")
CLUSTER_ROLES = resource(group=rbac.RBAC_GROUP, version="v1", plural="clusterroles")
CLUSTER_ROLE_BINDINGS = resource(group=rbac.RBAC_GROUP, version="v1", plural="clusterrolebindings")
RBAC_KINDS = (
    ("roles", "Role", True),
    ("rolebindings", "RoleBinding", True),
    ("clusterroles", "ClusterRole", False),
    ("clusterrolebindings", "ClusterRoleBinding", False),
)


@dataclasses.dataclass(frozen=True)
class StoreObjects:
    """`rbac.RbacObjects` over the emulator's live objects (read-only, no copies)."""

    emulator: KubeEmulator

    def cluster_role(self, name: str) -> Obj | None:
        return self.emulator._lookup(CLUSTER_ROLES, None, name)

    def role(self, namespace: str, name: str) -> Obj | None:
        return self.emulator._lookup(ROLES, namespace, name)

    def cluster_role_bindings(self) -> Iterable[Obj]:
        return self.emulator.select(CLUSTER_ROLE_BINDINGS, copies=False)

    def role_bindings(self, namespace: str) -> Iterable[Obj]:
        return self.emulator.select(ROLE_BINDINGS, namespace, copies=False)


@dataclasses.dataclass(frozen=True, slots=True)
class AccessRecord:
    """One request as the authorizer saw it."""

    user: str  # "" when authentication failed
    method: str
    path: str
    attributes: rbac.RequestAttributes
    allowed: bool
    code: int  # 0 when allowed, else 401 or 403
    message: str = ""

    def describe(self) -> str:
        a = self.attributes
        what = (
            f"{a.verb} {a.combined_resource} ({a.api_group or 'core'})" if a.resource_request else f"{a.verb} {a.path}"
        )
        return f"{self.method} {self.path}: {what} -> {'allowed' if self.allowed else self.message}"


@dataclasses.dataclass
class AccessControl:
    """Authentication, RBAC and the record of decisions for one emulator."""

    authenticator: TokenAuthenticator = dataclasses.field(default_factory=TokenAuthenticator)
    # Local ports served like kube-apiserver's old --insecure-port (removed in 1.20): no
    # authentication, no authorization, every request as the administrator. Only for the test
    # set-up's kubeconfig: kubectl (client-go) sends a bearer token over TLS only
    # (kubernetes/kubectl#744), and this stand-in speaks plain HTTP.
    insecure_ports: set[int] = dataclasses.field(default_factory=set)
    # Bounded: a long run keeps the most recent decisions (a scenario makes a few hundred).
    log: collections.deque[AccessRecord] = dataclasses.field(default_factory=lambda: collections.deque(maxlen=100_000))

    def check(
        self,
        emulator: KubeEmulator,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        *,
        local_port: int | None = None,
    ) -> Obj | None:
        """None when the request may proceed, else the Status to answer (401 or 403)."""
        try:
            attributes = rbac.request_attributes(method, path, query)
        except ValueError as exc:  # requestinfo.go's parse error: kube-apiserver answers 500
            attributes = rbac.RequestAttributes(verb=method.lower(), path=path, resource_request=False)
            return self._refuse("", method, path, attributes, 500, str(exc))
        if local_port is not None and local_port in self.insecure_ports:
            self.log.append(AccessRecord(ADMIN.name, method, path, attributes, True, 0))
            return None
        identity = self.authenticator.authenticate(headers)
        if identity is None:
            status = unauthorized_status()
            self.log.append(AccessRecord("", method, path, attributes, False, 401, status["message"]))
            return status
        decision = rbac.authorize(identity, attributes, StoreObjects(emulator))
        if decision.allowed:
            self.log.append(AccessRecord(identity.name, method, path, attributes, True, 0))
            return None
        status = rbac.forbidden_status(identity, attributes, decision.reason)
        self.log.append(AccessRecord(identity.name, method, path, attributes, False, 403, status["message"]))
        return status

    def _refuse(
        self, user: str, method: str, path: str, attributes: rbac.RequestAttributes, code: int, message: str
    ) -> Obj:
        self.log.append(AccessRecord(user, method, path, attributes, False, code, message))
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": code,
        }

    def records(self, identity: Identity | None = None) -> list[AccessRecord]:
        """The decisions so far (of one identity's requests, or all)."""
        return [r for r in list(self.log) if identity is None or r.user == identity.name]

    def refused(self, identity: Identity | None = None) -> list[AccessRecord]:
        return [r for r in self.records(identity) if not r.allowed]
