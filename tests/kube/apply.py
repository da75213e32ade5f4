"""Server-side apply and `managedFields`, after structured-merge-diff (sigs.k8s.io/structured-merge-diff).

Every write records which manager owns which fields, in `metadata.managedFields` (`FieldsV1`:
`f:<field>`, `k:{"name":"x"}` for an item of a list-map, `v:<value>` for an item of a set, `.`
for the item itself). A create, update or patch (operation `Update`) makes its manager (the
`fieldManager` parameter, else the User-Agent's product: `kopf/1.45 ...` -> `kopf`) own every
field it set or changed, and takes them from the others without a conflict. An apply
(`PATCH` with `application/apply-patch+yaml`, operation `Apply`):

1. conflicts with any other manager owning a field the applied configuration sets to a
   different value: 409 `Apply failed with N conflict(s): conflict with "mgr" ...`, one
   `FieldManagerConflict` cause per field (k8s.io/apiserver
   pkg/endpoints/handlers/fieldmanager/internal/conflict.go); `force=true` takes them over;
2. removes the fields the manager applied last time and no longer applies, unless another
   manager owns them;
3. merges the configuration into the object: maps field by field, list-maps item by item on
   their keys (containers and env by `name`, ...), sets by value, atomic lists whole.

List and map types come from the schema: Kubernetes' own for built-in kinds (the
`x-kubernetes-list-type`/`-list-map-keys`/`-map-type` of kubernetes-validate's definitions), the
CRD's `openAPIV3Schema` for custom resources (where a list without a type is atomic, as in
structured-merge-diff). Not modelled: the `.` markers on plain maps, multiple versions of a kind
(conversion of field sets), and the CSA-to-SSA annotation migration kubectl performs.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

Obj = dict[str, Any]
Element = tuple[str, str]  # ("f", name) | ("k", key json) | ("v", value json) | (".", "")
Path = tuple[Element, ...]
FieldSet = set[Path]
APPLY_PATCH = "application/apply-patch+yaml"
_MISSING = object()
# Fields the field manager never tracks (k8s.io/apiserver fieldmanager: type and identity metadata).
_UNTRACKED_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"}
_UNTRACKED_META |= {"deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"}


class ApplyConflictError(Exception):
    """Conflicting managers: the API server's 409 Status."""

    def __init__(self, conflicts: list[tuple[Obj, Path]]) -> None:
        self.conflicts = conflicts
        super().__init__(conflict_message(conflicts))

    def status(self) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "code": 409,
            "reason": "Conflict",
            "message": str(self),
            "details": {
                "causes": [
                    {"reason": "FieldManagerConflict", "message": f"conflict with {_who(entry)}", "field": path_text(p)}
                    for entry, p in self.conflicts
                ]
            },
        }


def manager_from_user_agent(user_agent: str) -> str:
    """The default field manager: the User-Agent up to its first `/` (apiserver `prefixFromUserAgent`)."""
    return (user_agent or "unknown").split("/", 1)[0][:128]


# ---- schemas --------------------------------------------------------------------------------


class Schema:
    """Navigates a schema (JSON Schema or OpenAPI form) through `$ref`s and `allOf` wrappers."""

    def __init__(self, node: Obj | None, definitions: Mapping[str, Obj]) -> None:
        self.definitions = definitions
        self.node = self._resolve(node or {})
        self._children: dict[str, Schema] = {}  # resolved once: a kind's Schema is kept and reused

    def _resolve(self, node: Obj) -> Obj:
        for _ in range(32):
            if "$ref" in node:
                node = {
                    **self.definitions.get(node["$ref"].rsplit("/", 1)[-1], {}),
                    **{k: v for k, v in node.items() if k != "$ref"},
                }
            elif len(node.get("allOf") or []) == 1:
                node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
            else:
                return node
        return node

    def field(self, name: str) -> Schema:
        child = self._children.get(name)
        if child is None:
            props = self.node.get("properties") or {}
            extra = self.node.get("additionalProperties")
            node = props[name] if name in props else (extra if isinstance(extra, dict) else None)
            child = self._children[name] = Schema(node, self.definitions)
        return child

    def items(self) -> Schema:
        child = self._children.get("[]")
        if child is None:
            items = self.node.get("items")
            child = self._children["[]"] = Schema(items if isinstance(items, dict) else None, self.definitions)
        return child

    @property
    def list_type(self) -> str:
        return str(self.node.get("x-kubernetes-list-type") or "atomic")

    @property
    def map_keys(self) -> list[str]:
        return list(self.node.get("x-kubernetes-list-map-keys") or [])

    @property
    def atomic_map(self) -> bool:
        return self.node.get("x-kubernetes-map-type") == "atomic"


def _item_key(item: Any, keys: list[str]) -> str:
    if not isinstance(item, dict):
        return json.dumps(item)
    return json.dumps({k: item.get(k) for k in keys if k in item}, separators=(",", ":"))


