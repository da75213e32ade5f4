"""kube-apiserver's RBAC authorizer, as pure functions over the RBAC objects of the emulated API.

Each piece follows the upstream code it names, so a request the stand-in allows is one a real
cluster allows, and a refusal carries the real message:

- `request_attributes`: the verb, resource, subresource, namespace and name of an HTTP request
  (k8s.io/apiserver pkg/endpoints/request/requestinfo.go, `NewRequestInfo`): GET/HEAD is `get`,
  or `list`/`watch` without a name (a `metadata.name=` field selector then names the object);
  DELETE without a name is `deletecollection`; `/api/v1/namespaces/NS` is the namespace itself
  unless followed by a resource; paths with fewer parts (`/api`, `/apis/G`, `/apis/G/V`,
  `/version`, `/openapi/v2`) are non-resource requests with the lower-cased HTTP method as verb.
- `rule_allows`: one PolicyRule against the attributes (plugin/pkg/auth/authorizer/rbac/rbac.go
  `RuleAllows`; pkg/apis/rbac/v1/evaluation_helpers.go: `*` in verbs, apiGroups, resources and
  nonResourceURLs, `*/subresource`, `resource/subresource`, resourceNames, a trailing `*` in a
  nonResourceURL).
- `visit_rules`: the rules that apply to a user in a namespace: every ClusterRoleBinding, then
  the RoleBindings of the namespace (a RoleBinding may name a ClusterRole, which then applies in
  that namespace only); subjects User, Group, ServiceAccount (an empty ServiceAccount namespace
  means the binding's) (pkg/registry/rbac/validation/rule.go, `VisitRulesFor`, `appliesToUser`).
- `authorize`: allowed by the first rule that matches; members of `system:masters` are allowed
  before RBAC is asked, as kube-apiserver's privileged-group authorizer does
  (pkg/kubeapiserver/authorizer/config.go). A binding whose role is missing adds
  `RBAC: role.rbac.authorization.k8s.io "x" not found` to the refusal's reason.
- `forbidden_status`: the 403 body (apiserver pkg/endpoints/handlers/responsewriters/errors.go
  `forbiddenMessage`, wrapped by apimachinery `errors.NewForbidden`): `jobs.batch is forbidden:
  User "..." cannot create resource "jobs" in API group "batch" in the namespace "default"`.
- `BOOTSTRAP_POLICY`: the default ClusterRoles and bindings every cluster has that matter here
  (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go and controller_policy.go):
  cluster-admin for system:masters, and system:discovery, system:basic-user and
  system:public-info-viewer for every authenticated user, so discovery, /version and /openapi
  stay reachable.

Not modelled: aggregated ClusterRoles (nothing here uses `aggregationRule`; a real controller
would fill their rules) and the escalation checks on writing Roles and bindings (the operator
writes none; see tests/kube/README.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from tests.kube.authn import MASTERS, Identity, parse_service_account

Obj = dict[str, Any]
RBAC_GROUP = "rbac.authorization.k8s.io"

# requestinfo.go: verbs given as a path prefix (deprecated, still parsed), and the namespace's
# own subresources (`/api/v1/namespaces/NS/status` is the Namespace's status, not a resource).
SPECIAL_VERBS = frozenset({"proxy", "watch"})
SPECIAL_VERBS_NO_SUBRESOURCES = frozenset({"proxy"})
NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
API_PREFIXES = frozenset({"api", "apis"})
GROUPLESS_API_PREFIXES = frozenset({"api"})
HTTP_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclasses.dataclass(frozen=True, slots=True)
class RequestAttributes:
    """authorizer.Attributes of one request (without the user)."""

    verb: str
    path: str
    resource_request: bool
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def _is_watch(value: str | None) -> bool:
    # ListOptions' `watch` is a bool: "true"/"1" (and, on a decode error, anything but "false"/"0").
    return value is not None and value.lower() not in {"false", "0", ""}


def _exact_name(field_selector: str | None) -> str:
    """The name a `metadata.name=` (or `==`) field selector requires (RequiresExactMatch)."""
    for term in (field_selector or "").split(","):
        key, sep, value = term.replace("==", "=").partition("=")
        if sep and key.strip() == "metadata.name" and not key.endswith("!") and value and "/" not in value:
            return value.strip()
    return ""


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> RequestAttributes:
    """What kube-apiserver's RequestInfoFactory makes of a request (see the module docstring)."""
    method = method.upper()
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    non_resource = RequestAttributes(verb=method.lower(), path=path, resource_request=False)
    if len(parts) < 3 or parts[0] not in API_PREFIXES:
        return non_resource
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix not in GROUPLESS_API_PREFIXES:
        if len(parts) < 3:
            return non_resource
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]
    if parts[0] in SPECIAL_VERBS:
        if len(parts) < 2:
            raise ValueError(f"unable to determine kind and namespace from url, {path}")
        verb, parts = parts[0], parts[1:]
    else:
        verb = HTTP_VERBS.get(method, "")
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0]
    name = parts[1] if len(parts) >= 2 else ""
    subresource = parts[2] if len(parts) >= 3 and verb not in SPECIAL_VERBS_NO_SUBRESOURCES else ""
    if not name and verb == "get":
        verb = "watch" if _is_watch(query.get("watch")) else "list"
        name = _exact_name(query.get("fieldSelector"))
    if not name and verb == "delete":
        verb = "deletecollection"
    return RequestAttributes(
        verb=verb,
        path=path,
        resource_request=True,
        api_group=group,
        api_version=version,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
    )


