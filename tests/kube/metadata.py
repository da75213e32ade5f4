"""Object metadata as the API server checks it (apimachinery/pkg/api/validation/objectmeta.go).

Names (per kind: most are DNS-1123 subdomains, a Namespace a DNS-1123 label, a Service a
DNS-1035 label), namespace names, label keys and values (63-byte values), annotation keys and
their total size (256 KiB), ownerReferences, finalizers; and on updates the fields that never
change (name, namespace, uid, creationTimestamp, deletionTimestamp) and the finalizers an
object being deleted may not gain. Messages are those of apimachinery's
pkg/util/validation and pkg/api/validate/content.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.kube.field_errors import Cause, forbidden, invalid, required, too_long

Obj = dict[str, Any]

# The fields of ObjectMeta: anything else under metadata is an unknown field.
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * (1 << 10)  # TotalAnnotationSizeLimitB
FIELD_IMMUTABLE = "field is immutable"

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + "(\\." + _DNS1123_LABEL + ")*"
_DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_LABEL_KEY_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(" + _LABEL_KEY_NAME + ")?"


def _regex_error(message: str, regex: str, *examples: str) -> str:
    """RegexError: the message, examples, and the regex used."""
    if not examples:
        return f"{message} (regex used for validation is '{regex}')"
    shown = " or ".join(f"'{e}'," for e in examples)  # Go's loop: "'a', or 'b', "
    return f"{message} (e.g. {shown} regex used for validation is '{regex}')"


def _full(regex: str) -> re.Pattern[str]:
    return re.compile(f"^{regex}$")


_SUBDOMAIN_RE = _full(_DNS1123_SUBDOMAIN)
_LABEL_RE = _full(_DNS1123_LABEL)
_DNS1035_RE = _full(_DNS1035_LABEL)
_LABEL_KEY_NAME_RE = _full(_LABEL_KEY_NAME)
_LABEL_VALUE_RE = _full(_LABEL_VALUE)


def is_dns1123_subdomain(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not _SUBDOMAIN_RE.match(value):
        errors.append(
            _regex_error(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character",
                _DNS1123_SUBDOMAIN,
                "example.com",
            )
        )
    return errors


def is_dns1123_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _LABEL_RE.match(value):
        if _SUBDOMAIN_RE.match(value):
            errors.append("must not contain dots")
        else:
            errors.append(
                _regex_error(
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                    "and must start and end with an alphanumeric character",
                    _DNS1123_LABEL,
                    "my-name",
                    "123-abc",
                )
            )
    return errors


def is_dns1035_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1035_RE.match(value):
        errors.append(
            _regex_error(
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                "start with an alphabetic character, and end with an alphanumeric character",
                _DNS1035_LABEL,
                "my-name",
                "abc-123",
            )
        )
    return errors


def is_label_key(value: str) -> list[str]:
    """content.IsLabelKey (also "qualified name"): an optional DNS-subdomain prefix and a 63-byte name."""
    errors: list[str] = []
    parts = value.split("/")
    key_message = (
        "must consist of alphanumeric characters, '-', '_' or '.', "
        "and must start and end with an alphanumeric character"
    )
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors += ["prefix part " + m for m in is_dns1123_subdomain(prefix)]
    else:
        return [
            "a valid label key "
            + _regex_error(key_message, _LABEL_KEY_NAME, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 bytes")
    if not _LABEL_KEY_NAME_RE.match(name):
        errors.append("name part " + _regex_error(key_message, _LABEL_KEY_NAME, "MyName", "my.name", "123-abc"))
    return errors


def is_label_value(value: str) -> list[str]:
    errors = []
    if len(value.encode()) > 63:
        errors.append("must be no more than 63 bytes")
    if not _LABEL_VALUE_RE.match(value):
        errors.append(
            _regex_error(
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character",
                _LABEL_VALUE,
                "MyValue",
                "my_value",
                "12345",
            )
        )
    return errors


def is_path_segment_name(value: str) -> list[str]:
    """apimachinery/pkg/api/validation/path.IsValidPathSegmentName (RBAC objects' names, e.g. `system:discovery`)."""
    if value in {".", ".."}:
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


NameRule = Callable[[str], list[str]]

# Kinds whose names are not DNS-1123 subdomains (the API server's per-kind ValidateNameFunc).
NAME_RULES: dict[str, NameRule] = {
    "Namespace": is_dns1123_label,
    "Service": is_dns1035_label,
    # rbac/validation ValidateRBACName = path.ValidatePathSegmentName
    "Role": is_path_segment_name,
    "ClusterRole": is_path_segment_name,
    "RoleBinding": is_path_segment_name,
    "ClusterRoleBinding": is_path_segment_name,
}


def name_rule(kind: str) -> NameRule:
    return NAME_RULES.get(kind, is_dns1123_subdomain)


def _mask_trailing_dash(name: str) -> str:
    """A generateName may end in '-': checked as if a character followed."""
    return name[:-2] + "a" if len(name) > 1 and name.endswith("-") else name


def labels_causes(labels: Any, field: str = "metadata.labels") -> list[Cause]:
    causes: list[Cause] = []
    for key, value in (labels or {}).items():
        causes += [invalid(field, key, m) for m in is_label_key(key)]
        causes += [invalid(field, value, m) for m in is_label_value(str(value))]
    return causes


def annotations_causes(annotations: Any, field: str = "metadata.annotations") -> list[Cause]:
    causes: list[Cause] = []
    total = 0
    for key, value in (annotations or {}).items():
        causes += [invalid(field, key, m) for m in is_label_key(key.lower())]
        total += len(key.encode()) + len(str(value).encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        causes.append(too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT))
    return causes


def owner_references_causes(refs: Any) -> list[Cause]:
    causes: list[Cause] = []
    field = "metadata.ownerReferences"
    controllers = []
    for ref in refs or []:
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                causes.append(required(f"{field}.{key}", "must not be empty"))
        if ref.get("apiVersion") == "v1" and ref.get("kind") == "Event":
            causes.append(invalid(field, ref, "/v1, Kind=Event is disallowed from being an owner"))
        if ref.get("controller"):
            controllers.append(f"{ref.get('kind')}/{ref.get('name')}")
    if len(controllers) > 1:
        found = ", ".join(controllers)
        order = ("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion")  # the Go struct's
        causes.append(
            invalid(
                field,
                [{k: ref[k] for k in order if k in ref} for ref in refs],
                f'Only one reference can have Controller set to true. Found "true" in references for {found}',
            )
        )
    return causes


def finalizers_causes(finalizers: Any) -> list[Cause]:
    causes: list[Cause] = []
    for finalizer in finalizers or []:
        causes += [invalid("metadata.finalizers", finalizer, m) for m in is_label_key(finalizer)]
    if {"orphan", "foregroundDeletion"} <= set(finalizers or []):
        causes.append(
            invalid("metadata.finalizers", finalizers, "finalizer orphan and foregroundDeletion cannot be both set")
        )
    return causes


def create_causes(meta: Obj, kind: str, *, namespaced: bool) -> list[Cause]:
    """ValidateObjectMetaAccessor for a create (the name already generated)."""
    rule = name_rule(kind)
    causes: list[Cause] = []
    if meta.get("generateName"):
        prefix = meta["generateName"]
        causes += [invalid("metadata.generateName", prefix, m) for m in rule(_mask_trailing_dash(prefix))]
    if not meta.get("name"):
        causes.append(required("metadata.name", "name or generateName is required"))
    else:
        causes += [invalid("metadata.name", meta["name"], m) for m in rule(meta["name"])]
    return causes + _common_causes(meta, namespaced=namespaced)


def _common_causes(meta: Obj, *, namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    namespace = meta.get("namespace")
    if namespaced:
        if not namespace:
            causes.append(required("metadata.namespace"))
        else:
            causes += [invalid("metadata.namespace", namespace, m) for m in is_dns1123_label(namespace)]
    elif namespace:
        causes.append(forbidden("metadata.namespace", "not allowed on this type"))
    if int(meta.get("generation") or 0) < 0:
        causes.append(invalid("metadata.generation", meta["generation"], "must be greater than or equal to 0"))
    causes += labels_causes(meta.get("labels"))
    causes += annotations_causes(meta.get("annotations"))
    causes += owner_references_causes(meta.get("ownerReferences"))
    causes += finalizers_causes(meta.get("finalizers"))
    return causes


def update_causes(new: Obj, old: Obj, *, namespaced: bool) -> list[Cause]:
    """ValidateObjectMetaAccessorUpdate."""
    causes: list[Cause] = []
    if old.get("deletionTimestamp"):
        added = sorted(set(new.get("finalizers") or []) - set(old.get("finalizers") or []))
        if added:
            shown = "[]string{" + ", ".join(f'"{f}"' for f in added) + "}"
            causes.append(
                forbidden(
                    "metadata.finalizers",
                    f"no new finalizers can be added if the object is being deleted, found new finalizers {shown}",
                )
            )
    for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"):
        if new.get(key) != old.get(key):
            causes.append(invalid(f"metadata.{key}", new.get(key) or "", FIELD_IMMUTABLE))
    causes += labels_causes(new.get("labels"))
    causes += annotations_causes(new.get("annotations"))
    causes += owner_references_causes(new.get("ownerReferences"))
    causes += finalizers_causes(new.get("finalizers"))
    return causes


def unknown_fields(meta: Obj) -> list[str]:
    """Paths of fields under metadata that ObjectMeta does not have."""
    return sorted(f"metadata.{key}" for key in meta if key not in OBJECT_META_FIELDS)
