"""The `/scale` subresource: an object's replicas as an autoscaling/v1 `Scale`, as kube-apiserver serves it.

Built-in kinds: Deployments and StatefulSets serve `deployments/scale` and `statefulsets/scale`
(k8s.io/kubernetes pkg/registry/apps/deployment/storage/storage.go `ScaleREST`, and the
statefulset one): `spec.replicas` from the object's `spec.replicas`, `status.replicas` from its
`status.replicas`, `status.selector` the object's `spec.selector` as a label-selector string
(`metav1.LabelSelectorAsSelector(...).String()`). Custom resources serve it when their CRD version
declares `subresources.scale` (apiextensions-apiserver pkg/registry/customresource/etcd.go
`scaleFromCustomResource`): the three JSONPaths `specReplicasPath`, `statusReplicasPath` and
`labelSelectorPath`; an absent replicas value reads as 0.

A write to `/scale` (PUT of a Scale, or a merge/JSON patch of it) changes only the parent's
spec replicas: the Scale's `spec.replicas` must be a non-negative integer (ValidateScale:
`spec.replicas: Invalid value: -1: must be greater than or equal to 0`, 422 on the kind
`Scale.autoscaling`), a `metadata.resourceVersion` in it must match the parent's (409), and the
parent then goes through the normal write path (admission, generation, watch event).

For authorization `deployments/scale` is its own resource (a Role naming `deployments` does not
grant it, nor the reverse): "pods/log" is the documented example of a subresource in a rule
(kubernetes.io/docs/reference/access-authn-authz/rbac/, "Referring to resources"), and kubectl
scale needs `patch` on `deployments/scale` (tests.kube.rbac derives `resource/subresource` for
every path).

Pure functions over plain dicts; the emulator routes the HTTP requests (tests.kube.emulator).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.kube.field_errors import InvalidError, invalid

Obj = dict[str, Any]
SCALE_GROUP, SCALE_VERSION, SCALE_KIND = "autoscaling", "v1", "Scale"


@dataclasses.dataclass(frozen=True)
class ScalePaths:
    """Where a kind keeps its replicas and selector (`.a.b` JSONPaths, as a CRD's `subresources.scale`)."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = None  # a string field; None: the built-ins' `spec.selector` object


# The built-in kinds that serve /scale here, by (group, plural).
BUILTIN = {("apps", "deployments"): ScalePaths(), ("apps", "statefulsets"): ScalePaths()}


def crd_scale_paths(version: Obj) -> ScalePaths | None:
    """A CRD version's `subresources.scale`, or None when it declares none."""
    declared = (version.get("subresources") or {}).get("scale")
    if declared is None:
        return None
    return ScalePaths(
        spec_replicas=declared["specReplicasPath"],
        status_replicas=declared["statusReplicasPath"],
        label_selector=declared.get("labelSelectorPath"),
    )


def _parts(path: str) -> list[str]:
    return [p for p in path.split(".") if p]


def _get(obj: Obj, path: str) -> Any:
    value: Any = obj
    for part in _parts(path):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _set(obj: Obj, path: str, value: Any) -> None:
    *parents, last = _parts(path)
    target = obj
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


def selector_string(selector: Obj | None) -> str:
    """A LabelSelector as `labels.Selector.String()` writes it: requirements sorted by key, `in`/`notin`
    values sorted (k8s.io/apimachinery pkg/labels/selector.go, `Requirement.String`)."""
    if not selector:
        return ""
    requirements: list[tuple[str, str]] = [(k, f"{k}={v}") for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, operator, values = expr["key"], expr["operator"], sorted(expr.get("values") or [])
        if operator == "In":
            requirements.append((key, f"{key} in ({','.join(values)})"))
        elif operator == "NotIn":
            requirements.append((key, f"{key} notin ({','.join(values)})"))
        elif operator == "Exists":
            requirements.append((key, key))
        elif operator == "DoesNotExist":
            requirements.append((key, f"!{key}"))
    return ",".join(text for _, text in sorted(requirements, key=lambda item: item[0]))


def _replicas(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def scale_of(obj: Obj, paths: ScalePaths) -> Obj:
    """The object's Scale (what GET .../scale answers)."""
    meta = obj.get("metadata") or {}
    status: Obj = {"replicas": _replicas(_get(obj, paths.status_replicas))}
    if paths.label_selector is None:
        selector = selector_string((obj.get("spec") or {}).get("selector"))
    else:
        found = _get(obj, paths.label_selector)
        selector = found if isinstance(found, str) else ""
    if selector:
        status["selector"] = selector
    return {
        "kind": SCALE_KIND,
        "apiVersion": f"{SCALE_GROUP}/{SCALE_VERSION}",
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
        },
        "spec": {"replicas": _replicas(_get(obj, paths.spec_replicas))},
        "status": status,
    }


def scaled(obj: Obj, wanted_scale: Any, paths: ScalePaths) -> Obj:
    """The object with the replicas of a written Scale (a copy is not made: pass the emulator's own).

    InvalidError (422, on `Scale.autoscaling`) when the Scale's `spec.replicas` is no integer >= 0.
    """
    name = (obj.get("metadata") or {}).get("name", "")
    spec = wanted_scale.get("spec") if isinstance(wanted_scale, dict) else None
    replicas = spec.get("replicas", 0) if isinstance(spec, dict) else 0
    if not isinstance(replicas, int) or isinstance(replicas, bool):
        raise InvalidError(SCALE_KIND, SCALE_GROUP, name, [invalid("spec.replicas", replicas, "must be an integer")])
    if replicas < 0:
        raise InvalidError(
            SCALE_KIND, SCALE_GROUP, name, [invalid("spec.replicas", replicas, "must be greater than or equal to 0")]
        )
    _set(obj, paths.spec_replicas, replicas)
    return obj
