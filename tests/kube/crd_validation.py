"""What the API server does with a custom resource's body, step by step, as apiextensions-apiserver does it.

- `prune`: drop fields the structural schema does not declare (unless under
  `x-kubernetes-preserve-unknown-fields`), returning their paths sorted, as
  `unknown field "spec.broker.comission"` (pkg/apiserver/schema/pruning/algorithm.go);
  nulls of non-nullable fields without a default go too (defaulting/prunenulls.go).
- `apply_defaults`: fill in absent fields that have a `default` (defaulting/algorithm.go).
- `schema_causes`: the openAPIV3Schema check as kube-openapi's validator runs it, turned into
  field errors by pkg/apiserver/validation/validation.go `kubeOpenAPIResultToFieldErrors`, so
  each cause reads like the real one, e.g.
  `spec.broker.cash: Invalid value: -5: spec.broker.cash in body should be greater than 0`;
- `list_causes`: `x-kubernetes-list-type: set|map` uniqueness (schema/listtype/validation.go);
- `cel_causes`: `x-kubernetes-validations`, transition rules (`oldSelf`) only where an old
  value exists (schema/cel/validation.go), skipped with the server's own message when a
  "blocking" error was found first (registry/customresource/strategy.go `hasBlockingErr`).

On updates, errors on values that did not change are dropped (CRD validation ratcheting,
GA in Kubernetes 1.33) for the schema and for CEL rules that do not use `oldSelf`.

`admit(crd, obj, old=None)` runs the lot (as the API server does for a create or update) and
returns the causes as strings; the emulator's admission (`tests.kube.admission`) uses the parts.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from cel_expr_python import cel
from cel_expr_python.ext import ext_strings

from tests.kube.field_errors import (
    OMIT,
    Cause,
    forbidden,
    go_float,
    invalid,
    not_supported,
    required,
    too_long,
    too_many,
    type_invalid,
)

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
Schema = dict[str, Any]
Obj = dict[str, Any]
_MISSING: Any = object()


def load_crds() -> dict[str, dict[str, Any]]:
    """The committed CRDs by kind."""
    crds = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds[crd["spec"]["names"]["kind"]] = crd
    return crds


def openapi_schema(crd: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    """The openAPIV3Schema of one served version (the first when `version` is None)."""
    for served in crd["spec"]["versions"]:
        if version is None or served["name"] == version:
            return dict(served["schema"]["openAPIV3Schema"])
    raise KeyError(version)


# ---- pruning and defaulting ------------------------------------------------------------------


def prune(value: Any, schema: Schema | None, *, root: bool = True, path: str = "", old: Any = _MISSING) -> list[str]:
    """Remove undeclared fields in place; the paths removed, sorted (the unknown fields).

    At the root, apiVersion, kind and metadata are left alone (ObjectMeta is checked on its own).
    Parts equal to the same part of `old` (the stored object, pruned when it was written) are skipped.
    """
    unknown: list[str] = []
    _prune(value, schema, root, path, unknown, old)
    return sorted(unknown)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _prune(value: Any, schema: Schema | None, root: bool, path: str, unknown: list[str], old: Any = _MISSING) -> None:
    if old is not _MISSING and old == value:
        return
    if schema is not None and schema.get("x-kubernetes-preserve-unknown-fields"):
        _skip_prune(value, schema, path, unknown)
        return
    if isinstance(value, dict):
        if schema is None:
            for key in list(value):
                unknown.append(_join(path, key))
                del value[key]
            return
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        olds = old if isinstance(old, dict) else {}
        for key in list(value):
            if root and key in {"apiVersion", "kind", "metadata"}:
                continue
            if key in props:
                _prune(value[key], props[key], False, _join(path, key), unknown, olds.get(key, _MISSING))
            elif isinstance(extra, dict):
                _prune(value[key], extra, False, _join(path, key), unknown, olds.get(key, _MISSING))
            elif extra is True:
                continue
            else:
                unknown.append(_join(path, key))
                del value[key]
    elif isinstance(value, list):
        items = schema.get("items") if schema is not None else None
        for i, item in enumerate(value):
            _prune(item, items, False, f"{path}[{i}]", unknown)


def _skip_prune(value: Any, schema: Schema, path: str, unknown: list[str]) -> None:
    """Under preserve-unknown-fields: only declared sub-schemas prune."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            if key in props:
                _prune(sub, props[key], False, _join(path, key), unknown)
            elif isinstance(extra, dict):
                _prune(sub, extra, False, _join(path, key), unknown)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _skip_prune(item, schema["items"], f"{path}[{i}]", unknown)


