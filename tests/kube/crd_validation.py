"""Validate custom resources the way the API server does: defaults, schema, then CEL rules.

`admit(crd, obj, old=None)` returns the list of error messages (empty when the API
server would accept the object). Transition rules (those that use `oldSelf`) only
run on updates, as in Kubernetes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"


def load_crds() -> dict[str, dict[str, Any]]:
    """The committed CRDs by kind."""
    crds = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds[crd["spec"]["names"]["kind"]] = crd
    return crds


def openapi_schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill in `default`s of absent fields, recursively, like the API server's defaulting."""
    if isinstance(value, dict):
        out = dict(value)
        for name, sub in schema.get("properties", {}).items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(sub, out[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            out = {k: apply_defaults(extra, v) if k not in schema.get("properties", {}) else v for k, v in out.items()}
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def _schema_errors(schema: dict[str, Any], obj: Any) -> list[str]:
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]


_ENV = celpy.Environment()


def _cel_errors(schema: dict[str, Any], value: Any, old: Any, path: str) -> list[str]:
    errors: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        is_transition = "oldSelf" in rule["rule"]
        if is_transition and old is None:
            continue
        activation = {"self": celpy.json_to_cel(value)}
        if is_transition:
            activation["oldSelf"] = celpy.json_to_cel(old)
        result = _ENV.program(_ENV.compile(rule["rule"])).evaluate(activation)
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            errors.append(f"{path}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                old_sub = old.get(name) if isinstance(old, dict) else None
                errors += _cel_errors(sub, value[name], old_sub, f"{path}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, sub_value in value.items():
                old_sub = old.get(name) if isinstance(old, dict) else None
                errors += _cel_errors(extra, sub_value, old_sub, f"{path}.{name}")
    return errors


def admit(crd: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Error messages the API server would answer with for creating (or updating `old` to) `obj`."""
    schema = openapi_schema(crd)
    defaulted = apply_defaults(schema, obj)
    errors = _schema_errors(schema, defaulted)
    if errors:  # the server runs CEL only on schema-valid objects
        return errors
    old_defaulted = apply_defaults(schema, old) if old is not None else None
    return _cel_errors(schema, defaulted, old_defaulted, "<root>")


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
            forbidden = {"type", "description", "default", "nullable", "additionalProperties"} & set(branch)
            if forbidden:
                problems.append(f"{path}.{junctor}: sets {sorted(forbidden)}")
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
