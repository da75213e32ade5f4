"""The three PATCH flavours the API server speaks, on plain dicts."""

from __future__ import annotations

import copy
from typing import Any

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class PatchTestFailedError(Exception):
    """A JSON-patch `test` op did not hold (the API server answers 422)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge, `null` removes, anything else (lists too) replaces.

    Strategic merge patch is treated the same: the only lists this project's
    controllers patch (conditions, finalizers) are always sent whole.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")] if path else []


def _parent(doc: Any, parts: list[str]) -> Any:
    for part in parts[:-1]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def json_patch(target: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 `add`, `remove`, `replace` and `test` (what kopf sends)."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = _pointer(op["path"])
        if not parts:
            if op["op"] == "test":
                if doc != op["value"]:
                    raise PatchTestFailedError(op["path"])
                continue
            doc = copy.deepcopy(op["value"])
            continue
        parent = _parent(doc, parts)
        key = parts[-1]
        if op["op"] == "test":
            current = parent[int(key)] if isinstance(parent, list) else parent.get(key)
            if current != op["value"]:
                raise PatchTestFailedError(f"{op['path']}: {current!r} != {op['value']!r}")
        elif op["op"] == "remove":
            if isinstance(parent, list):
                del parent[int(key)]
            else:
                del parent[key]
        elif op["op"] in {"add", "replace"}:
            value = copy.deepcopy(op["value"])
            if isinstance(parent, list):
                if key == "-":
                    parent.append(value)
                elif op["op"] == "add":
                    parent.insert(int(key), value)
                else:
                    parent[int(key)] = value
            else:
                parent[key] = value
        else:
            raise ValueError(f"unsupported JSON-patch op {op['op']!r}")
    return doc
