"""Pydantic JSON Schema -> Kubernetes structural OpenAPI v3 schema.

The API server only accepts *structural* schemas: every node has a `type`,
no `$ref`, no `anyOf` with `null`, and logical junctors (`oneOf`, ...) may only
narrow values of fields that the surrounding schema already declares. Pydantic
emits JSON Schema 2020-12, so this module rewrites it node by node instead of
hand-writing the CRDs, which would drift from the models.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

Schema = dict[str, Any]

# Keys pydantic emits that carry no meaning for the API server (and `title` is noise in `kubectl explain`).
_DROPPED_KEYS = frozenset({"title", "additionalProperties", "discriminator", "$defs"})
_PRESERVE = {"x-kubernetes-preserve-unknown-fields": True}


def model_schema(model: type[BaseModel]) -> Schema:
    """The structural schema of a model as the API server stores it (camelCase field names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(raw, raw.get("$defs", {}))


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Inline a `$ref`, keeping sibling keys such as `description` and `default`."""
    if "$ref" not in node:
        return node
    target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
    siblings = {k: v for k, v in node.items() if k != "$ref"}
    return {**target, **siblings}


def _is_scalar_union(options: list[Schema]) -> bool:
    scalars = {"boolean", "integer", "number", "string"}
    return bool(options) and all("$ref" not in o and o.get("type") in scalars for o in options)


def _convert(node: Schema, defs: dict[str, Schema]) -> Schema:
    node = _resolve(node, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if rest.get("default", 0) is None:
            del rest["default"]  # optional-and-absent: simply not required
        if len(options) == 1:
            return _convert({**_resolve(options[0], defs), **rest}, defs)
        if _is_scalar_union(options):
            # bool | int | float | str: a strategy parameter value, typed by the strategy class itself.
            return {**_keep(rest), **_PRESERVE}
        raise ValueError(f"cannot express union {options!r} as a structural schema")
    if "oneOf" in node:
        return _merge_one_of(node, defs)

    out: Schema = _keep(node)
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if "exclusiveMinimum" in out:  # JSON Schema 2020-12 number -> OpenAPI v3.0 boolean form
        out["minimum"] = out.pop("exclusiveMinimum")
        out["exclusiveMinimum"] = True
    if "exclusiveMaximum" in out:
        out["maximum"] = out.pop("exclusiveMaximum")
        out["exclusiveMaximum"] = True
    if "properties" in node:
        out["properties"] = {name: _convert(sub, defs) for name, sub in node["properties"].items()}
    elif isinstance(node.get("additionalProperties"), dict):
        values = _convert(node["additionalProperties"], defs)
        if values == _PRESERVE or values.get("x-kubernetes-preserve-unknown-fields"):
            out.update(_PRESERVE)  # a map of strategy parameters: names and types belong to the class
        else:
            out["additionalProperties"] = values
    if "items" in node:
        out["items"] = _convert(node["items"], defs)
    return out


def _keep(node: Schema) -> Schema:
    return {k: copy.deepcopy(v) for k, v in node.items() if k not in _DROPPED_KEYS and k not in {"properties", "items"}}


def _merge_one_of(node: Schema, defs: dict[str, Schema]) -> Schema:
    """A discriminated union as one object schema holding every branch's fields.

    The branches keep only what tells them apart (the discriminator value and
    their required fields); descriptions, types and defaults live on the merged
    properties, as the structural-schema rules demand.
    """
    branches = [_convert(o, defs) for o in node["oneOf"]]
    discriminator = node.get("discriminator", {}).get("propertyName", "type")
    properties: dict[str, Schema] = {}
    for branch in branches:
        for name, sub in branch.get("properties", {}).items():
            merged = properties.setdefault(name, {k: v for k, v in sub.items() if k not in {"default", "enum"}})
            if merged.get("type") != sub.get("type"):
                merged["type"] = "number"  # int in one branch, float in another
    properties[discriminator]["enum"] = [b["properties"][discriminator]["enum"][0] for b in branches]
    junctions = [
        {
            "properties": {discriminator: {"enum": b["properties"][discriminator]["enum"]}},
            "required": sorted(set(b.get("required", [])) | {discriminator}),
        }
        for b in branches
    ]
    out = {k: v for k, v in _keep(node).items() if k != "oneOf"}
    return {**out, "type": "object", "properties": properties, "required": [discriminator], "oneOf": junctions}