# ---- rules --------------------------------------------------------------------------------


def _verb_matches(rule: Obj, verb: str) -> bool:
    return any(v in ("*", verb) for v in rule.get("verbs") or ())


def _group_matches(rule: Obj, group: str) -> bool:
    return any(g in ("*", group) for g in rule.get("apiGroups") or ())


def _resource_matches(rule: Obj, combined: str, subresource: str) -> bool:
    for ruled in rule.get("resources") or ():
        if ruled in ("*", combined):
            return True
        if (
            subresource
            and len(ruled) == len(subresource) + 2
            and ruled.startswith("*/")
            and ruled.endswith(subresource)
        ):
            return True
    return False


def _name_matches(rule: Obj, name: str) -> bool:
    names = rule.get("resourceNames") or ()
    return not names or name in names


def _url_matches(rule: Obj, path: str) -> bool:
    for url in rule.get("nonResourceURLs") or ():
        if url in ("*", path):
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(attributes: RequestAttributes, rule: Obj) -> bool:
    """Whether one PolicyRule allows the request (rbac.go `RuleAllows`)."""
    if attributes.resource_request:
        return (
            _verb_matches(rule, attributes.verb)
            and _group_matches(rule, attributes.api_group)
            and _resource_matches(rule, attributes.combined_resource, attributes.subresource)
            and _name_matches(rule, attributes.name)
        )
    return _verb_matches(rule, attributes.verb) and _url_matches(rule, attributes.path)


# ---- the objects and who they apply to -----------------------------------------------------


class RbacObjects(Protocol):
    """Read access to the stored RBAC objects (the emulator's store, or a list in a test)."""

    def cluster_role(self, name: str) -> Obj | None: ...
    def role(self, namespace: str, name: str) -> Obj | None: ...
    def cluster_role_bindings(self) -> Iterable[Obj]: ...
    def role_bindings(self, namespace: str) -> Iterable[Obj]: ...


@dataclasses.dataclass(frozen=True)
class ObjectList:
    """`RbacObjects` over a list of manifests (e.g. what a Helm chart renders)."""

    objects: tuple[Obj, ...]

    def _of(self, kind: str) -> Iterator[Obj]:
        return (o for o in self.objects if o.get("kind") == kind)

    def cluster_role(self, name: str) -> Obj | None:
        return next((o for o in self._of("ClusterRole") if o["metadata"]["name"] == name), None)

    def role(self, namespace: str, name: str) -> Obj | None:
        return next(
            (
                o
                for o in self._of("Role")
                if o["metadata"]["name"] == name and o["metadata"].get("namespace") == namespace
            ),
            None,
        )

    def cluster_role_bindings(self) -> Iterable[Obj]:
        return list(self._of("ClusterRoleBinding"))

    def role_bindings(self, namespace: str) -> Iterable[Obj]:
        return [o for o in self._of("RoleBinding") if o["metadata"].get("namespace") == namespace]


