"""Label and field selectors as the API server parses and applies them.

Label selectors (k8s.io/apimachinery/pkg/labels/selector.go): comma-separated requirements,
`key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (a,b)`, `key notin (a,b)`, `key>n`, `key<n`;
`!=` and `notin` also match objects without the key. A selector that does not parse is a
400 naming the requirement.

Field selectors (k8s.io/apimachinery/pkg/fields/selector.go): `field=v`, `field==v`, `field!=v`
(with `\\,` `\\=` `\\\\` escapes), on the fields each kind supports: `metadata.name` and
`metadata.namespace` everywhere, plus the kind's own (`pkg/registry/*/strategy.go`
`*ToSelectableFields`; events: `involvedObject.*`, `reason`, `source`, `type`, ...). Any other
field is 400 `field label not supported: <field>`, as on a real server.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


class SelectorError(ValueError):
    """A selector the API server would refuse (400 BadRequest with this message)."""


# ---- labels ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # exists, !, =, !=, in, notin, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "exists":
                return present
            case "!":
                return not present
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "gt" | "lt":
                if not present or value is None or not re.fullmatch(r"-?\d+", value):
                    return False
                bound = int(self.values[0])
                return int(value) > bound if self.operator == "gt" else int(value) < bound
        raise AssertionError(self.operator)


_SET = re.compile(r"^\s*(?P<key>[^\s!=<>(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")
_BINARY = re.compile(r"^\s*(?P<key>[^\s!=<>(),]+)\s*(?P<op>==|=|!=|>|<)\s*(?P<value>[^\s!=<>(),]*)\s*$")
_EXISTS = re.compile(r"^\s*(?P<not>!?)\s*(?P<key>[^\s!=<>(),]+)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on the commas that are not inside a value set's parentheses."""
    terms, depth, current = [], 0, []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [t for t in terms if t.strip()]


def parse_labels(selector: str | None) -> list[Requirement]:
    """Parse a label selector; raises SelectorError for one the API server would refuse."""
    requirements: list[Requirement] = []
    for term in _split_terms(selector or ""):
        if found := _SET.match(term):
            values = tuple(v.strip() for v in found["values"].split(",") if v.strip())
            if not values:
                raise SelectorError(f"unable to parse requirement: values for {found['op']!r} must not be empty")
            requirements.append(Requirement(found["key"], found["op"], values))
        elif found := _BINARY.match(term):
            op = {"==": "=", ">": "gt", "<": "lt"}.get(found["op"], found["op"])
            if op in {"gt", "lt"} and not re.fullmatch(r"-?\d+", found["value"]):
                raise SelectorError(
                    "unable to parse requirement: for 'gt', 'lt' operators, the value must be an integer"
                )
            requirements.append(Requirement(found["key"], op, (found["value"],)))
        elif found := _EXISTS.match(term):
            requirements.append(Requirement(found["key"], "!" if found["not"] else "exists"))
        else:
            raise SelectorError(
                f"unable to parse requirement: found '{term.strip()}', expected: in, notin, =, ==, !=, gt, lt"
            )
    return requirements


def matches_labels(labels: dict[str, str], selector: str | None) -> bool:
    """A label selector in its string form (`a=b,c notin (x,y),!d`) against an object's labels."""
    return all(r.matches(labels) for r in parse_labels(selector))


_EXPRESSION_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def label_selector_requirements(selector: Obj | None) -> list[Requirement]:
    """A metav1.LabelSelector (`matchLabels` and `matchExpressions`) as requirements.

    As apimachinery's `metav1.LabelSelectorAsSelector`: the terms are ANDed; an empty selector
    (`{}`) matches everything; `In`/`NotIn` need values, `Exists`/`DoesNotExist` must have none;
    any other operator is refused.
    """
    requirements = [
        Requirement(k, "=", (str(v),)) for k, v in sorted(((selector or {}).get("matchLabels") or {}).items())
    ]
    for expression in (selector or {}).get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator not in _EXPRESSION_OPERATORS:
            raise SelectorError(f"{operator!r} is not a valid label selector operator")
        if operator in {"In", "NotIn"} and not values:
            raise SelectorError(f"for 'in', 'notin' operators, values set can't be empty (key {key})")
        if operator in {"Exists", "DoesNotExist"} and values:
            raise SelectorError(f"values set must be empty for exists and does not exist (key {key})")
        requirements.append(Requirement(str(key), _EXPRESSION_OPERATORS[operator], tuple(map(str, values))))
    return requirements


