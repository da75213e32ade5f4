"""`/openapi/v2` and `/openapi/v3`: the schemas kubectl validates with and `kubectl explain` reads.

Built-in kinds come from Kubernetes' own schemas as the `kubernetes-validate` package ships them
for each release (JSON Schema converted from the API server's OpenAPI: `$ref: #/$defs/...`,
nullable types as `[t, "null"]`); they are turned back into OpenAPI here, never hand-written.
Custom resources come from their CRD's `openAPIV3Schema`, named and wrapped as the
apiextensions-apiserver publishes them (`io.kubetrader.v1alpha1.Backtest`, `metadata` a
reference to ObjectMeta, `x-kubernetes-group-version-kind`).

kubectl 1.37 reads `/openapi/v3` (a map of `api/v1`, `apis/<group>/<version>` to
`serverRelativeURL`s with a content hash) and then the group-version document it needs. Before
`kubectl apply` it checks whether the PATCH operation of the kind's path takes the
`fieldValidation` query parameter (kubectl `resource/query_param_verifier_v3.go`
`supportsQueryParamV3`); if it does, kubectl sends `fieldValidation=Strict` and leaves
validation to the server, as against a real 1.27+ API server. So every path here carries the
real operations with their `x-kubernetes-group-version-kind` and query parameters.

`/openapi/v2` is Swagger 2.0 JSON. kubectl asks it only as protobuf
(`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`) and only when v3 fails; JSON is
served to clients that accept it, anything else gets 406 (what a server does for a media type it
cannot produce), after which kubectl would try its legacy path.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
from kmock import ResourceInfo, resource

from tests.kube.apply import Schema
from tests.kube.discovery import KUBERNETES_VERSION

Obj = dict[str, Any]
V3_REF = "#/components/schemas/"
V2_REF = "#/definitions/"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
METADATA_DESCRIPTION = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
# The query parameters of a PATCH as kube-apiserver documents them (apiserver endpoints/installer.go).
PATCH_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation", "force")
WRITE_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation")
LIST_PARAMETERS = (
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
)
DELETE_PARAMETERS = ("dryRun", "gracePeriodSeconds", "propagationPolicy")


@functools.cache
def builtin_definitions(version: str = KUBERNETES_VERSION) -> dict[str, Obj]:
    """Kubernetes' own schema definitions of `version` (x.y.z), by OpenAPI name, as JSON Schema."""
    minor = ".".join(version.split(".")[:2])
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{minor}.0-local"
    if not root.is_dir():
        raise LookupError(f"kubernetes-validate ships no schemas for Kubernetes {minor}")
    return dict(json.loads((root / "_definitions.json").read_text())["$defs"])


def _definition_for(definitions: Mapping[str, Obj], group: str, version: str, kind: str) -> str:
    for name, schema in definitions.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            if (gvk.get("group", ""), gvk.get("version"), gvk.get("kind")) == (group, version, kind):
                return name
    raise LookupError(f"no schema for {group or 'core'}/{version} {kind} in Kubernetes {KUBERNETES_VERSION}")