def applies_to(identity: Identity, subject: Obj, namespace: str) -> bool:
    """Whether a binding's subject names this user (rule.go `appliesToUser`)."""
    kind = subject.get("kind")
    if kind == "User":
        return identity.name == subject.get("name")
    if kind == "Group":
        return subject.get("name") in identity.groups
    if kind == "ServiceAccount":
        sa_namespace = subject.get("namespace") or namespace
        if not sa_namespace:
            return False
        return parse_service_account(identity.name) == (sa_namespace, subject.get("name"))
    return False


@dataclasses.dataclass(frozen=True, slots=True)
class GrantedRule:
    """A rule reaching a user, and the path it came by (for error messages and the replay test)."""

    binding: str  # "ClusterRoleBinding/name" or "RoleBinding/ns/name"
    role: str  # "ClusterRole/name" or "Role/ns/name"
    index: int  # the rule's position in the role
    rule: Obj


def _role_rules(objects: RbacObjects, role_ref: Obj, namespace: str) -> tuple[str, list[Obj]]:
    """(role id, rules) of a roleRef; KeyError with the lister's NotFound message when absent."""
    kind, name = role_ref.get("kind"), role_ref.get("name", "")
    if kind == "ClusterRole":
        role = objects.cluster_role(name)
        if role is None:
            raise KeyError(f'clusterrole.{RBAC_GROUP} "{name}" not found')
        return f"ClusterRole/{name}", list(role.get("rules") or [])
    if kind == "Role" and namespace:
        role = objects.role(namespace, name)
        if role is None:
            raise KeyError(f'role.{RBAC_GROUP} "{name}" not found')
        return f"Role/{namespace}/{name}", list(role.get("rules") or [])
    raise KeyError(f"unsupported role reference kind: {kind!r}")


def visit_rules(identity: Identity, namespace: str, objects: RbacObjects) -> Iterator[GrantedRule | str]:
    """Every rule that reaches the user for a request in `namespace` ("" for cluster scope), in
    the authorizer's order; a string is an error (a binding whose role is missing)."""
    for binding in objects.cluster_role_bindings():
        if not any(applies_to(identity, s, "") for s in binding.get("subjects") or ()):
            continue
        try:
            role_id, rules = _role_rules(objects, binding.get("roleRef") or {}, "")
        except KeyError as exc:
            yield str(exc.args[0])
            continue
        for index, rule in enumerate(rules):
            yield GrantedRule(f"ClusterRoleBinding/{binding['metadata']['name']}", role_id, index, rule)
    if not namespace:
        return
    for binding in objects.role_bindings(namespace):
        if not any(applies_to(identity, s, namespace) for s in binding.get("subjects") or ()):
            continue
        try:
            role_id, rules = _role_rules(objects, binding.get("roleRef") or {}, namespace)
        except KeyError as exc:
            yield str(exc.args[0])
            continue
        for index, rule in enumerate(rules):
            yield GrantedRule(f"RoleBinding/{namespace}/{binding['metadata']['name']}", role_id, index, rule)


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""
    rule: GrantedRule | None = None  # the rule that allowed it (None for system:masters)