def matches_label_selector(labels: dict[str, str], selector: Obj | None) -> bool:
    """A metav1.LabelSelector object against an object's labels (`{}` matches every object)."""
    return all(r.matches(labels) for r in label_selector_requirements(selector))


# ---- fields ------------------------------------------------------------------------------------


def _get(*path: str) -> Callable[[Obj], str | None]:
    def get(obj: Obj) -> str | None:
        value: Any = obj
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        return None if value is None else (str(value).lower() if isinstance(value, bool) else str(value))

    return get


_META: dict[str, Callable[[Obj], str | None]] = {
    "metadata.name": _get("metadata", "name"),
    "metadata.namespace": _get("metadata", "namespace"),
}
_INVOLVED = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
_EVENT_FIELDS = {
    **{f"involvedObject.{f}": _get("involvedObject", f) for f in _INVOLVED},
    "reason": _get("reason"),
    "reportingComponent": _get("reportingComponent"),
    "source": _get("source", "component"),
    "type": _get("type"),
}
# events.k8s.io/v1 names the same fields after its own schema (pkg/apis/events/v1 conversion).
_EVENTS_V1_FIELDS = {
    **{f"regarding.{f}": _get("regarding", f) for f in _INVOLVED},
    "reason": _get("reason"),
    "reportingController": _get("reportingController"),
    "type": _get("type"),
}
FIELDS: dict[tuple[str, str], dict[str, Callable[[Obj], str | None]]] = {
    ("", "events"): _EVENT_FIELDS,
    ("events.k8s.io", "events"): _EVENTS_V1_FIELDS,
    ("", "pods"): {
        "spec.nodeName": _get("spec", "nodeName"),
        "spec.restartPolicy": _get("spec", "restartPolicy"),
        "spec.schedulerName": _get("spec", "schedulerName"),
        "spec.serviceAccountName": _get("spec", "serviceAccountName"),
        "spec.hostNetwork": _get("spec", "hostNetwork"),
        "status.phase": _get("status", "phase"),
        "status.podIP": _get("status", "podIP"),
        "status.nominatedNodeName": _get("status", "nominatedNodeName"),
    },
    ("", "secrets"): {"type": _get("type")},
    ("", "namespaces"): {"status.phase": _get("status", "phase")},
    ("batch", "jobs"): {"status.successful": _get("status", "succeeded")},
}


@dataclass(frozen=True)
class FieldTerm:
    field: str
    equal: bool
    value: str


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_fields(selector: str | None, group: str, plural: str) -> list[FieldTerm]:
    """Parse a field selector for a resource; raises SelectorError for unknown fields or syntax."""
    supported = {**_META, **FIELDS.get((group, plural), {})}
    terms: list[FieldTerm] = []
    for raw in re.split(r"(?<!\\),", selector or ""):
        if not raw.strip():
            continue
        found = re.fullmatch(r"\s*([^=!\s]+)\s*(==|=|!=)(.*)", raw)
        if found is None:
            raise SelectorError(f"invalid selector: '{raw}'; can't understand '{raw}'")
        field, op, value = found.groups()
        if field not in supported:
            raise SelectorError(f"field label not supported: {field}")
        terms.append(FieldTerm(field, op != "!=", _unescape(value)))
    return terms


def field_value(obj: Obj, field: str, group: str, plural: str) -> str | None:
    getter = _META.get(field) or FIELDS.get((group, plural), {})[field]
    return getter(obj)


def matches_fields(obj: Obj, terms: list[FieldTerm], group: str, plural: str) -> bool:
    for term in terms:
        value = field_value(obj, term.field, group, plural) or ""
        if (value == term.value) != term.equal:
            return False
    return True


def name_from(terms: list[FieldTerm]) -> str | None:
    """The name a `metadata.name=` term pins (so the store is read by key, not scanned)."""
    for term in terms:
        if term.field == "metadata.name" and term.equal:
            return term.value
    return None
