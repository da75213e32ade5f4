"""`KubeEmulator`: kmock's KubernetesEmulator with the API-server behaviour controllers rely on.

kmock's emulator keeps objects in memory and serves list/watch/fetch over real
HTTP; on writes it only merges dicts. This subclass replaces the write path with
what the API server does:

- `metadata.uid`, `creationTimestamp`, `generation` (1, then +1 on changes outside
  metadata and status) and `resourceVersion` (one counter, bumped on every write);
- the `status` subresource: `PATCH .../status` changes only status, a main-resource
  write never changes status (for kinds registered with a status subresource);
- optimistic concurrency: a write carrying a stale `metadata.resourceVersion` gets
  409 Conflict, a failed JSON-patch `test` gets 422;
- merge, strategic-merge (as merge) and JSON patches; PUT replaces;
- finalizers and `deletionTimestamp`; `generateName`;
- list and watch with `labelSelector` (equality, `!=`, existence) and a real list
  resourceVersion;
- garbage collection: deleting an owner deletes its dependents (by ownerReferences
  uid), as the cluster's garbage collector does in the background.

Mutating HTTP requests are answered by the emulator itself (kmock reactions are
not consulted for them); reads go through kmock's normal machinery.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import attrs
from kmock import KubernetesEmulator, ResourceInfo, resource
from kmock._internal import enums, rendering

from tests.kube.patching import JSON_PATCH, PatchTestFailedError, json_patch, merge_patch

Obj = dict[str, Any]


class ApiError(Exception):
    """An API-server error: becomes a `Status` object with this code and reason."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def status(self) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "code": self.code,
            "reason": self.reason,
            "message": self.message,
        }


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def matches_labels(labels: dict[str, str], selector: str | None) -> bool:
    """A label selector in its string form: `a=b,c!=d,e,!f`."""
    if not selector:
        return True
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _spec_part(obj: Obj) -> Obj:
    """What `generation` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in {"metadata", "status"}}


@attrs.define(kw_only=True)
class KubeEmulator(KubernetesEmulator):
    """See the module docstring. Register kinds with `register()` or `register_builtin_kinds()`."""

    _revision: int = attrs.field(default=0, init=False)
    _gc_enabled: bool = attrs.field(default=True)

    # ---- kinds -------------------------------------------------------------------------

    def register(
        self,
        group: str,
        version: str,
        plural: str,
        kind: str,
        *,
        namespaced: bool = True,
        status: bool = False,
        short_names: tuple[str, ...] = (),
        categories: tuple[str, ...] = (),
    ) -> None:
        """Serve a kind in discovery (kopf finds resources this way)."""
        self.resources[resource(group=group, version=version, plural=plural)] = ResourceInfo(
            kind=kind,
            singular=kind.lower(),
            namespaced=namespaced,
            verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
            shortnames=set(short_names),
            categories=set(categories),
            subresources={"status"} if status else set(),
        )

    def register_builtin_kinds(self) -> None:
        """The built-in kinds the kubetrader operators create or read."""
        for plural, kind, status in (
            ("pods", "Pod", True),
            ("configmaps", "ConfigMap", False),
            ("secrets", "Secret", False),
            ("services", "Service", True),
            ("events", "Event", False),
            ("persistentvolumeclaims", "PersistentVolumeClaim", True),
            ("serviceaccounts", "ServiceAccount", False),
        ):
            self.register("", "v1", plural, kind, status=status)
        self.register("", "v1", "namespaces", "Namespace", namespaced=False, status=True)
        self.register("batch", "v1", "jobs", "Job", status=True)
        self.register("apps", "v1", "deployments", "Deployment", status=True)
        self.register("apps", "v1", "statefulsets", "StatefulSet", status=True)
        self.register("events.k8s.io", "v1", "events", "Event")
        self.register(
            "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False
        )

    def register_crd(self, crd: Obj) -> None:
        """Serve a custom resource as its CRD declares it (names, scope, status subresource)."""
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            self.register(
                spec["group"],
                version["name"],
                names["plural"],
                names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                status="status" in (version.get("subresources") or {}),
                short_names=tuple(names.get("shortNames", [])),
                categories=tuple(names.get("categories", [])),
            )

    def _has_status(self, res: resource) -> bool:
        info = self.resources._resources.get(res)
        return info is not None and "status" in info.subresources

    # ---- the write path ------------------------------------------------------------------

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _current(self, res: resource, namespace: str | None, name: str) -> Obj | None:
        key = (res, namespace, name)
        if key not in self.objects._objects or self.objects._objects[key].deleted:
            return None
        return copy.deepcopy(self.objects._objects[key].last.raw)

    async def _store(self, res: resource, namespace: str | None, name: str, obj: Obj, event: str) -> None:
        key = (res, namespace, name)
        store = self.objects._objects
        if key in store:
            store[key].create(obj)  # a new version in the object's history
        else:
            self.objects[res, namespace, name] = obj
        await self._buses[res].put({"type": event, "object": copy.deepcopy(obj)})

    async def _remove(self, res: resource, namespace: str | None, name: str, obj: Obj) -> None:
        self.objects._objects[(res, namespace, name)].delete()
        await self._buses[res].put({"type": "DELETED", "object": copy.deepcopy(obj)})
        if self._gc_enabled and obj["metadata"].get("uid"):
            await self._collect_dependents({obj["metadata"]["uid"]})

    async def create_object(self, res: resource, namespace: str | None, body: Obj) -> Obj:
        async with self._lock:
            return await self._create(res, namespace, body)

    async def _create(self, res: resource, namespace: str | None, body: Obj) -> Obj:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        namespace = namespace or meta.get("namespace")
        if namespace and meta.get("namespace") not in (None, namespace):
            raise ApiError(400, "BadRequest", "the namespace of the object does not match the namespace of the URL")
        if self._current(res, namespace, name) is not None:
            raise ApiError(409, "AlreadyExists", f'{res.plural} "{name}" already exists')
        if namespace:
            meta["namespace"] = namespace
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            generation=1,
            resourceVersion=self._next_revision(),
        )
        meta.pop("deletionTimestamp", None)
        if self._has_status(res):
            obj.pop("status", None)  # status is set through the subresource only
        await self._store(res, namespace, name, obj, "ADDED")
        return obj

    async def update_object(
        self,
        res: resource,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        content_type: str = "application/merge-patch+json",
        replace: bool = False,
    ) -> Obj:
        """PATCH (or PUT with `replace`) an object or its status subresource."""
        async with self._lock:
            current = self._current(res, namespace, name)
            if current is None:
                raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
            if replace:
                wanted = copy.deepcopy(body)
            elif content_type.startswith(JSON_PATCH):
                try:
                    wanted = json_patch(current, body)
                except PatchTestFailedError as exc:
                    raise ApiError(422, "Invalid", f"the server rejected our request: test failed: {exc}") from None
            else:
                wanted = merge_patch(current, body)
            sent_version = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
            if sent_version and sent_version != current["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {res.plural} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                )
            new = self._merge_allowed(res, current, wanted, subresource)
            if new == current:
                return current  # a no-op write changes nothing, not even resourceVersion
            meta = new["metadata"]
            if _spec_part(new) != _spec_part(current):
                meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
            meta["resourceVersion"] = self._next_revision()
            if meta.get("deletionTimestamp") and not meta.get("finalizers"):
                await self._remove(res, namespace, name, new)
            else:
                await self._store(res, namespace, name, new, "MODIFIED")
            return new

    def _merge_allowed(self, res: resource, current: Obj, wanted: Obj, subresource: str | None) -> Obj:
        """Keep what this endpoint may not change: identity always, status or the rest per subresource."""
        if subresource == "status":
            new = copy.deepcopy(current)
            if "status" in wanted:
                new["status"] = wanted["status"]
            else:
                new.pop("status", None)
            return new
        new = copy.deepcopy(wanted)
        if self._has_status(res):
            if "status" in current:
                new["status"] = current["status"]
            else:
                new.pop("status", None)
        for field in ("uid", "creationTimestamp", "generation", "resourceVersion", "namespace", "name"):
            if field in current["metadata"]:
                new["metadata"][field] = current["metadata"][field]
        if current["metadata"].get("deletionTimestamp"):
            new["metadata"]["deletionTimestamp"] = current["metadata"]["deletionTimestamp"]
        return new

    async def delete_object(self, res: resource, namespace: str | None, name: str) -> Obj:
        async with self._lock:
            return await self._delete(res, namespace, name)

    async def _delete(self, res: resource, namespace: str | None, name: str) -> Obj:
        current = self._current(res, namespace, name)
        if current is None:
            raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
        if current["metadata"].get("finalizers"):
            if not current["metadata"].get("deletionTimestamp"):
                current["metadata"]["deletionTimestamp"] = _now()
                current["metadata"]["resourceVersion"] = self._next_revision()
                await self._store(res, namespace, name, current, "MODIFIED")
            return current
        await self._remove(res, namespace, name, current)
        return current

    # ---- garbage collection ----------------------------------------------------------------

    def _live_uids(self) -> set[str]:
        return {
            obj.last.raw["metadata"]["uid"]
            for obj in self.objects._objects.values()
            if not obj.deleted and "uid" in obj.last.raw.get("metadata", {})
        }

    async def _collect_dependents(self, gone: set[str]) -> None:
        """Delete every object owned by one of the `gone` uids (recursively, via `_remove`)."""
        for (res, namespace, name), obj in list(self.objects._objects.items()):
            if obj.deleted:
                continue
            owners = {ref.get("uid") for ref in obj.last.raw.get("metadata", {}).get("ownerReferences", [])}
            if owners & gone and self._current(res, namespace, name) is not None:
                await self._delete(res, namespace, name)

    async def collect_garbage(self) -> int:
        """One pass of the garbage collector: delete objects all of whose owners are gone.

        Returns how many objects were deleted.
        """
        deleted = 0
        async with self._lock:
            live = self._live_uids()
            for (res, namespace, name), obj in list(self.objects._objects.items()):
                if obj.deleted:
                    continue
                refs = obj.last.raw.get("metadata", {}).get("ownerReferences", [])
                if refs and not any(ref.get("uid") in live for ref in refs):
                    await self._delete(res, namespace, name)
                    deleted += 1
        return deleted

    # ---- reads ---------------------------------------------------------------------------

    def select(
        self, res: resource, namespace: str | None = None, label_selector: str | None = None, name: str | None = None
    ) -> list[Obj]:
        """Live objects of a kind (all namespaces when `namespace` is None), filtered like a list call."""
        found = []
        for (obj_res, obj_namespace, obj_name), obj in self.objects._objects.items():
            if obj.deleted or obj_res != res:
                continue
            if namespace is not None and obj_namespace != namespace:
                continue
            if name is not None and obj_name != name:
                continue
            raw = obj.last.raw
            if matches_labels(raw.get("metadata", {}).get("labels") or {}, label_selector):
                found.append(copy.deepcopy(raw))
        return found

    @staticmethod
    def _field_name(request: rendering.Request) -> str | None:
        selector = request.params.get("fieldSelector", "")
        for term in selector.split(","):
            if term.startswith("metadata.name="):
                return term.split("=", 1)[1]
        return request.name

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        if request.resource not in self._get_resources():
            raise ApiError(404, "NotFound", f"the server could not find the requested resource {request.resource}")
        async with self._lock:
            items = self.select(
                request.resource, request.namespace, request.params.get("labelSelector"), self._field_name(request)
            )
            revision = str(self._revision)
        info = self.resources._resources.get(request.resource)
        kind = info.kind if info is not None and info.kind else "Object"
        return {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"resourceVersion": revision}, "items": items}

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""  # send the headers now, even if nothing happens for a while
        assert request.resource is not None
        selector = request.params.get("labelSelector")
        name = self._field_name(request)
        since = request.params.get("resourceVersion")
        async with self._lock:
            existing = self.select(request.resource, request.namespace, selector, name)
        for obj in existing:
            if not since or int(obj["metadata"]["resourceVersion"]) > int(since or 0):
                yield {"type": "ADDED", "object": obj}
        async for event in self._buses[request.resource]:
            meta = event.get("object", {}).get("metadata", {})
            if request.namespace is not None and meta.get("namespace") != request.namespace:
                continue
            if name is not None and meta.get("name") != name:
                continue
            if matches_labels(meta.get("labels") or {}, selector):
                yield event

    # ---- HTTP ----------------------------------------------------------------------------

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        method = str(getattr(request.method, "value", request.method)).upper()
        if request.resource is None or method not in {"POST", "PATCH", "PUT", "DELETE"}:
            return await super()._handle(request)
        try:
            res = request.resource
            if method == "POST" and request.name is None:
                obj = await self.create_object(res, request.namespace, request.data or {})
                return aiohttp.web.json_response(obj, status=201)
            if request.name is None:
                raise ApiError(405, "MethodNotAllowed", f"{method} needs an object name")
            if method == "DELETE":
                obj = await self.delete_object(res, request.namespace, request.name)
                return aiohttp.web.json_response(obj)
            content_type = request.headers.get("Content-Type", "application/merge-patch+json")
            data = request.data if request.data is not None else json.loads(request.text or "null")
            obj = await self.update_object(
                res,
                request.namespace,
                request.name,
                data,
                subresource=request.subresource,
                content_type=content_type,
                replace=method == "PUT",
            )
            return aiohttp.web.json_response(obj)
        except ApiError as exc:
            return aiohttp.web.json_response(exc.status(), status=exc.code)


# kmock routes actions by enums; re-exported for tests that build requests by hand.
__all__ = ["ApiError", "KubeEmulator", "enums", "matches_labels"]