def _aggregate(errors: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message as is, several deduplicated in brackets."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def authorize(identity: Identity, attributes: RequestAttributes, objects: RbacObjects) -> Decision:
    """kube-apiserver's decision for this user and request (see the module docstring)."""
    if MASTERS in identity.groups:
        return Decision(True, "")
    errors: list[str] = []
    for granted in visit_rules(identity, attributes.namespace, objects):
        if isinstance(granted, str):
            errors.append(granted)
        elif rule_allows(attributes, granted.rule):
            return Decision(True, f"RBAC: allowed by {granted.binding} of {granted.role}", granted)
    return Decision(False, f"RBAC: {_aggregate(errors)}" if errors else "")


def allowing_rules(identity: Identity, attributes: RequestAttributes, objects: RbacObjects) -> list[GrantedRule]:
    """Every rule that allows the request (not just the first): what the least-privilege check counts."""
    return [
        g
        for g in visit_rules(identity, attributes.namespace, objects)
        if isinstance(g, GrantedRule) and rule_allows(attributes, g.rule)
    ]


def forbidden_message(identity: Identity, attributes: RequestAttributes, reason: str = "") -> str:
    """The 403's message, exactly as kube-apiserver writes it (module docstring)."""
    if not attributes.resource_request:
        detail = f'User "{identity.name}" cannot {attributes.verb} path "{attributes.path}"'
    elif attributes.namespace:
        detail = (
            f'User "{identity.name}" cannot {attributes.verb} resource "{attributes.combined_resource}" '
            f'in API group "{attributes.api_group}" in the namespace "{attributes.namespace}"'
        )
    else:
        detail = (
            f'User "{identity.name}" cannot {attributes.verb} resource "{attributes.combined_resource}" '
            f'in API group "{attributes.api_group}" at the cluster scope'
        )
    if reason:
        detail = f"{detail}: {reason}"
    if not attributes.resource_request or not attributes.resource:
        return f"forbidden: {detail}"
    qualified = f"{attributes.resource}.{attributes.api_group}" if attributes.api_group else attributes.resource
    if attributes.name:
        return f'{qualified} "{attributes.name}" is forbidden: {detail}'
    return f"{qualified} is forbidden: {detail}"


def forbidden_status(identity: Identity, attributes: RequestAttributes, reason: str = "") -> Obj:
    """The 403 Status body (apierrors.NewForbidden: details name the group, resource and name)."""
    details: Obj = {}
    if attributes.resource_request:
        details = {"group": attributes.api_group, "kind": attributes.resource}
        if attributes.name:
            details["name"] = attributes.name
        details = {k: v for k, v in details.items() if v}
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": forbidden_message(identity, attributes, reason),
        "reason": "Forbidden",
        "details": details,
        "code": 403,
    }


# ---- the default policy of every cluster ----------------------------------------------------

_BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}


def _cluster_role(name: str, rules: list[Obj]) -> Obj:
    meta = {"name": name, "labels": dict(_BOOTSTRAP_LABELS), "annotations": dict(_AUTOUPDATE)}
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole", "metadata": meta, "rules": rules}


def _group_binding(name: str, *groups: str) -> Obj:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": dict(_BOOTSTRAP_LABELS), "annotations": dict(_AUTOUPDATE)},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": group} for group in groups],
    }


_HEALTH_AND_VERSION = ["/livez", "/readyz", "/healthz", "/version", "/version/"]

BOOTSTRAP_POLICY: tuple[Obj, ...] = (
    _cluster_role(
        "cluster-admin",
        [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]},
        ],
    ),
    _group_binding("cluster-admin", MASTERS),
    _cluster_role(
        "system:discovery",
        [
            {
                "nonResourceURLs": [
                    *_HEALTH_AND_VERSION,
                    "/openapi",
                    "/openapi/*",
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                ],
                "verbs": ["get"],
            }
        ],
    ),
    _group_binding("system:discovery", "system:authenticated"),
    _cluster_role(
        "system:basic-user",
        [
            {
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                "verbs": ["create"],
            },
            {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
        ],
    ),
    _group_binding("system:basic-user", "system:authenticated"),
    _cluster_role("system:public-info-viewer", [{"nonResourceURLs": list(_HEALTH_AND_VERSION), "verbs": ["get"]}]),
    _group_binding("system:public-info-viewer", "system:authenticated", "system:unauthenticated"),
)