def _to_openapi(schema: Any, ref_prefix: str) -> Any:
    """JSON Schema (as kubernetes-validate writes it) -> OpenAPI schema, with refs under `ref_prefix`."""
    if isinstance(schema, list):
        return [_to_openapi(item, ref_prefix) for item in schema]
    if not isinstance(schema, dict):
        return schema
    branches = schema.get("oneOf")
    if branches and all(set(b) == {"type"} for b in branches):
        # IntOrString / Quantity: published as a string with a format (k8s.io/kube-openapi common.go).
        types = {t for b in branches for t in ([b["type"]] if isinstance(b["type"], str) else b["type"])}
        out: Obj = {k: v for k, v in schema.items() if k != "oneOf"}
        out["type"] = "string"
        out["format"] = "int-or-string" if "integer" in types else "quantity"
        return out
    out = {}
    for key, value in schema.items():
        if key == "$ref":
            out["$ref"] = ref_prefix + value.rsplit("/", 1)[-1]
        elif key == "type" and isinstance(value, list):
            real = [t for t in value if t != "null"]
            if real:
                out["type"] = real[0]
        elif key == "enum" and isinstance(value, list):
            out["enum"] = [v for v in value if v is not None]
        elif key in {"properties", "patternProperties"}:
            out[key] = {name: _to_openapi(sub, ref_prefix) for name, sub in value.items()}
        else:
            out[key] = _to_openapi(value, ref_prefix)
    if "$ref" in out and len(out) > 1:
        # A $ref's siblings are ignored in OpenAPI 3.0: the API server wraps it in allOf.
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _refs(schema: Any) -> Iterable[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                yield value.rsplit("/", 1)[-1]
            else:
                yield from _refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _refs(item)


def _closure(definitions: Mapping[str, Obj], names: Iterable[str]) -> list[str]:
    """`names` and every definition they reference, transitively."""
    seen: list[str] = []
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or name not in definitions:
            continue
        seen.append(name)
        todo.extend(_refs(definitions[name]))
    return sorted(seen)


def _builtin_schema(name: str, ref_prefix: str) -> Obj:
    schema = copy.deepcopy(builtin_definitions()[name])
    for field in ("apiVersion", "kind"):  # kubernetes-validate pins these with an enum; the API server does not
        schema.get("properties", {}).get(field, {}).pop("enum", None)
    return dict(_to_openapi(schema, ref_prefix))


def crd_schema_name(group: str, version: str, kind: str) -> str:
    """The OpenAPI name the apiextensions-apiserver gives a custom kind: reversed group, version, kind."""
    return ".".join([*reversed(group.split(".")), version, kind])


def _crd_schema(crd: Obj, version: Obj, ref_prefix: str) -> Obj:
    spec = crd["spec"]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    props = schema.setdefault("properties", {})
    props["metadata"] = {"allOf": [{"$ref": ref_prefix + OBJECT_META}], "description": METADATA_DESCRIPTION}
    for field in ("apiVersion", "kind"):
        props.setdefault(field, {"type": "string"})
    schema["x-kubernetes-group-version-kind"] = [
        {"group": spec["group"], "version": version["name"], "kind": spec["names"]["kind"]}
    ]
    return schema


class OpenAPI:
    """The documents for the kinds the emulator serves; rebuilt when a kind is registered."""

    def __init__(self) -> None:
        self._crds: dict[tuple[str, str, str], tuple[Obj, Obj]] = {}  # (group, version, kind) -> (crd, version)
        self._v3: dict[str, Obj] = {}
        self._field_schemas: dict[tuple[str, str, str], Schema] = {}

    def add_crd(self, crd: Obj) -> None:
        for version in crd["spec"]["versions"]:
            key = (crd["spec"]["group"], version["name"], crd["spec"]["names"]["kind"])
            self._crds[key] = (crd, version)
            self._field_schemas.pop(key, None)
        self._v3.clear()

    def invalidate(self) -> None:
        self._v3.clear()

    def field_schema(self, group: str, version: str, kind: str) -> Schema:
        """The schema server-side apply reads list and map types from (the CRD's, or Kubernetes' own)."""
        key = (group, version, kind)
        if key not in self._field_schemas:
            self._field_schemas[key] = self._build_field_schema(group, version, kind)
        return self._field_schemas[key]

    def _build_field_schema(self, group: str, version: str, kind: str) -> Schema:
        definitions = builtin_definitions()
        crd = self._crds.get((group, version, kind))
        if crd is None:
            return Schema(definitions[_definition_for(definitions, group, version, kind)], definitions)
        schema = copy.deepcopy(crd[1]["schema"]["openAPIV3Schema"])
        schema.setdefault("properties", {})["metadata"] = {"$ref": V3_REF + OBJECT_META}
        return Schema(schema, definitions)

    # ---- schemas ------------------------------------------------------------------------

    def _schemas(self, kinds: Iterable[tuple[resource, ResourceInfo]], ref_prefix: str) -> tuple[Obj, dict[str, str]]:
        """Component schemas for `kinds` (and what they reference) and each kind's schema name."""
        definitions = builtin_definitions()
        names: dict[str, str] = {}
        custom: Obj = {}
        builtin: list[str] = []
        for res, info in kinds:
            assert res.group is not None and res.version is not None and info.kind is not None
            crd = self._crds.get((res.group, res.version, info.kind))
            if crd is not None:
                name = crd_schema_name(res.group, res.version, info.kind)
                custom[name] = _crd_schema(crd[0], crd[1], ref_prefix)
                builtin.append(OBJECT_META)
            else:
                name = _definition_for(definitions, res.group, res.version, info.kind)
                builtin.append(name)
            names[info.kind] = name
        schemas = {name: _builtin_schema(name, ref_prefix) for name in _closure(definitions, builtin)}
        schemas.update(custom)
        return schemas, names

    # ---- paths --------------------------------------------------------------------------

    @staticmethod
    def _collection_path(res: resource, info: ResourceInfo) -> str:
        prefix = "/api/v1" if res.group == "" else f"/apis/{res.group}/{res.version}"
        return f"{prefix}/namespaces/{{namespace}}/{res.plural}" if info.namespaced else f"{prefix}/{res.plural}"

    @staticmethod
    def _operation(
        res: resource, info: ResourceInfo, action: str, verb: str, params: Iterable[str], *, schema_ref: str, v3: bool
    ) -> Obj:
        def param(name: str) -> Obj:
            if v3:
                return {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            return {"name": name, "in": "query", "type": "string", "uniqueItems": True}

        if v3:
            ok: Obj = {"description": "OK", "content": {"application/json": {"schema": {"$ref": schema_ref}}}}
        else:
            ok = {"description": "OK", "schema": {"$ref": schema_ref}}
        return {
            "operationId": f"{verb}{info.kind}",
            "parameters": [param(p) for p in params],
            "responses": {"200": ok},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": {"group": res.group, "version": res.version, "kind": info.kind},
        }

    def _paths(self, kinds: Iterable[tuple[resource, ResourceInfo]], names: Mapping[str, str], v3: bool) -> Obj:
        ref_prefix = V3_REF if v3 else V2_REF
        paths: Obj = {}
        for res, info in kinds:
            assert info.kind is not None
            ref = ref_prefix + names[info.kind]
            collection = self._collection_path(res, info)

            op = functools.partial(self._operation, res, info, schema_ref=ref, v3=v3)

            paths[collection] = {
                "get": op("list", "list", LIST_PARAMETERS),
                "post": op("post", "create", WRITE_PARAMETERS),
            }
            item = {
                "get": op("get", "read", ()),
                "put": op("put", "replace", WRITE_PARAMETERS),
                "patch": op("patch", "patch", PATCH_PARAMETERS),
                "delete": op("delete", "delete", DELETE_PARAMETERS),
            }
            paths[collection + "/{name}"] = item
            if "status" in info.subresources:
                paths[collection + "/{name}/status"] = {
                    "get": op("get", "readStatus", ()),
                    "put": op("put", "replaceStatus", WRITE_PARAMETERS),
                    "patch": op("patch", "patchStatus", PATCH_PARAMETERS),
                }
        return paths

    # ---- documents ------------------------------------------------------------------------

    @staticmethod
    def _by_group_version(kinds: Mapping[resource, ResourceInfo]) -> dict[str, list[tuple[resource, ResourceInfo]]]:
        grouped: dict[str, list[tuple[resource, ResourceInfo]]] = {}
        for res, info in kinds.items():
            key = "api/v1" if res.group == "" else f"apis/{res.group}/{res.version}"
            grouped.setdefault(key, []).append((res, info))
        return grouped

    def v3_document(self, kinds: Mapping[resource, ResourceInfo], group_version: str) -> Obj | None:
        """The OpenAPI 3.0 document of one group-version (`api/v1`, `apis/batch/v1`), or None."""
        if group_version not in self._v3:
            served = self._by_group_version(kinds).get(group_version)
            if not served:
                return None
            schemas, names = self._schemas(served, V3_REF)
            self._v3[group_version] = {
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": f"v{KUBERNETES_VERSION}"},
                "paths": self._paths(served, names, v3=True),
                "components": {"schemas": schemas},
            }
        return self._v3[group_version]

    def v3_root(self, kinds: Mapping[resource, ResourceInfo]) -> Obj:
        """`GET /openapi/v3`: where each group-version's document is, with its hash for caching."""
        paths = {}
        for group_version in self._by_group_version(kinds):
            document = self.v3_document(kinds, group_version)
            digest = hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest().upper()
            paths[group_version] = {"serverRelativeURL": f"/openapi/v3/{group_version}?hash={digest}"}
        return {"paths": paths}

    def v2_document(self, kinds: Mapping[resource, ResourceInfo]) -> Obj:
        """`GET /openapi/v2`: one Swagger 2.0 document for every served kind."""
        every = list(kinds.items())
        schemas, names = self._schemas(every, V2_REF)
        return {
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": f"v{KUBERNETES_VERSION}"},
            "paths": self._paths(every, names, v3=False),
            "definitions": schemas,
        }


def accepts_json(accept: str) -> bool:
    """Whether an Accept header admits a JSON answer."""
    if not accept:
        return True
    types = {part.split(";")[0].strip() for part in accept.split(",")}
    return bool(types & {"application/json", "*/*", "application/*"})