# ---- field sets -----------------------------------------------------------------------------


def leaves(value: Any, schema: Schema, prefix: Path = ()) -> dict[Path, Any]:
    """Every field `value` sets, as paths (leaves, list-map items with their `.` marker, set items), with values.

    One walk gives both the field set (the keys) and what each field holds, so comparing two
    versions of an object never searches a list twice.
    """
    found: dict[Path, Any] = {}
    if isinstance(value, dict) and value and not schema.atomic_map:
        for name, sub in value.items():
            found.update(leaves(sub, schema.field(name), (*prefix, ("f", name))))
    elif isinstance(value, list) and value and schema.list_type == "map":
        item_schema, keys = schema.items(), schema.map_keys
        for item in value:
            item_path = (*prefix, ("k", _item_key(item, keys)))
            found[(*item_path, (".", ""))] = None
            found.update(leaves(item, item_schema, item_path))
    elif isinstance(value, list) and value and schema.list_type == "set":
        found.update({(*prefix, ("v", json.dumps(item, separators=(",", ":")))): item for item in value})
    elif prefix:
        found[prefix] = value
    return found


def fields_of(value: Any, schema: Schema) -> FieldSet:
    """The field set of `value` (see `leaves`)."""
    return set(leaves(value, schema))


def tracked(obj: Obj, subresource: str) -> Obj:
    """The part of an object a write through `subresource` ("" or "status") can own."""
    if subresource == "status":
        return {"status": obj["status"]} if "status" in obj else {}
    out = {k: v for k, v in obj.items() if k not in {"apiVersion", "kind", "status"}}
    meta = {k: v for k, v in (out.pop("metadata", None) or {}).items() if k not in _UNTRACKED_META}
    if meta:
        out["metadata"] = meta
    return out


def value_at(obj: Any, path: Path, schema: Schema) -> Any:
    """The value at a field path (`_MISSING` if absent); an item's `.` is the item itself."""
    value = obj
    for kind, text in path:
        if kind == "f":
            if not isinstance(value, dict) or text not in value:
                return _MISSING
            value, schema = value[text], schema.field(text)
        elif kind == "k":
            keys = schema.map_keys
            matches = [item for item in value or [] if _item_key(item, keys) == text] if isinstance(value, list) else []
            if not matches:
                return _MISSING
            value, schema = matches[0], schema.items()
        elif kind == "v":
            wanted = json.loads(text)
            return wanted if isinstance(value, list) and wanted in value else _MISSING
        # ".": the item itself
    return value


def encode(paths: Iterable[Path]) -> Obj:
    """A field set as FieldsV1 (`{"f:spec": {"f:replicas": {}}}`)."""
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for kind, text in path:
            node = node.setdefault("." if kind == "." else f"{kind}:{text}", {})
    return root


def decode(fields: Obj, prefix: Path = ()) -> FieldSet:
    """FieldsV1 back to a field set."""
    found: FieldSet = set()
    for key, sub in fields.items():
        element: Element = (".", "") if key == "." else (key[0], key[2:])
        path = (*prefix, element)
        if sub:
            found |= decode(sub, path)
        else:
            found.add(path)
    return found


def path_text(path: Path) -> str:
    """A path as the API server prints it: `.spec.containers[name="engine"].image`."""
    out = ""
    for kind, text in path:
        if kind == "f":
            out += f".{text}"
        elif kind == "k":
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(text).items()) + "]"
        elif kind == "v":
            out += f"[={text}]"
    return out


# ---- managedFields entries -----------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _entries(obj: Obj) -> list[Obj]:
    return list((obj.get("metadata") or {}).get("managedFields") or [])


def _who(entry: Obj) -> str:
    who = json.dumps(entry["manager"])
    if entry.get("operation") == "Update":
        who += f" using {entry.get('apiVersion', '')}"
        if entry.get("time"):
            who += f" at {entry['time']}"
    return who


def conflict_message(conflicts: list[tuple[Obj, Path]]) -> str:
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {_who(entry)}: {path_text(path)}"
    by_manager: dict[str, list[str]] = {}
    for entry, path in conflicts:
        by_manager.setdefault(_who(entry), []).append(path_text(path))
    parts = [f"Apply failed with {len(conflicts)} conflicts: "]
    for who in sorted(by_manager):
        parts.append(f"conflicts with {who}:\n" + "".join(f"- {p}\n" for p in sorted(by_manager[who])))
    return "".join(parts).rstrip("\n")


def _set_entries(obj: Obj, entries: list[Obj]) -> None:
    kept = [e for e in entries if e.get("fieldsV1")]
    meta = obj.setdefault("metadata", {})
    if kept:
        meta["managedFields"] = kept
    else:
        meta.pop("managedFields", None)