def prune_nulls(value: Any, schema: Schema | None, old: Any = _MISSING) -> None:
    """Drop `null`s of fields that are not nullable and have no default (defaulting/prunenulls.go).

    Parts equal to `old` (stored, so already done) are skipped.
    """
    if schema is None or (old is not _MISSING and old == value):
        return
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        olds = old if isinstance(old, dict) else {}
        for key in list(value):
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is None:
                continue
            if value[key] is None and not sub.get("nullable") and "default" not in sub:
                del value[key]
            else:
                prune_nulls(value[key], sub, olds.get(key, _MISSING))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        value[:] = [v for v in value if not (v is None and not items.get("nullable") and "default" not in items)]
        for item in value:
            prune_nulls(item, items)


def _non_nullable_null(value: Any, schema: Schema) -> bool:
    return value is None and not schema.get("nullable")


def apply_defaults(schema: Schema, value: Any) -> Any:
    """A copy of `value` with absent (or non-nullable null) fields set to their schema `default`."""
    out = copy.deepcopy(value)
    _default(out, schema)
    return out


def _default(value: Any, schema: Schema | None, old: Any = _MISSING) -> None:
    """Defaults in place; parts equal to `old` (stored, so defaulted already) are skipped."""
    if schema is None or (old is not _MISSING and old == value):
        return
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if "default" in sub and (key not in value or _non_nullable_null(value[key], sub)):
                value[key] = copy.deepcopy(sub["default"])
        extra = schema.get("additionalProperties")
        olds = old if isinstance(old, dict) else {}
        for key in value:
            if key in props:
                _default(value[key], props[key], olds.get(key, _MISSING))
            elif isinstance(extra, dict):
                if "default" in extra and _non_nullable_null(value[key], extra):
                    value[key] = copy.deepcopy(extra["default"])
                _default(value[key], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        for i, item in enumerate(value):
            if "default" in items and _non_nullable_null(item, items):
                value[i] = copy.deepcopy(items["default"])
            _default(value[i], items)


# ---- the openAPIV3Schema check (kube-openapi pkg/validation/validate) --------------------------------

IN = "body"


def _json_type(value: Any) -> str:
    """The JSON type kube-openapi infers from a decoded value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d|w))+$")
_BYTE = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")


def _valid_date(text: str) -> bool:
    if not _DATE.match(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _valid_date_time(text: str) -> bool:
    if not _DATE_TIME.match(text):
        return False
    try:
        dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
    except ValueError:
        return False
    return True


def _valid_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return bool(re.match(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$", text))


# The formats the emulator checks; the API server knows more (apiextensions-apiserver
# pkg/apiserver/validation/formats.go) and ignores the unknown ones, as this does.
FORMATS = {
    "date": _valid_date,
    "date-time": _valid_date_time,
    "datetime": _valid_date_time,
    "duration": lambda text: bool(_DURATION.match(text)),
    "byte": lambda text: bool(_BYTE.match(text)),
    "uuid": _valid_uuid,
}


def _bound(bound: float, value: Any) -> str:
    """A minimum/maximum as kube-openapi prints it (`%v` of an int64 for an integer value)."""
    if isinstance(value, int) and float(bound).is_integer():
        return str(int(bound))
    return go_float(float(bound))


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}
_JUNCTORS = frozenset({"allOf", "anyOf", "oneOf", "not"})


def _same(value: Any, choice: Any) -> bool:
    """reflect.DeepEqual after conversion: 1 matches 1.0, but true never matches 1."""
    return isinstance(value, bool) == isinstance(choice, bool) and value == choice


class _Validator:
    """One validation pass; `prefix` is the field path the schema's root sits at (e.g. "status")."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.causes: list[Cause] = []

    def field(self, name: str) -> str:
        name = name.lstrip(".")
        if not self.prefix:
            return name or "<nil>"
        return f"{self.prefix}.{name}" if name else self.prefix

    def add(self, cause: Cause) -> None:
        self.causes.append(cause)

    def validate(self, schema: Schema, value: Any, path: str, old: Any = _MISSING) -> None:
        """Check `value`; a part equal to the same part of `old` is not checked again (ratcheting)."""
        if old is not _MISSING and old == value:
            return
        declared = schema.get("type")
        if schema.get("x-kubernetes-int-or-string"):
            types: Any = ("integer", "string")
        else:
            types = declared if isinstance(declared, list) else (declared,) if declared else ()
        if value is None:
            if types and not schema.get("nullable"):
                self._type_error(path, ",".join(types), "null", value)
            self._enum(schema, value, path)
            return
        actual = _TYPE_NAMES.get(type(value)) or _json_type(value)
        if types and actual not in types:
            fits = actual == "number" and "integer" in types and float(value).is_integer()
            if not (fits or (actual == "integer" and "number" in types)):
                self._type_error(path, ",".join(types), actual, value)
        if _JUNCTORS.intersection(schema):
            self._junctors(schema, value, path)
        if actual == "object":
            if "enum" in schema:
                self._enum(schema, value, path)
            self._object(schema, value, path, old if isinstance(old, dict) else {})
            return
        if actual == "string":
            self._string(schema, value, path)
        elif actual in {"integer", "number"}:
            self._number(schema, value, path)
        elif actual == "array":
            self._array(schema, value, path)
        if "enum" in schema:
            self._enum(schema, value, path)

    def _type_error(self, path: str, expected: str, actual: str, value: Any) -> None:
        # errors.InvalidType with a string value: "%s in %s must be of type %s: %q"
        detail = f"{path} in {IN} must be of type {expected}: {json.dumps(actual)}"
        self.add(type_invalid(self.field(path), actual, detail))

    def _junctors(self, schema: Schema, value: Any, path: str) -> None:
        for branch in schema.get("allOf") or []:
            sub = _Validator(self.prefix)
            sub.validate(branch, value, path)
            self.causes += sub.causes
        if schema.get("oneOf"):
            results = []
            for branch in schema["oneOf"]:
                sub = _Validator(self.prefix)
                sub.validate(branch, value, path)
                results.append(sub.causes)
            valid = sum(1 for r in results if not r)
            if valid != 1:
                found = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
                self.add(
                    invalid(
                        self.field(""), "", f"{json.dumps(path)} must validate one and only one schema (oneOf). {found}"
                    )
                )
                if valid == 0:  # kube-openapi adds the errors of the branch that came closest
                    self.causes += min(results, key=len)
        if schema.get("anyOf"):
            results = []
            for branch in schema["anyOf"]:
                sub = _Validator(self.prefix)
                sub.validate(branch, value, path)
                results.append(sub.causes)
            if all(results):
                self.add(invalid(self.field(""), "", f"{json.dumps(path)} must validate at least one schema (anyOf)"))
                self.causes += min(results, key=len)
        if isinstance(schema.get("not"), dict):
            sub = _Validator(self.prefix)
            sub.validate(schema["not"], value, path)
            if not sub.causes:
                self.add(invalid(self.field(""), "", f"{json.dumps(path)} must not validate the schema (not)"))

    def _string(self, schema: Schema, value: str, path: str) -> None:
        """kube-openapi's string validator stops at its first failure; the format check is its own."""
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            self.add(too_long(self.field(path), int(schema["maxLength"])))
        elif "minLength" in schema and len(value) < schema["minLength"]:
            detail = f"{path} in {IN} should be at least {schema['minLength']} chars long"
            self.add(invalid(self.field(path), value, detail))
        elif "pattern" in schema and not _regex(schema["pattern"]).search(value):
            self.add(invalid(self.field(path), value, f"{path} in {IN} should match '{schema['pattern']}'"))
        check = FORMATS.get(schema.get("format", ""))
        if check is not None and not check(value):
            fmt = schema["format"]
            self.add(
                type_invalid(self.field(path), value, f"{path} in {IN} must be of type {fmt}: {json.dumps(value)}")
            )

    def _number(self, schema: Schema, value: float, path: str) -> None:
        if "multipleOf" in schema:
            factor = schema["multipleOf"]
            if factor and (value / factor) != int(value / factor):
                detail = f"{path} in {IN} should be a multiple of {_bound(factor, value)}"
                self.add(invalid(self.field(path), value, detail))
        if "maximum" in schema:
            top, exclusive = schema["maximum"], bool(schema.get("exclusiveMaximum"))
            if value > top or (exclusive and value >= top):
                word = "less than" if exclusive else "less than or equal to"
                self.add(invalid(self.field(path), value, f"{path} in {IN} should be {word} {_bound(top, value)}"))
        if "minimum" in schema:
            low, exclusive = schema["minimum"], bool(schema.get("exclusiveMinimum"))
            if value < low or (exclusive and value <= low):
                word = "greater than" if exclusive else "greater than or equal to"
                self.add(invalid(self.field(path), value, f"{path} in {IN} should be {word} {_bound(low, value)}"))

    def _array(self, schema: Schema, value: list[Any], path: str) -> None:
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                self.validate(items, item, f"{path}[{i}]")
        if "minItems" in schema and len(value) < schema["minItems"]:
            detail = f"{path} in {IN} should have at least {schema['minItems']} items"
            self.add(invalid(self.field(path), len(value), detail))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            self.add(too_many(self.field(path), len(value), int(schema["maxItems"])))
        if schema.get("uniqueItems") and any(value[i] in value[:i] for i in range(len(value))):
            self.add(invalid(self.field(path), "", f"{path} in {IN} shouldn't contain duplicates"))

    def _enum(self, schema: Schema, value: Any, path: str) -> None:
        enum = schema.get("enum")
        if enum and not any(_same(value, choice) for choice in enum):
            self.add(not_supported(self.field(path), value, list(enum)))

    def _object(self, schema: Schema, value: dict[str, Any], path: str, old: dict[str, Any]) -> None:
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            detail = f"{path} in {IN} should have at least {schema['minProperties']} properties"
            self.add(invalid(self.field(path), len(value), detail))
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            self.add(too_many(self.field(path), len(value), int(schema["maxProperties"])))
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, sub in value.items():
                if key not in props:
                    self.validate(extra, sub, f"{path}.{key}", old.get(key, _MISSING))
        for key, sub_schema in props.items():
            if key in value:
                self.validate(sub_schema, value[key], _join(path, key), old.get(key, _MISSING))
        for key in schema.get("required") or []:
            if key not in value:
                self.add(required(self.field(f"{path}.{key}")))


def schema_causes(schema: Schema, value: Any, *, prefix: str = "", old: Any = _MISSING) -> list[Cause]:
    """The field errors of `value` against a (structural) openAPIV3Schema.

    With `old` (an update), what did not change is not checked: CRD validation ratcheting
    (KEP-4008, GA in 1.33) keeps errors on unchanged values from failing an update, and for a
    built-in kind the stored object was checked when it was written.
    """
    validator = _Validator(prefix)
    validator.validate(schema, value, "", old)
    return validator.causes


# ---- x-kubernetes-list-type ----------------------------------------------------------------------


def list_causes(schema: Schema, value: Any, path: str = "", old: Any = _MISSING) -> list[Cause]:
    """`set` lists hold no value twice, `map` lists no key tuple twice (field.Duplicate).

    What equals `old` is not checked again (ratcheting, as for the schema).
    """
    causes: list[Cause] = []
    if old is not _MISSING and old == value:
        return causes
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        olds = old if isinstance(old, dict) else {}
        for key, sub in value.items():
            sub_schema = props.get(key, extra if isinstance(extra, dict) else None)
            if sub_schema is not None:
                causes += list_causes(sub_schema, sub, _join(path, key), olds.get(key, _MISSING))
    elif isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        seen: list[Any] = []
        for i, item in enumerate(value):
            if list_type == "set":
                if item in seen:
                    causes.append(Cause("FieldValueDuplicate", f"{path}[{i}]", item))
                seen.append(item)
            elif list_type == "map" and isinstance(item, dict):
                key = {k: item.get(k) for k in schema.get("x-kubernetes-list-map-keys") or []}
                if key in seen:
                    causes.append(Cause("FieldValueDuplicate", f"{path}[{i}]", key))
                seen.append(key)
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                causes += list_causes(schema["items"], item, f"{path}[{i}]")
    return causes


# ---- CEL x-kubernetes-validations ----------------------------------------------------------------

# cel-expr-python is Google's CEL runtime (cel-cpp), the same language definition as the cel-go that
# kube-apiserver embeds; cel-python's tree-walking interpreter cost ~1 ms a rule, this ~6 µs. `self`
# and `oldSelf` are declared dynamic: the apiserver types them from the schema (DeclType), and a
# rule the type checker would refuse is refused by the CRD's own creation, which the chart's CRDs
# passed on real clusters; at run time both behave alike, heterogeneous numeric comparison
# included (kube enables cel.CrossTypeNumericComparisons). The strings extension is one of the
# libraries kube-apiserver adds (k8s.io/apiserver/pkg/cel/environment/base.go: ext.Strings).
_ENV = cel.NewEnv(variables={"self": cel.Type.DYN, "oldSelf": cel.Type.DYN}, extensions=[ext_strings.ExtStrings()])


@functools.lru_cache(maxsize=512)
def _program(rule: str) -> Any:
    return _ENV.compile(rule)


def _go_error_text(text: str) -> str:
    """cel-cpp's error status as cel-go words it, for the texts a CRD rule meets at run time.

    cel-go: `no such key: %v` (common/types/map.go) and `no such overload` (common/types/err.go
    NoSuchOverloadErr); apiextensions-apiserver appends " evaluating rule: ..." (schema/cel/
    validation.go). Other errors keep cel-cpp's text without its status-code prefix."""
    text = re.sub(r"^[A-Z_]+: ", "", text)
    missing = re.match(r'Key not found in map : "?(.*?)"?$', text)
    if missing:
        return f"no such key: {missing.group(1)}"
    if text.startswith("No matching overloads"):
        return "no such overload"
    return text


_FIELD_CHAIN = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)(?![A-Za-z0-9_]|\s*\()")


@functools.lru_cache(maxsize=512)
def _read_paths(rule: str, variable: str) -> tuple[tuple[str, ...], ...] | None:
    """The field paths of `variable` (`self` or `oldSelf`) a rule reads, or None when it uses the
    value itself (`self == oldSelf`, `self.all(...)`, `x in self`, `self[0]`).

    `self.metadata.name` reads ("metadata", "name"); a chain stops before a method call
    (`self.name.startsWith(...)` reads ("name",)) or an index. Reading a projection that holds just
    these paths gives the rule the same result (`has()` included), while the cache below is keyed
    on far less than the whole object: the root rule `size(self.metadata.name) <= 63` no longer
    converts and hashes every status and managedFields on each write.
    """
    paths: list[tuple[str, ...]] = []
    for found in re.finditer(rf"(?<![A-Za-z0-9_.]){variable}(?![A-Za-z0-9_])", rule):
        chain: list[str] = []
        position = found.end()
        while (field := _FIELD_CHAIN.match(rule, position)) is not None:
            chain.append(field.group(1))
            position = field.end()
        if not chain:
            return None  # the value itself, or a method called on it
        paths.append(tuple(chain))
    return tuple(paths)


def _projection(value: Any, paths: tuple[tuple[str, ...], ...] | None) -> Any:
    """`value` cut down to `paths` (the whole value for None); where a path meets a non-object the
    part is kept whole, so a rule fails on it exactly as on the full value."""
    if paths is None or not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for path in sorted(paths, key=len):
        source: Any = value
        target = out
        for depth, key in enumerate(path):
            if not isinstance(source, dict) or key not in source:
                break
            if depth == len(path) - 1 or not isinstance(source[key], dict):
                target[key] = source[key]
                break
            existing = target.get(key)
            if existing is not None and existing is source[key]:
                break  # a shorter path already took it whole
            target = target.setdefault(key, {})
            source = source[key]
    return out


def _evaluate_rule(rule: str, value: Any, old: Any) -> bool | str:
    """True, False, or the evaluation error's text, for `value` (and `old`, for a transition rule)."""
    keyed_old = json.dumps(_projection(old, _read_paths(rule, "oldSelf")), sort_keys=True) if old is not None else ""
    return _evaluate(rule, json.dumps(_projection(value, _read_paths(rule, "self")), sort_keys=True), keyed_old)


@functools.lru_cache(maxsize=4096)
def _evaluate(rule: str, value: str, old: str) -> bool | str:
    """True, False, or the evaluation error's text (of the JSON of the parts the rule reads).

    A rule is a pure function of self (and oldSelf): its outcome is kept per JSON value, so the
    many writes that leave those parts alone (status, finalizers) do not pay for an evaluation again.
    """
    data = {"self": json.loads(value)}
    if old:
        data["oldSelf"] = json.loads(old)
    result = _program(rule).eval(data=data)
    kind = result.type()
    if kind == cel.Type.ERROR:
        return _go_error_text(str(result.value()))
    return kind == cel.Type.BOOL and bool(result.value())


_TRANSITIONS: dict[int, bool] = {}


def _has_transition_rules(schema: Schema) -> bool:
    """Whether a rule using oldSelf sits anywhere under this schema node (kept per node)."""
    key = id(schema)
    if key not in _TRANSITIONS:
        _TRANSITIONS[key] = False  # a recursive schema does not loop
        _TRANSITIONS[key] = any(
            _uses_old_self(rule["rule"]) for rule in schema.get("x-kubernetes-validations") or []
        ) or any(_has_transition_rules(sub) for sub in _children(schema))
    return _TRANSITIONS[key]


def _children(schema: Schema) -> list[Schema]:
    subs = list((schema.get("properties") or {}).values())
    subs += [schema[k] for k in ("additionalProperties", "items") if isinstance(schema.get(k), dict)]
    return subs


def _uses_old_self(rule: str) -> bool:
    return re.search(r"\boldSelf\b", rule) is not None


def _rule_message(rule: dict[str, Any]) -> str:
    """ruleMessageOrDefault: the message, else "failed rule: <rule>"."""
    message = (rule.get("message") or "").strip()
    return message or f"failed rule: {rule['rule'].strip()}"


def _rule_field(path: str, field_path: str | None) -> str:
    """The error's field: the node's path, with the rule's `fieldPath` (".end", "['a.b']") appended."""
    if not field_path:
        return path or "<nil>"
    parts = re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\['([^']*)'\]|\[(\d+)\]", field_path)
    out = path
    for name, quoted, index in parts:
        out = f"{out}[{index}]" if index else _join(out, name or quoted)
    return out


