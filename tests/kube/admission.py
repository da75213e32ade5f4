"""Admission: what kube-apiserver does to a write before it stores it, in the order it does it.

1. Decoding with field validation (`?fieldValidation=Strict|Warn|Ignore`; the server's default
   is Warn, kubectl sends Strict by default: its `--validate` flag defaults to `strict`,
   https://kubernetes.io/docs/reference/kubectl/generated/kubectl_apply/). Unknown fields (not
   in the CRD's structural schema or in Kubernetes' own schema of a built-in kind, nor in
   ObjectMeta) are dropped; Strict refuses them, naming every one, Warn answers with one
   `Warning: 299 - "unknown field \\"spec.x\\""` header each (k8s.io/apiserver
   pkg/endpoints/handlers/create.go, patch.go; apiextensions-apiserver customresource_handler.go
   `schemaCoercingDecoder`). A create or PUT gets 400 BadRequest
   `<Kind> in version "<v>" cannot be handled as a <Kind>: strict decoding error: unknown field "..."`,
   a PATCH 422 Invalid on the field `patch`, as the real handlers answer.
2. Pruning of unknown fields (kept under `x-kubernetes-preserve-unknown-fields`), nulls of
   non-nullable fields, then defaulting from the CRD schema.
3. The namespace must exist for a create (NamespaceLifecycle admission: 404 `namespaces "x" not
   found`); `default`, `kube-system`, `kube-public` and `kube-node-lease` always exist.
4. Validation: object metadata (tests.kube.metadata); for custom resources the structural
   schema and CEL rules (tests.kube.crd_validation); for built-in kinds Kubernetes' own OpenAPI
   schema (from `kubernetes-validate`) and the immutable fields of the kinds this project uses.
   Any failure is one 422 `Invalid` Status with every cause (tests.kube.field_errors).
"""

from __future__ import annotations

import contextvars
import copy
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes_validate.utils as kv

from tests.kube import crd_validation, metadata
from tests.kube.field_errors import (
    ApiError,
    Cause,
    InvalidError,
    bad_request,
    forbidden,
    invalid,
)

Obj = dict[str, Any]
_MISSING = crd_validation._MISSING
KUBERNETES_VERSION = "1.37"  # the schemas of built-in kinds (the chart's target)
STRICT, WARN, IGNORE = "Strict", "Warn", "Ignore"
BUILTIN_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})

# ---- warnings (the Warning response headers of the request being served) ----------------------

_warnings: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("kube_warnings", default=None)


def collect_warnings() -> contextvars.Token[list[str] | None]:
    """Start collecting the warnings of one request (in the task serving it)."""
    return _warnings.set([])


def warning_headers(token: contextvars.Token[list[str] | None]) -> list[str]:
    """The request's `Warning` header values (net.NewWarningHeader: `299 - "<text>"`), and stop collecting."""
    found = _warnings.get() or []
    _warnings.reset(token)
    return ["299 - " + '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"' for text in found]


def warn(text: str) -> None:
    found = _warnings.get()
    if found is not None and text not in found:
        found.append(text)


def field_validation(value: str | None) -> str:
    """The `fieldValidation` directive (empty means Warn); anything else is a 400 like the server's."""
    if not value:
        return WARN
    if value not in {STRICT, WARN, IGNORE}:
        raise bad_request(f"fieldValidation must be one of: {STRICT}, {WARN}, {IGNORE}; got {value}")
    return value


# ---- what admission needs to know about a kind ----------------------------------------------


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True)
class Write:
    """One write: `old` is None for a create; `patch` for PATCH (not PUT); `subresource` e.g. "status"."""

    kind: Kind
    obj: Obj
    old: Obj | None = None
    patch: bool = False
    subresource: str | None = None
    directive: str = WARN


# ---- built-in kinds: Kubernetes' own schemas -----------------------------------------------------