def _entry(manager: str, operation: str, api_version: str, subresource: str, paths: FieldSet) -> Obj:
    entry = {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": _now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": encode(paths),
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def _same(entry: Obj, manager: str, operation: str, subresource: str) -> bool:
    return (entry.get("manager"), entry.get("operation"), entry.get("subresource", "")) == (
        manager,
        operation,
        subresource,
    )


# ---- writes -----------------------------------------------------------------------------------


def record_update(old: Obj | None, new: Obj, manager: str, subresource: str, schema: Schema) -> None:
    """After a create/update/patch by `manager`: it owns what it set or changed (in `new`, in place)."""
    before = leaves(tracked(old, subresource), schema) if old is not None else {}
    after = leaves(tracked(new, subresource), schema)
    changed = {p for p, value in after.items() if p not in before or before[p] != value}
    removed = set(before) - set(after)
    entries: list[Obj] = []
    mine: FieldSet = set()
    for entry in _entries(old or {}):
        owned = decode(entry.get("fieldsV1") or {})
        if _same(entry, manager, "Update", subresource):
            mine = owned - removed
            continue
        taken = owned & (changed | removed)
        entries.append({**entry, "fieldsV1": encode(owned - taken)} if taken else entry)
    mine |= changed
    if mine:
        entries.append(_entry(manager, "Update", new.get("apiVersion", ""), subresource, mine))
    _set_entries(new, entries)


def _remove(obj: Any, path: Path, schema: Schema) -> None:
    """Delete the field (or list item) at `path` from `obj`, in place."""
    *parent_path, last = path
    if last[0] == ".":
        parent_path, last = parent_path[:-1], parent_path[-1]
    parent = value_at(obj, tuple(parent_path), schema)
    parent_schema = schema
    for kind, text in parent_path:
        parent_schema = parent_schema.field(text) if kind == "f" else parent_schema.items()
    if parent is _MISSING:
        return
    kind, text = last
    if kind == "f" and isinstance(parent, dict):
        parent.pop(text, None)
    elif kind == "k" and isinstance(parent, list):
        parent[:] = [item for item in parent if _item_key(item, parent_schema.map_keys) != text]
    elif kind == "v" and isinstance(parent, list):
        wanted = json.loads(text)
        parent[:] = [item for item in parent if item != wanted]


def merge(live: Any, applied: Any, schema: Schema) -> Any:
    """The applied configuration merged into the live value, by the schema's list and map types."""
    if isinstance(live, dict) and isinstance(applied, dict) and not schema.atomic_map:
        out = dict(live)
        for name, value in applied.items():
            out[name] = merge(live.get(name), value, schema.field(name))
        return out
    if isinstance(live, list) and isinstance(applied, list) and schema.list_type == "map":
        keys, item_schema = schema.map_keys, schema.items()
        out_list = list(live)
        for item in applied:
            index = next((i for i, x in enumerate(out_list) if _item_key(x, keys) == _item_key(item, keys)), None)
            if index is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[index] = merge(out_list[index], item, item_schema)
        return out_list
    if isinstance(live, list) and isinstance(applied, list) and schema.list_type == "set":
        return list(live) + [item for item in applied if item not in live]
    return copy.deepcopy(applied)


def apply(live: Obj | None, applied: Obj, manager: str, *, force: bool, schema: Schema) -> Obj:
    """The object after `manager` applies `applied` to `live` (None: create); raises ApplyConflictError."""
    current = copy.deepcopy(live) if live is not None else {}
    applied_values = leaves(tracked(applied, ""), schema)
    current_values = leaves(tracked(current, ""), schema) if current else {}
    wanted = set(applied_values)
    entries = _entries(current)
    conflicts: list[tuple[Obj, Path]] = []
    previous: FieldSet = set()
    others: list[tuple[Obj, FieldSet]] = []
    for entry in entries:
        owned = decode(entry.get("fieldsV1") or {})
        if _same(entry, manager, "Apply", ""):
            previous = owned
            continue
        others.append((entry, owned))
        if entry.get("subresource"):
            continue  # status is not part of a main-resource apply
        for path in sorted(wanted & owned):
            if path[-1][0] != "." and current_values.get(path, _MISSING) != applied_values[path]:
                conflicts.append((entry, path))
    if conflicts and not force:
        raise ApplyConflictError(conflicts)
    taken = {p for _, p in conflicts}
    owned_by_others = set().union(*(owned - taken for _, owned in others)) if others else set()
    for path in sorted(previous - wanted - owned_by_others, key=len, reverse=True):
        _remove(current, path, schema)
    new = merge(current, {k: v for k, v in applied.items() if k != "status"}, schema)
    kept = [{**entry, "fieldsV1": encode(owned - taken)} for entry, owned in others]
    kept.append(_entry(manager, "Apply", applied.get("apiVersion", ""), "", wanted))
    _set_entries(new, kept)
    return dict(new)