def _cel_failure(rule: dict[str, Any], schema: Schema, value: Any, path: str, detail: str) -> Cause:
    """fieldErrorForReason: the rule's `reason` picks the error type; objects and arrays show no value."""
    field = _rule_field(path, rule.get("fieldPath"))
    shown = OMIT if schema.get("type") in {"object", "array"} else value
    reason = rule.get("reason")
    if reason == "FieldValueForbidden":
        return forbidden(field, detail)
    if reason == "FieldValueRequired":
        return required(field, detail)
    if reason == "FieldValueDuplicate":
        return Cause("FieldValueDuplicate", field, shown)
    return invalid(field, shown, detail)


def cel_causes(schema: Schema, value: Any, old: Any = _MISSING, path: str = "") -> list[Cause]:
    """Evaluate every rule under `schema` on `value` (transition rules only where `old` exists).

    Old values are correlated by property name and map-list keys, as the API server does;
    items of other lists have no old value (their transition rules are not run).
    """
    causes: list[Cause] = []
    if value is None:
        return causes
    has_old = old is not _MISSING and old is not None
    unchanged = has_old and old == value
    if unchanged and not _has_transition_rules(schema):
        return causes  # ratcheting: rules without oldSelf do not fail what the update left alone
    for rule in schema.get("x-kubernetes-validations") or []:
        transition = _uses_old_self(rule["rule"])
        if transition and not has_old:
            continue
        if not transition and unchanged:
            continue
        if unchanged and rule["rule"].strip() == "self == oldSelf":
            continue  # holds for an unchanged value: no need to evaluate it
        outcome = _evaluate_rule(rule["rule"], value, old if transition else None)
        if outcome is False:
            causes.append(_cel_failure(rule, schema, value, path, _rule_message(rule)))
        elif outcome is not True:
            detail = f"{outcome} evaluating rule: {_rule_message(rule)}"
            causes.append(invalid(path or "<nil>", schema.get("type", ""), detail))
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        old_map = old if has_old and isinstance(old, dict) else {}
        for key, sub in value.items():
            sub_schema = props.get(key, extra if isinstance(extra, dict) else None)
            if sub_schema is not None:
                causes += cel_causes(sub_schema, sub, old_map.get(key, _MISSING), _join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        keys = schema.get("x-kubernetes-list-map-keys") if schema.get("x-kubernetes-list-type") == "map" else None
        olds = old if has_old and isinstance(old, list) else []
        for i, item in enumerate(value):
            old_item: Any = _MISSING
            if keys and isinstance(item, dict):
                wanted = {k: item.get(k) for k in keys}
                old_item = next(
                    (o for o in olds if isinstance(o, dict) and {k: o.get(k) for k in keys} == wanted), _MISSING
                )
            causes += cel_causes(items, item, old_item, f"{path}[{i}]")
    return causes


# hasBlockingErr (registry/customresource/strategy.go): with one of these, CEL rules are not run.
BLOCKING = {
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
}
CEL_SKIPPED = invalid(
    "<nil>",
    None,
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation",
)


# ---- ratcheting ------------------------------------------------------------------------------------


def _lookup(obj: Any, field: str) -> Any:
    """The value at a cause's field path (`spec.a[0].b`), or _MISSING."""
    current = obj
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", field):
        if index:
            if not isinstance(current, list) or int(index) >= len(current):
                return _MISSING
            current = current[int(index)]
        else:
            if not isinstance(current, dict) or name not in current:
                return _MISSING
            current = current[name]
    return current


def ratchet(causes: list[Cause], new: Any, old: Any) -> list[Cause]:
    """Drop the causes whose value is unchanged since `old` (an update may keep what was invalid)."""
    kept = []
    for cause in causes:
        before = _lookup(old, cause.field)
        if before is not _MISSING and before == _lookup(new, cause.field):
            continue
        kept.append(cause)
    return kept


# ---- the whole check ------------------------------------------------------------------------------


def validate_custom_resource(
    schema: Schema, obj: Obj, old: Obj | None = None, *, status_only: bool = False
) -> list[Cause]:
    """The schema, list-type and CEL causes of a create (`old` None) or an update.

    `status_only`: a write to the status subresource, whose schema check covers status alone.
    """
    if status_only:
        status_schema = (schema.get("properties") or {}).get("status") or {}
        old_status = (old or {}).get("status", _MISSING)
        causes = schema_causes(status_schema, obj["status"], prefix="status", old=old_status) if "status" in obj else []
    else:
        causes = schema_causes(schema, obj, old=_MISSING if old is None else old)
    causes += list_causes(schema, obj, old=_MISSING if old is None else old)
    if any(c.type in BLOCKING for c in causes):
        return [*causes, CEL_SKIPPED]
    rule_causes = cel_causes(schema, obj, old if old is not None else _MISSING)
    return causes + rule_causes


def admit(crd: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """The causes the API server would answer with for creating (or updating `old` to) `obj`.

    Unknown fields are pruned first (kubectl's default `--validate=strict` makes them an error
    before any of this: see `tests.kube.admission`).
    """
    schema = openapi_schema(crd)
    body = copy.deepcopy(obj)
    prune(body, schema)
    prune_nulls(body, schema)
    _default(body, schema)
    previous = None
    if old is not None:
        previous = copy.deepcopy(old)
        prune(previous, schema)
        _default(previous, schema)
    return [str(c) for c in validate_custom_resource(schema, body, previous)]


def iter_schemas(schema: Schema) -> Iterator[Schema]:
    """Every node of a schema, depth first."""
    yield schema
    for sub in (schema.get("properties") or {}).values():
        yield from iter_schemas(sub)
    for key in ("additionalProperties", "items", "not"):
        if isinstance(schema.get(key), dict):
            yield from iter_schemas(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        for branch in schema.get(key) or []:
            yield from iter_schemas(branch)


def structural_problems(schema: dict[str, Any], path: str = "") -> list[str]:
    """Violations of the structural-schema rules the API server enforces on CRDs."""
    problems: list[str] = []
    if "$ref" in schema:
        problems.append(f"{path}: $ref")
    if not schema.get("type") and not (
        schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-int-or-string")
    ):
        problems.append(f"{path}: no type")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: properties and additionalProperties together")
    for junctor in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(junctor, []):
            forbidden_keys = {"type", "description", "default", "nullable", "additionalProperties"} & set(branch)
            if forbidden_keys:
                problems.append(f"{path}.{junctor}: sets {sorted(forbidden_keys)}")
            for name in branch.get("properties", {}):
                if name not in schema.get("properties", {}):
                    problems.append(f"{path}.{junctor}: field {name} not declared outside")
    for name, sub in schema.get("properties", {}).items():
        problems += structural_problems(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += structural_problems(schema["additionalProperties"], f"{path}[*]")
    if isinstance(schema.get("items"), dict):
        problems += structural_problems(schema["items"], f"{path}[]")
    return problems


def preserved_paths(schema: dict[str, Any], path: str = "") -> list[str]:
    """Where the schema lets unknown fields through (should be strategy parameters only)."""
    found = [path] if schema.get("x-kubernetes-preserve-unknown-fields") else []
    for name, sub in schema.get("properties", {}).items():
        found += preserved_paths(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        found += preserved_paths(schema["additionalProperties"], f"{path}[*]")
    if isinstance(schema.get("items"), dict):
        found += preserved_paths(schema["items"], f"{path}[]")
    return found