def _linked(node: Any, definitions: dict[str, Any], memo: dict[str, Any]) -> Any:
    """A kubernetes-validate schema node as a structural one, `$ref`s linked to their (shared) targets.

    `["string", "null"]` becomes `type: string, nullable: true`; a `oneOf` of bare types (IntOrString,
    Quantity) becomes the list of those types; formats are dropped (a built-in's values are checked by
    decoding into Go types, not by OpenAPI formats). Recursive definitions become cycles, which the
    walkers never loop on: they follow the data.
    """
    if isinstance(node, list):
        return [_linked(item, definitions, memo) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name not in memo:
            memo[name] = {}
            memo[name].update(_linked(definitions[name], definitions, memo))
        return memo[name]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in {"description", "format", "x-kubernetes-group-version-kind"}:
            continue
        if key == "properties":
            out[key] = {k: _linked(v, definitions, memo) for k, v in value.items()}
        elif key in {"items", "additionalProperties", "not"} or key in {"allOf", "anyOf", "oneOf"}:
            out[key] = _linked(value, definitions, memo)
        else:
            out[key] = value
    types = out.get("type")
    if isinstance(types, list):
        out["nullable"] = "null" in types
        kept = [t for t in types if t != "null"]
        out["type"] = kept[0] if len(kept) == 1 else kept
    branches = out.get("oneOf")
    if branches and all(set(b) <= {"type", "nullable"} for b in branches):
        del out["oneOf"]
        out["type"] = [b["type"] for b in branches]
        out["nullable"] = any(b.get("nullable") for b in branches)
    return out


JSON_SCHEMA_PROPS = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"


@functools.lru_cache(maxsize=64)
def builtin_schema(api_version: str, kind: str) -> crd_validation.Schema | None:
    """Kubernetes' own schema of a built-in kind (the strict one kubernetes-validate ships), or None."""
    version = [v for v in kv.all_versions() if kv.major_minor(v) <= KUBERNETES_VERSION][-1]
    directory = f"v{version}-local-strict"
    file_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv.schema_contents(f"kubernetes-json-schema/{directory}/{kind.lower()}-{file_version}.json", version)
    except FileNotFoundError:
        return None
    definitions = kv.schema_contents(f"kubernetes-json-schema/{directory}/_definitions.json", version)["$defs"]
    memo: dict[str, Any] = {}
    linked: crd_validation.Schema = _linked(schema, definitions, memo)
    props = memo.get(JSON_SCHEMA_PROPS)
    if props is not None:
        # JSONSchemaPropsOrArray / JSONSchemaPropsOrBool have no OpenAPI schema of their own (`{}`),
        # but the server decodes them as JSONSchemaProps (or a list of them, or a bool:
        # apiextensions v1 types_jsonschema.go), so unknown fields below `items` and
        # `additionalProperties` are found as everywhere else in a CRD's schema.
        props["properties"]["items"] = props
        props["properties"]["additionalProperties"] = {**props, "type": ["object", "boolean"]}
    properties = linked.get("properties") or {}
    for key in ("apiVersion", "kind"):  # checked by the request's URL, not here
        properties.get(key, {}).pop("enum", None)
    return linked


def _builtin_problems(kind: Kind, obj: Obj, old: Obj | None) -> tuple[list[str], list[Cause], list[Cause]]:
    """(unknown field paths, type errors, other causes) of a built-in object under its strict schema."""
    schema = builtin_schema(kind.api_version, kind.kind)
    if schema is None:
        return [], [], []
    before = _MISSING if old is None else old
    unknown = crd_validation.prune(obj, schema, old=before)
    causes = crd_validation.schema_causes(schema, obj, old=before)
    type_errors = [c for c in causes if c.type == "FieldValueTypeInvalid"]
    return unknown, type_errors, [c for c in causes if c.type != "FieldValueTypeInvalid"]


def _go_decode_error(kind: Kind, cause: Cause) -> str:
    """How decoding JSON into the kind's Go struct fails on a value of the wrong type (400, not 422).

    The real text names the Go struct and field type (`json: cannot unmarshal string into Go struct
    field JobSpec.spec.backoffLimit of type int32`); the emulator names the JSON types instead.
    """
    expected = cause.detail.rsplit(" must be of type ", 1)[-1].split(":", 1)[0]
    return f"json: cannot unmarshal {cause.value} into Go struct field {kind.kind}.{cause.field} of type {expected}"


# The fields of built-in kinds that an update may not change (the kinds' ValidateUpdate functions
# in kubernetes pkg/apis/*/validation).
def _immutable_causes(kind: Kind, new: Obj, old: Obj) -> list[Cause]:
    causes: list[Cause] = []
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    if (kind.group, kind.kind) == ("batch", "Job"):
        for key in ("selector", "template", "completionMode", "podFailurePolicy"):
            if key in old_spec and spec.get(key) != old_spec.get(key):
                causes.append(invalid(f"spec.{key}", spec.get(key), metadata.FIELD_IMMUTABLE))
    elif (kind.group, kind.kind) == ("apps", "Deployment"):
        if spec.get("selector") != old_spec.get("selector"):
            causes.append(invalid("spec.selector", spec.get("selector"), metadata.FIELD_IMMUTABLE))
    elif (kind.group, kind.kind) == ("apps", "StatefulSet"):
        mutable = {
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
        }
        if {k: v for k, v in spec.items() if k not in mutable} != {
            k: v for k, v in old_spec.items() if k not in mutable
        }:
            causes.append(
                forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                    "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                )
            )
    elif (kind.group, kind.kind) in {("", "ConfigMap"), ("", "Secret")} and old.get("immutable"):
        message = "field is immutable when `immutable` is set"
        if new.get("immutable") is not True:
            causes.append(forbidden("immutable", message))
        for key in ("data", "binaryData", "stringData"):
            if new.get(key) != old.get(key):
                causes.append(forbidden(key, message))
    elif (kind.group, kind.kind) == ("", "Pod"):
        allowed = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")

        def comparable(pod_spec: Obj) -> Obj:
            out = {k: v for k, v in pod_spec.items() if k not in allowed}
            for key in ("containers", "initContainers"):
                out[key] = [{k: v for k, v in c.items() if k != "image"} for c in out.get(key) or []]
            return out

        if comparable(spec) != comparable(old_spec):
            causes.append(
                forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                    "(allow it to be set to 1 if it was previously negative)",
                )
            )
    return causes


