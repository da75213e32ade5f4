"""Field errors and `Status` objects worded exactly as kube-apiserver words them.

A validation failure is a list of `Cause`s (k8s.io/apimachinery/pkg/util/validation/field
`Error`: type, field path, bad value, detail); the API server turns the list into a 422
`Status` with reason `Invalid` (apimachinery/pkg/api/errors `NewInvalid`):

    message: <Kind>.<group> "<name>" is invalid: <cause>            (one cause)
             <Kind>.<group> "<name>" is invalid: [<cause>, <cause>]  (several, duplicates dropped)
    details: {name, group, kind, causes: [{reason: <type>, message: <body>, field: <path>}]}

where a cause reads `<field>: <body>` and its body is `<Type string>[: <bad value>][: <detail>]`
(`field.Error.ErrorBody`): the bad value printed as Go's `%v` for numbers and booleans, `%q`
for strings, JSON otherwise, and left out for Required, Forbidden, TooLong and values marked
`OMIT` (objects and arrays in CEL rule failures).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


class ApiError(Exception):
    """An API-server error: becomes a `Status` object with this code and reason."""

    def __init__(self, code: int, reason: str, message: str, *, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        status: Obj = {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "code": self.code,
            "reason": self.reason,
            "message": self.message,
        }
        if self.details is not None:
            status["details"] = self.details
        return status


# field.ErrorType -> its String() (apimachinery/pkg/util/validation/field/errors.go)
TYPE_STRINGS = {
    "FieldValueNotFound": "Not found",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "FieldValueTooFew": "Too few",
    "InternalError": "Internal error",
    "FieldValueTypeInvalid": "Invalid value",
    "FieldValueTooShort": "Too short",
}
# The types whose body never shows the value.
_VALUELESS = {"FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong", "FieldValueTooShort", "InternalError"}


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()  # field.OmitValueType: the body shows no value


def go_float(value: float) -> str:
    """Go's `%v` of a float64: the shortest representation, `%e` style below 1e-4 or from 1e21 on."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign}{abs(int(exponent)):02d}"
    return text


def go_value(value: Any) -> str:
    """A bad value as `field.Error.ErrorBody` prints it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Cause:
    """One field error: `type` is the field.ErrorType (the Status cause's `reason`)."""

    type: str
    field: str
    value: Any = ""
    detail: str = ""

    def body(self) -> str:
        text = TYPE_STRINGS[self.type]
        if self.type not in _VALUELESS and self.value is not OMIT:
            text = f"{text}: {go_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def required(field: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", field, "", detail)


def invalid(field: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", field, value, detail)


def forbidden(field: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", field, "", detail)


def too_long(field: str, max_length: int) -> Cause:
    """field.TooLong: the value is never shown ("may not be more than N bytes")."""
    unit = "byte" if max_length == 1 else "bytes"
    return Cause("FieldValueTooLong", field, "<value omitted>", f"may not be more than {max_length} {unit}")


def too_many(field: str, actual: int, max_items: int) -> Cause:
    unit = "item" if max_items == 1 else "items"
    return Cause("FieldValueTooMany", field, actual if actual >= 0 else OMIT, f"must have at most {max_items} {unit}")


def not_supported(field: str, value: Any, supported: list[Any]) -> Cause:
    quoted = ", ".join(json.dumps(v if isinstance(v, str) else json.dumps(v)) for v in supported)
    return Cause("FieldValueNotSupported", field, value, f"supported values: {quoted}" if supported else "")


def type_invalid(field: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueTypeInvalid", field, value, detail)


def qualified_kind(kind: str, group: str) -> str:
    """schema.GroupKind.String(): `Kind.group`, just `Kind` for the core group."""
    return f"{kind}.{group}" if group else kind


class InvalidError(ApiError):
    """422 Invalid with `details.causes` (apimachinery/pkg/api/errors.NewInvalid)."""

    def __init__(self, kind: str, group: str, name: str, causes: list[Cause]) -> None:
        unique: list[str] = []
        for cause in causes:
            if str(cause) not in unique:
                unique.append(str(cause))
        what = f"{qualified_kind(kind, group)} {json.dumps(name)} is invalid"
        if unique:
            what += ": " + (unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]")
        super().__init__(422, "Invalid", what)
        self.kind = kind
        self.group = group
        self.name = name
        self.causes = causes

    def status(self) -> Obj:
        details: Obj = {}  # Go's omitempty: empty strings are left out
        for key, value in (("name", self.name), ("group", self.group), ("kind", self.kind)):
            if value:
                details[key] = value
        details["causes"] = [{"reason": c.type, "message": c.body(), "field": c.field} for c in self.causes]
        return {**super().status(), "details": details}


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)