# ---- the admission chain -------------------------------------------------------------------------


class Admission:
    """Admits writes for the emulator: custom resources by their CRDs, built-ins by Kubernetes' schemas."""

    def __init__(self) -> None:
        self._schemas: dict[tuple[str, str, str], crd_validation.Schema] = {}  # (group, version, kind)

    def add_crd(self, crd: Obj) -> None:
        spec = crd["spec"]
        for served in spec["versions"]:
            schema = (served.get("schema") or {}).get("openAPIV3Schema")
            if schema is not None:
                self._schemas[(spec["group"], served["name"], spec["names"]["kind"])] = schema

    def is_custom(self, kind: Kind) -> bool:
        return (kind.group, kind.version, kind.kind) in self._schemas

    def admit(self, write: Write, namespace_exists: Callable[[str], bool]) -> Obj:
        """The object to store (pruned, defaulted), or an ApiError as the API server would answer."""
        # The emulator hands over its own copy: pruning and defaulting work on it in place (a strict
        # PATCH needs the object as patched for its error message, so it keeps one).
        obj = copy.deepcopy(write.obj) if write.patch and write.directive == STRICT else write.obj
        kind = write.kind
        schema = self._schemas.get((kind.group, kind.version, kind.kind))
        meta = obj.setdefault("metadata", {})
        unknown = metadata.unknown_fields(meta)
        for path in unknown:
            meta.pop(path.split(".", 1)[1], None)
        causes: list[Cause] = []
        if schema is not None:
            unknown += crd_validation.prune(obj, schema, old=write.old if write.old is not None else _MISSING)
            self._decoded(write, sorted(unknown), [])
            before = write.old if write.old is not None else _MISSING
            crd_validation.prune_nulls(obj, schema, before)
            crd_validation._default(obj, schema, before)
        else:
            builtin_unknown, type_errors, causes = _builtin_problems(kind, obj, write.old)
            unknown += builtin_unknown
            self._decoded(write, sorted(unknown), [_go_decode_error(kind, c) for c in type_errors])
        if write.old is None:
            self._namespace(kind, meta, namespace_exists)
            causes = metadata.create_causes(meta, kind.kind, namespaced=kind.namespaced) + causes
        else:
            causes = metadata.update_causes(meta, write.old["metadata"], namespaced=kind.namespaced) + causes
            if write.subresource is None and schema is None:
                causes += _immutable_causes(kind, obj, write.old)
        if schema is not None:
            causes += self._type_meta(kind, obj)
            causes += crd_validation.validate_custom_resource(
                schema, obj, write.old, status_only=write.subresource == "status"
            )
        if causes:
            raise InvalidError(kind.kind, kind.group, meta.get("name") or "", causes)
        return obj

    @staticmethod
    def _type_meta(kind: Kind, obj: Obj) -> list[Cause]:
        """customResourceValidator.ValidateTypeMeta."""
        causes = []
        if obj.get("kind") != kind.kind:
            causes.append(invalid("kind", obj.get("kind") or "", f"must be {kind.kind}"))
        if obj.get("apiVersion") != kind.api_version:
            causes.append(invalid("apiVersion", obj.get("apiVersion") or "", f"must be {kind.api_version}"))
        return causes

    @staticmethod
    def _decoded(write: Write, unknown: list[str], type_errors: list[str]) -> None:
        """Apply the field-validation directive to what decoding found."""
        kind = write.kind
        if type_errors:
            raise bad_request(
                f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: {type_errors[0]}'
            )
        if not unknown or write.directive == IGNORE:
            return
        problems = [f'unknown field "{path}"' for path in unknown]
        if write.directive == WARN:
            for problem in problems:
                warn(problem)
            return
        strict = "strict decoding error: " + ", ".join(problems)
        if write.patch:
            patched = json.dumps(write.obj, separators=(",", ":"))
            raise InvalidError("", "", "", [invalid("patch", patched, strict)])
        raise bad_request(f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: {strict}')

    @staticmethod
    def _namespace(kind: Kind, meta: Obj, namespace_exists: Callable[[str], bool]) -> None:
        namespace = meta.get("namespace")
        if kind.namespaced and namespace and namespace not in BUILTIN_NAMESPACES and not namespace_exists(namespace):
            raise NamespaceNotFoundError(namespace)


class NamespaceNotFoundError(ApiError):
    """NamespaceLifecycle's answer: the NotFound of the namespace itself."""

    def __init__(self, namespace: str) -> None:
        super().__init__(404, "NotFound", f'namespaces "{namespace}" not found')
        self.namespace = namespace

    def status(self) -> Obj:
        return {**super().status(), "details": {"name": self.namespace, "kind": "namespaces"}}
