"""`KubeEmulator`: kmock's KubernetesEmulator with the API-server behaviour controllers rely on.

kmock's emulator keeps objects in memory and serves list/watch/fetch over real
HTTP; on writes it only merges dicts. This subclass replaces the write path with
what the API server does:

- `metadata.uid`, `creationTimestamp`, `generation` (1, then +1 on changes outside
  metadata and status) and `resourceVersion` (one counter, bumped on every write,
  deletions included);
- the `status` subresource: `PATCH .../status` changes only status, a main-resource
  write never changes status (for kinds registered with a status subresource);
- optimistic concurrency: a write carrying a stale `metadata.resourceVersion` gets
  409 Conflict, a failed JSON-patch `test` gets 422;
- merge, strategic-merge (as merge) and JSON patches; PUT replaces;
- finalizers and `deletionTimestamp`; `generateName` (5 random characters from the
  API server's alphabet, retried on a collision as the API server does);
- list and watch with `labelSelector` (equality, `!=`, existence), a
  `metadata.name` field selector and a real list resourceVersion; a watch from a
  `resourceVersion` replays what changed since from a bounded watch cache (or ends
  with `410 Gone` when that is older than the cache, and the client re-lists), and
  ends after the client's `timeoutSeconds`;
- admission of every write (tests.kube.admission: field validation, pruning, defaulting,
  schema and CEL, metadata, namespaces, immutable fields) and garbage collection after the
  owner's DELETE returned, with Background, Foreground and Orphan propagation (tests.kube.gc).

It scales to thousands of objects: live objects are indexed by resource, namespace
and name (and by uid and owner uid), so fetches, patches, deletes and garbage
collection never scan the store, and a list scans only its kind (and namespace).
Requests on resources (reads included) are answered by the emulator itself: kmock's
reaction matching walks its whole request log on every request, which is quadratic
over a long run, so kmock's request log is trimmed to the last `request_log_limit`
requests, and kmock's per-object history to the last `history_limit` versions (a
deleted object is dropped). Discovery and any other path go through kmock's normal
machinery, and so does everything once a test adds a kmock reaction of its own
(`emulator["get /..."] << ...`), so reactions can still override reads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime as dt
import functools
import json
import math
import secrets
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

import aiohttp.web
import attrs
import yaml
from kmock import KubernetesEmulator, ResourceInfo, resource
from kmock._internal import enums, parsing, rendering
from kmock._internal.k8s import KubernetesError

from tests.kube import apply, defaulting, discovery, events, openapi, paging, scale, selectors, tables
from tests.kube.access import RBAC_KINDS, AccessControl
from tests.kube.admission import Admission, Kind, Write, collect_warnings, field_validation, warning_headers
from tests.kube.field_errors import ApiError, Obj
from tests.kube.gc import GarbageCollector, default_policy, deletion_finalizer, propagation_policy
from tests.kube.logs import ContainerLogs, LogError
from tests.kube.openapi import OpenAPI
from tests.kube.patching import JSON_PATCH, PatchTestFailedError, json_patch, merge_patch
from tests.kube.selectors import matches_labels

_kmock_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock 0.8's URL parser, with the Namespace kind's own paths.

    kmock reads `/api/v1/namespaces` as a namespace with no name (and crashes) and
    `/api/v1/namespaces/default` as the namespace `default` with no resource, so `kubectl get
    namespaces` and `kubectl get namespace default` failed with 500. Namespaces are the one kind
    whose collection is `namespaces` itself: `/api/v1/namespaces[/{name}[/status|/finalize]]`.
    """
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and (len(parts) <= 4 or parts[4:] in (["status"], ["finalize"])):
        name = parts[3] if len(parts) > 3 else None
        subresource = parts[4] if len(parts) > 4 else None
        return parsing.ParsedPath("", "v1", "namespaces", None, name, subresource)
    return _kmock_parse_path(path)


parsing.parse_path = _parse_path  # rendering.Request parses every request through this module attribute


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# What the API server appends to `generateName` (k8s.io/apimachinery/pkg/util/rand: no vowels,
# no easily confused characters), and how many times it tries again when the name is taken.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
NAME_SUFFIX_LENGTH = 5
GENERATE_NAME_ATTEMPTS = 8

Key = tuple[resource, str | None, str]
SERVED_MEDIA_TYPES = ("application/json", "application/yaml")
UNSERVED_MEDIA_TYPES = frozenset({"application/vnd.kubernetes.protobuf", "application/cbor"})


class WatchCache:
    """The recent changes of one resource, in resourceVersion order, for watches to stream and replay.

    Bounded: when full, the oldest event is dropped and a watch resuming from before it is too old
    (`since` returns None; the API server answers such a watch with 410 Gone).
    """

    def __init__(self, size: int) -> None:
        self._events: collections.deque[tuple[int, Obj]] = collections.deque()
        self._size = size
        self._evicted = 0  # the resourceVersion of the newest event dropped so far
        self._changed = asyncio.Event()

    def append(self, revision: int, event: Obj) -> None:
        self._events.append((revision, event))
        if len(self._events) > self._size:
            self._evicted = self._events.popleft()[0]
        self._changed.set()
        self._changed = asyncio.Event()  # watchers already waiting hold the one just set

    def since(self, revision: int) -> list[tuple[int, Obj]] | None:
        """Events after `revision`, oldest first; None when some of them were already dropped."""
        if revision < self._evicted:
            return None
        newer: list[tuple[int, Obj]] = []
        for item in reversed(self._events):
            if item[0] <= revision:
                break
            newer.append(item)
        newer.reverse()
        return newer

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next append (take it before reading with `since`, then wait on it)."""
        return self._changed

    def __len__(self) -> int:
        return len(self._events)


def _spec_part(obj: Obj) -> Obj:
    """What `generation` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in {"metadata", "status"}}


def _random_suffix() -> str:
    return "".join(secrets.choice(NAME_ALPHABET) for _ in range(NAME_SUFFIX_LENGTH))


def _is_true(value: str | None) -> bool:
    return (value or "").lower() in {"true", "1"}


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(
    method: Callable[Concatenate[KubeEmulator, _P], _R],
) -> Callable[Concatenate[KubeEmulator, _P], Awaitable[_R]]:
    """The async entry of a synchronous write: the same call under the store's lock (one writer at a time)."""

    @functools.wraps(method)
    async def locked(self: KubeEmulator, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        async with self._lock:
            return method(self, *args, **kwargs)

    return locked


@attrs.define(kw_only=True)
class KubeEmulator(KubernetesEmulator):
    """See the module docstring. Register kinds with `register()` or `register_builtin_kinds()`."""

    _revision: int = attrs.field(default=0, init=False)
    # The garbage collector runs this long after a deletion (0: at the next turn of the loop);
    # with `gc_enabled=False` only when a test calls `collect_garbage()`.
    _gc_enabled: bool = attrs.field(default=True)
    gc_delay_seconds: float = attrs.field(default=0.05)
    # What `generateName` appends (replaceable, e.g. to force a collision in a test).
    name_suffix: Callable[[], str] = attrs.field(default=_random_suffix)
    # kmock's per-object version history: at most this many versions; a deleted object is dropped.
    history_limit: int = attrs.field(default=2)
    # kmock's request log (kept for assertions and for its reaction matching): the last N requests.
    request_log_limit: int = attrs.field(default=200)
    # Events kept per resource for watches resuming from a resourceVersion.
    watch_cache_size: int = attrs.field(default=1024)
    # How often an idle watch checks whether its client went away.
    watch_idle_check_seconds: float = attrs.field(default=5.0)
    # Admission of every write (tests.kube.admission); off only to measure what it costs.
    admission: Admission = attrs.field(factory=Admission)
    admission_enabled: bool = attrs.field(default=True)
    # Authentication and RBAC of every HTTP request, and the record of decisions (tests/kube/access.py).
    access: AccessControl = attrs.field(factory=AccessControl)

    # live objects: resource -> namespace -> name -> object (never mutated in place once stored)
    _live: dict[resource, dict[str | None, dict[str, Obj]]] = attrs.field(factory=dict, init=False)
    _by_uid: dict[str, Key] = attrs.field(factory=dict, init=False)
    _owned: dict[str, set[Key]] = attrs.field(factory=dict, init=False)  # owner uid -> dependents
    _watch_caches: dict[resource, WatchCache] = attrs.field(factory=dict, init=False)
    _delegated: set[rendering.Request] = attrs.field(factory=set, init=False)  # in kmock's hands now
    gc: GarbageCollector = attrs.field(
        init=False,
        default=attrs.Factory(
            lambda self: GarbageCollector(self, delay=self.gc_delay_seconds, enabled=self._gc_enabled), takes_self=True
        ),
    )
    openapi: OpenAPI = attrs.field(factory=OpenAPI, init=False)
    logs: ContainerLogs = attrs.field(factory=ContainerLogs, init=False)  # pods/log (the kubelet writes)
    _printer_columns: dict[resource, list[Obj]] = attrs.field(factory=dict, init=False)  # CRDs' columns
    _scale_paths: dict[resource, scale.ScalePaths] = attrs.field(factory=dict, init=False)  # kinds serving /scale

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
        subresources: tuple[str, ...] = (),
    ) -> None:
        """Serve a kind in discovery (kopf and kubectl find resources this way)."""
        self.resources[resource(group=group, version=version, plural=plural)] = ResourceInfo(
            kind=kind,
            singular=kind.lower(),
            namespaced=namespaced,
            verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
            shortnames=set(short_names),
            categories=set(categories),
            subresources={"status", *subresources} if status else set(subresources),
        )
        self.openapi.invalidate()

    def register_builtin_kinds(self) -> None:
        """The built-in kinds the kubetrader operators create or read, with the real server's short names."""
        for plural, kind, status, short, categories in (
            ("pods", "Pod", True, ("po",), ("all",)),
            ("configmaps", "ConfigMap", False, ("cm",), ()),
            ("secrets", "Secret", False, (), ()),
            ("services", "Service", True, ("svc",), ("all",)),
            ("events", "Event", False, ("ev",), ()),
            ("persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), ()),
            ("serviceaccounts", "ServiceAccount", False, ("sa",), ()),
        ):
            # pods/log: what the kubelet stand-in captured (tests.kube.logs)
            extra = ("log",) if plural == "pods" else ()
            self.register(
                "", "v1", plural, kind, status=status, short_names=short, categories=categories, subresources=extra
            )
        self.register("", "v1", "namespaces", "Namespace", namespaced=False, status=True, short_names=("ns",))
        self.register("batch", "v1", "jobs", "Job", status=True, categories=("all",))
        for plural, kind, short_name in (
            ("deployments", "Deployment", "deploy"),
            ("statefulsets", "StatefulSet", "sts"),
        ):
            self.register(
                "apps",
                "v1",
                plural,
                kind,
                status=True,
                short_names=(short_name,),
                categories=("all",),
                subresources=("scale",),
            )
            self._scale_paths[resource(group="apps", version="v1", plural=plural)] = scale.BUILTIN[("apps", plural)]
        self.register("events.k8s.io", "v1", "events", "Event", short_names=("ev",))
        # NetworkPolicies are stored and served; tests.kube.network_policy evaluates them.
        self.register("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short_names=("netpol",))
        self.register("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", status=True, short_names=("pdb",))
        for plural, kind, namespaced in RBAC_KINDS:
            self.register("rbac.authorization.k8s.io", "v1", plural, kind, namespaced=namespaced)
        self.register(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
            status=True,
            short_names=("crd", "crds"),
        )

    def register_crd(self, crd: Obj) -> None:
        """Serve a custom resource as its CRD declares it (names, scope, status subresource)."""
        spec = crd["spec"]
        names = spec["names"]
        self.admission.add_crd(crd)
        self.openapi.add_crd(crd)
        for version in spec["versions"]:
            res = resource(group=spec["group"], version=version["name"], plural=names["plural"])
            # apiextensions defaults a CRD version without printer columns to an Age column
            self._printer_columns[res] = version.get("additionalPrinterColumns") or [tables.AGE_COLUMN]
            scale_paths = scale.crd_scale_paths(version)
            if scale_paths is not None:
                self._scale_paths[res] = scale_paths
            self.register(
                spec["group"],
                version["name"],
                names["plural"],
                names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                status="status" in (version.get("subresources") or {}),
                short_names=tuple(names.get("shortNames", [])),
                categories=tuple(names.get("categories", [])),
                subresources=("scale",) if scale_paths is not None else (),
            )

    def _info(self, res: resource) -> ResourceInfo | None:
        return self.resources._resources.get(res)

    def _has_status(self, res: resource) -> bool:
        info = self._info(res)
        return info is not None and "status" in info.subresources

    # ---- the store and its indexes -----------------------------------------------------------

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _lookup(self, res: resource, namespace: str | None, name: str) -> Obj | None:
        """The stored object itself (do not mutate it), or None."""
        return self._live.get(res, {}).get(namespace, {}).get(name)

    def _current(self, res: resource, namespace: str | None, name: str) -> Obj | None:
        found = self._lookup(res, namespace, name)
        return copy.deepcopy(found) if found is not None else None

    def _index(self, key: Key, obj: Obj) -> None:
        meta = obj.get("metadata", {})
        if meta.get("uid"):
            self._by_uid[meta["uid"]] = key
        for ref in meta.get("ownerReferences") or []:
            if ref.get("uid"):
                self._owned.setdefault(ref["uid"], set()).add(key)

    def _unindex(self, key: Key, obj: Obj) -> None:
        meta = obj.get("metadata", {})
        if meta.get("uid") and self._by_uid.get(meta["uid"]) == key:
            del self._by_uid[meta["uid"]]
        for ref in meta.get("ownerReferences") or []:
            dependents = self._owned.get(ref.get("uid", ""))
            if dependents is not None:
                dependents.discard(key)
                if not dependents:
                    del self._owned[ref["uid"]]

    def watch_cache(self, res: resource) -> WatchCache:
        cache = self._watch_caches.get(res)
        if cache is None:
            cache = self._watch_caches[res] = WatchCache(self.watch_cache_size)
        return cache

    def _publish(self, res: resource, event: str, obj: Obj) -> None:
        self.watch_cache(res).append(int(obj["metadata"]["resourceVersion"]), {"type": event, "object": obj})

    def _store(self, res: resource, namespace: str | None, name: str, obj: Obj, event: str) -> None:
        stored = copy.deepcopy(obj)
        key = (res, namespace, name)
        previous = self._lookup(res, namespace, name)
        if previous is not None:
            self._unindex(key, previous)
        self._live.setdefault(res, {}).setdefault(namespace, {})[name] = stored
        self._index(key, stored)
        entry = self.objects._objects.get(key)
        if entry is None or entry.deleted:
            self.objects[key] = stored
        else:
            entry.create(stored)  # a new version in the object's history, which stays bounded
            excess = len(entry.history) - self.history_limit
            if excess > 0:
                del entry.history[:excess]
        self._publish(res, event, stored)

    def _remove(self, res: resource, namespace: str | None, name: str, obj: Obj) -> None:
        """Drop the object (`obj` is its final state, with the deletion's resourceVersion)."""
        key = (res, namespace, name)
        space = self._live.get(res, {}).get(namespace, {})
        previous = space.pop(name, None)
        if previous is not None:
            self._unindex(key, previous)
        if not space:
            self._live.get(res, {}).pop(namespace, None)
        self.objects._objects.pop(key, None)
        if (res.group, res.plural) == ("", "pods") and namespace is not None:
            self.logs.forget(namespace, name)
        self._publish(res, "DELETED", copy.deepcopy(obj))
        if obj["metadata"].get("uid") in self._owned:
            self.gc.schedule()  # its dependents: the collector's work, after this DELETE has returned

    # ---- the write path ------------------------------------------------------------------

    def _admit(self, res: resource, obj: Obj, old: Obj | None, validation: str | None, **write: Any) -> Obj:
        """The admission chain (tests.kube.admission): the object to store, or an ApiError."""
        info = self._info(res)
        if not self.admission_enabled or info is None:
            return obj
        kind = Kind(res.group or "", res.version or "", info.kind or "", bool(info.namespaced))
        namespaces = resource(group="", version="v1", plural="namespaces")
        return self.admission.admit(
            Write(kind, obj, old, directive=field_validation(validation), **write),
            lambda name: self._lookup(namespaces, None, name) is not None,
        )

    def _generate_name(self, res: resource, namespace: str | None, prefix: str) -> str:
        """`prefix` + random characters, as the API server does, trying again if the name is taken."""
        for _ in range(GENERATE_NAME_ATTEMPTS):
            name = prefix + self.name_suffix()
            if self._lookup(res, namespace, name) is None:
                return name
        raise ApiError(409, "AlreadyExists", f'{res.plural} "{name}" already exists (generated from "{prefix}")')

    def _create(
        self,
        res: resource,
        namespace: str | None,
        body: Obj,
        *,
        field_manager: str | None = None,
        validation: str | None = None,
    ) -> Obj:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        namespace = namespace or meta.get("namespace")
        if namespace and meta.get("namespace") not in (None, namespace):
            raise ApiError(400, "BadRequest", "the namespace of the object does not match the namespace of the URL")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generate_name(res, namespace, meta["generateName"])
        if namespace:
            meta["namespace"] = namespace
        obj = self._admit(res, obj, None, validation)
        meta = obj["metadata"]
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if self._lookup(res, namespace, name) is not None:
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
        if (res.group, res.plural) == ("batch", "jobs"):
            defaulting.default_job(obj)
        if self._has_status(res):
            obj.pop("status", None)  # status is set through the subresource only
        if field_manager is not None:
            apply.record_update(None, obj, field_manager, "", self._field_schema(res))
        if (res.group, res.plural) == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._establish(obj)
        self._store(res, namespace, name, obj, "ADDED")
        return obj

    def _establish(self, crd: Obj) -> None:
        """A CRD created through the API is served at once, with the conditions the apiextensions
        controllers set (`NamesAccepted`, `Established`: Helm waits for them after installing a
        chart's crds/, kubectl wait --for=condition=Established too)."""
        if (
            self._info(
                resource(
                    group=crd["spec"]["group"],
                    version=crd["spec"]["versions"][0]["name"],
                    plural=crd["spec"]["names"]["plural"],
                )
            )
            is None
        ):
            self.register_crd(crd)
        stamp = _now()
        crd["status"] = {
            "acceptedNames": crd["spec"]["names"],
            "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": stamp}
                for t, r, m in (
                    ("NamesAccepted", "NoConflicts", "no conflicts found"),
                    ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                )
            ],
        }

    def _field_schema(self, res: resource) -> apply.Schema:
        info = self._info(res)
        assert res.group is not None and res.version is not None and info is not None and info.kind
        return self.openapi.field_schema(res.group, res.version, info.kind)

    def _apply(
        self,
        res: resource,
        namespace: str | None,
        name: str,
        body: Any,
        field_manager: str | None,
        force: bool,
        validation: str | None = None,
    ) -> Obj:
        """Server-side apply (tests.kube.apply): create the object, or merge into it, owning what it sets."""
        if not field_manager:
            raise ApiError(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
            )
        if not isinstance(body, dict) or not body.get("apiVersion") or not body.get("kind"):
            raise ApiError(400, "BadRequest", "apiVersion and kind must be set in an apply patch")
        current = self._current(res, namespace, name)
        schema = self._field_schema(res)
        try:
            new = apply.apply(current, body, field_manager, force=force, schema=schema)
        except apply.ApplyConflictError as exc:
            raise ApiError(409, "Conflict", str(exc), details=exc.status()["details"]) from None
        if current is None:
            new.setdefault("metadata", {})["name"] = name
            return self._create(res, namespace, new, validation=validation)
        # managedFields were recorded by apply.apply itself: none recorded again here
        return self._write(res, namespace, name, current, new, body, validation=validation, patch=True)

    def _update(
        self,
        res: resource,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        content_type: str = "application/merge-patch+json",
        replace: bool = False,
        validation: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
    ) -> Obj:
        """PATCH (or PUT with `replace`) an object or its status subresource; server-side apply too.

        `field_manager` records who owns what in managedFields (None: an internal write, not recorded).
        """
        if content_type.startswith(apply.APPLY_PATCH) and subresource is None:
            return self._apply(res, namespace, name, body, field_manager, force, validation)
        current = self._current(res, namespace, name)
        if current is None:
            raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
        return self._write(
            res,
            namespace,
            name,
            current,
            _patched(current, body, content_type, replace=replace),
            body,
            validation=validation,
            patch=not replace,
            subresource=subresource,
            field_manager=field_manager,
        )

    def _scale(
        self,
        res: resource,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        content_type: str = "application/merge-patch+json",
        replace: bool = False,
        validation: str | None = None,
        field_manager: str | None = None,
    ) -> Obj:
        """PUT or PATCH of `.../scale` (tests.kube.scale): the parent's spec replicas, through `_write`."""
        paths = self._scale_paths_of(res)
        if content_type.startswith(apply.APPLY_PATCH):
            raise ApiError(415, "UnsupportedMediaType", "server-side apply to /scale is not served by the emulated API")
        current = self._current(res, namespace, name)
        if current is None:
            raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
        wanted = _patched(scale.scale_of(current, paths), body, content_type, replace=replace)
        new = scale.scaled(copy.deepcopy(current), wanted, paths)
        stored = self._write(
            res,
            namespace,
            name,
            current,
            new,
            wanted,
            validation=validation,
            patch=not replace,
            subresource="scale",
            field_manager=field_manager,
        )
        return scale.scale_of(stored, paths)

    def _write(
        self,
        res: resource,
        namespace: str | None,
        name: str,
        current: Obj,
        wanted: Obj,
        body: Any,
        *,
        validation: str | None,
        patch: bool,
        subresource: str | None = None,
        field_manager: str | None = None,
    ) -> Obj:
        """The one path of every update (PUT, PATCH of each type, apply, status): optimistic
        concurrency, what this endpoint may change (identity never, status or the rest per
        subresource), admission, then the store."""
        self._check_version(res, name, current, body)
        new = self._merge_allowed(res, current, wanted, subresource)
        new = self._admit(res, new, current, validation, patch=patch, subresource=subresource)
        return self._commit(res, namespace, name, current, new, field_manager, subresource)

    @staticmethod
    def _check_version(res: resource, name: str, current: Obj, body: Any) -> None:
        """Optimistic concurrency: a write naming another resourceVersion than the stored one is 409."""
        sent = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
        if sent and sent != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {res.plural} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
            )

    def _commit(
        self,
        res: resource,
        namespace: str | None,
        name: str,
        current: Obj,
        new: Obj,
        field_manager: str | None,
        subresource: str | None = None,
    ) -> Obj:
        """Store an updated object: generation, resourceVersion, managedFields, finalizers."""
        if subresource is None and "managedFields" in current["metadata"] and "managedFields" not in new["metadata"]:
            new["metadata"]["managedFields"] = current["metadata"]["managedFields"]  # not cleared by a patch
        if new == current:
            return current  # a no-op write changes nothing, not even resourceVersion
        if field_manager is not None:
            apply.record_update(current, new, field_manager, subresource or "", self._field_schema(res))
        meta = new["metadata"]
        if _spec_part(new) != _spec_part(current):
            meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
        meta["resourceVersion"] = self._next_revision()
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(res, namespace, name, new)
        else:
            self._store(res, namespace, name, new, "MODIFIED")
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

    def _delete(self, res: resource, namespace: str | None, name: str, *, policy: str | None = None) -> Obj:
        current = self._current(res, namespace, name)
        if current is None:
            raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
        finalizer = deletion_finalizer(policy or default_policy(res))
        finalizers = current["metadata"].get("finalizers") or []
        if finalizer and not current["metadata"].get("deletionTimestamp") and finalizer not in finalizers:
            current["metadata"]["finalizers"] = [*finalizers, finalizer]  # the collector finishes this deletion
            self.gc.schedule()
        if current["metadata"].get("finalizers"):
            if not current["metadata"].get("deletionTimestamp"):
                current["metadata"]["deletionTimestamp"] = _now()
                current["metadata"]["resourceVersion"] = self._next_revision()
                self._store(res, namespace, name, current, "MODIFIED")
            return current
        current["metadata"]["resourceVersion"] = self._next_revision()  # a deletion is a change too
        self._remove(res, namespace, name, current)
        return current

    # The write path's async entries (what HTTP handlers, the test cluster and the node agent call).
    create_object = _locked(_create)
    update_object = _locked(_update)
    scale_object = _locked(_scale)
    delete_object = _locked(_delete)

    # ---- garbage collection ----------------------------------------------------------------

    async def collect_garbage(self) -> int:
        """Run the garbage collector now, until it has nothing left to do; how many objects it deleted."""
        async with self._lock:
            return self.gc.collect()

    # ---- reads ---------------------------------------------------------------------------

    def select(
        self,
        res: resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        name: str | None = None,
        *,
        field_selector: str | None = None,
        copies: bool = True,
    ) -> list[Obj]:
        """Live objects of a kind (all namespaces when `namespace` is None), filtered like a list call.

        With `copies=False` the stored objects themselves (for serializing only, never to mutate).
        Raises SelectorError for a selector the API server would refuse.
        """
        labels = selectors.parse_labels(label_selector)
        fields = selectors.parse_fields(field_selector, res.group or "", res.plural or "")
        name = name or selectors.name_from(fields)
        source, convert = self._storage_of(res)
        by_namespace = self._live.get(source, {})
        spaces = list(by_namespace.values()) if namespace is None else [by_namespace.get(namespace, {})]
        if name is not None:
            candidates: Iterator[Obj] = (space[name] for space in spaces if name in space)
        else:
            candidates = (obj for space in spaces for obj in space.values())
        if convert is not None:
            candidates = (convert(obj) for obj in candidates)
        found = [
            obj
            for obj in candidates
            if all(r.matches(obj.get("metadata", {}).get("labels") or {}) for r in labels)
            and selectors.matches_fields(obj, fields, res.group or "", res.plural or "")
        ]
        return [copy.deepcopy(obj) for obj in found] if copies and convert is None else found

    @staticmethod
    def _storage_of(res: resource) -> tuple[resource, Callable[[Obj], Obj] | None]:
        """Where a resource's objects live, and how to show them (events.k8s.io reads the core Events)."""
        if res == events.EVENTS_V1:
            return events.CORE_EVENTS, events.to_events_v1
        return res, None

    def count(self, res: resource, namespace: str | None = None) -> int:
        """How many live objects of a kind (in one namespace, or all)."""
        by_namespace = self._live.get(res, {})
        if namespace is not None:
            return len(by_namespace.get(namespace, {}))
        return sum(len(space) for space in by_namespace.values())

    def _check_known(self, res: resource) -> None:
        if self._info(res) is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource {res}")

    def _list(self, request: rendering.Request) -> Obj:
        assert request.resource is not None
        self._check_known(request.resource)
        try:
            items = self.select(
                request.resource,
                request.namespace,
                request.params.get("labelSelector"),
                field_selector=request.params.get("fieldSelector"),
                copies=False,
            )
            items, metadata = paging.page(items, request.params, self._revision)
        except (selectors.SelectorError, paging.ContinueError) as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        info = self._info(request.resource)
        kind = info.kind if info is not None and info.kind else "Object"
        return {"kind": f"{kind}List", "apiVersion": "v1", "metadata": metadata, "items": items}

    def _fetch(self, request: rendering.Request) -> Obj:
        assert request.resource is not None and request.name is not None
        self._check_known(request.resource)
        source, convert = self._storage_of(request.resource)
        found = self._lookup(source, request.namespace, request.name)
        if found is not None and convert is not None:
            found = convert(found)
        if found is None:
            raise ApiError(404, "NotFound", f'{request.resource.plural} "{request.name}" not found')
        return found

    async def _watch_chunks(self, request: rendering.Request) -> AsyncGenerator[bytes, None]:
        """A watch stream: the current objects (or the changes since `resourceVersion`), then changes.

        Ends after the client's `timeoutSeconds`, or with a 410 Gone event when `resourceVersion`
        is older than the watch cache.
        """
        res = request.resource
        assert res is not None
        self._check_known(res)
        label_selector = request.params.get("labelSelector")
        field_selector = request.params.get("fieldSelector")
        group, plural = res.group or "", res.plural or ""
        try:
            labels = selectors.parse_labels(label_selector)
            fields = selectors.parse_fields(field_selector, group, plural)
        except selectors.SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        namespace = request.namespace
        since = request.params.get("resourceVersion") or "0"
        timeout = float(request.params["timeoutSeconds"]) if request.params.get("timeoutSeconds") else None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        transport = request._raw_request.transport if request._raw_request is not None else None
        source, convert = self._storage_of(res)
        cache = self.watch_cache(source)

        def shown(event: Obj) -> Obj:
            return event if convert is None else {**event, "object": convert(event["object"])}

        # `kubectl get -w` watches with the Table Accept header: each event then carries a one-row Table.
        table_rows = tables.wants_table(request.headers.get("Accept", ""))
        include_object = request.params.get("includeObject", "Metadata")

        def as_row(event: Obj) -> Obj:
            if not table_rows:
                return event
            return {**event, "object": self._as_table(res, event["object"], include_object)}

        def wanted(event: Obj) -> bool:
            meta = event["object"].get("metadata", {})
            if namespace is not None and meta.get("namespace") != namespace:
                return False
            return all(r.matches(meta.get("labels") or {}) for r in labels) and selectors.matches_fields(
                event["object"], fields, group, plural
            )

        yield b""  # the headers go now, even if nothing happens for a while
        # A streaming list (kubectl 1.37's informers: sendInitialEvents=true, resourceVersionMatch=
        # NotOlderThan): the current state, then a bookmark marking its end (KEP-3157 "WatchList").
        initial_events = _is_true(request.params.get("sendInitialEvents"))
        if initial_events or since == "0" or not since.isdigit():  # "0" and unset: the current state first
            last = self._revision
            objs = self.select(res, namespace, label_selector, field_selector=field_selector, copies=False)
            initial = [as_row({"type": "ADDED", "object": obj}) for obj in objs]
            if initial_events:
                initial.append(self._initial_events_end(res, last))
            yield _encode(initial)
        else:
            last = int(since)
        while transport is None or not transport.is_closing():
            if deadline is not None and loop.time() >= deadline:
                return  # the client's timeoutSeconds: the stream ends, the client watches again
            changed = cache.changed
            batch = cache.since(last)
            if batch is None:
                yield _encode([_gone(last)])
                return
            if batch:
                last = batch[-1][0]
                yield _encode([as_row(shown_event) for _, event in batch if wanted(shown_event := shown(event))])
                continue
            wait = (
                self.watch_idle_check_seconds
                if deadline is None
                else min(self.watch_idle_check_seconds, deadline - loop.time())
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)

    def _initial_events_end(self, res: resource, revision: int) -> Obj:
        """The BOOKMARK that ends a watch's initial events (annotation `k8s.io/initial-events-end`)."""
        info = self._info(res)
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": info.kind if info is not None else "",
                "apiVersion": f"{res.group}/{res.version}" if res.group else res.version,
                "metadata": {"resourceVersion": str(revision), "annotations": {"k8s.io/initial-events-end": "true"}},
            },
        }

    async def _watch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        assert request._raw_request is not None
        chunks = self._watch_chunks(request)
        try:
            await anext(chunks)  # checks the resource before the stream starts
            response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request._raw_request)
            with contextlib.suppress(ConnectionError):  # the client went away
                async for chunk in chunks:
                    if chunk:
                        await response.write(chunk)
                await response.write_eof()
            return response
        finally:
            await chunks.aclose()

    async def _serve_log(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """`pods/<name>/log` from what the kubelet stand-in captured (tests.kube.logs)."""
        res, namespace, name = request.resource, request.namespace, request.name
        if res is None or (res.group, res.plural) != ("", "pods") or namespace is None or name is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        pod = self._fetch(request)
        assert request._raw_request is not None
        try:
            return await self.logs.serve(
                request._raw_request, request.params, namespace, pod, lambda: self._lookup(res, namespace, name)
            )
        except LogError as exc:
            raise ApiError(exc.code, "BadRequest", exc.message) from None

    def _scale_paths_of(self, res: resource) -> scale.ScalePaths:
        """Where a kind serving /scale keeps its replicas; 404 as the server answers for other kinds."""
        paths = self._scale_paths.get(res)
        if paths is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return paths

    async def _serve_scale(
        self, request: rendering.Request, method: str, res: resource, validation: str | None, manager: str
    ) -> aiohttp.web.StreamResponse:
        """PUT or PATCH of `.../scale` (tests.kube.scale); 405 for other methods, as the server answers."""
        self._scale_paths_of(res)
        if request.name is None or method not in {"PUT", "PATCH"}:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        data = request.data if request.data is not None else json.loads(request.text or "null")
        found = await self.scale_object(
            res,
            request.namespace,
            request.name,
            data,
            content_type=request.headers.get("Content-Type", "application/merge-patch+json"),
            replace=method == "PUT",
            validation=validation,
            field_manager=manager,
        )
        return aiohttp.web.json_response(found)

    def _as_table(self, res: resource, found: Obj, include_object: str) -> Obj:
        """An object or a list as the Table `kubectl get` prints (tests.kube.tables)."""
        info = self._info(res)
        kind = info.kind if info is not None and info.kind else ""
        listed = "items" in found and found.get("kind", "").endswith("List")
        return tables.table(
            kind,
            found["items"] if listed else [found],
            crd_printer_columns=self._printer_columns.get(res),
            include_object=include_object,
            list_metadata=found["metadata"]
            if listed
            else {"resourceVersion": found["metadata"].get("resourceVersion")},
        )

    # kmock's own handlers, used when a test's kmock reactions take over reads.
    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        try:
            return self._list(request)
        except ApiError as exc:
            raise KubernetesError(exc.code, exc.reason, exc.message) from None

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        try:
            return self._fetch(request)
        except ApiError as exc:
            raise KubernetesError(exc.code, exc.reason, exc.message) from None

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        async for chunk in self._watch_chunks(request):
            yield chunk

    # ---- HTTP ----------------------------------------------------------------------------

    def _has_own_reactions(self) -> bool:
        """Whether a test added kmock reactions of its own (the emulator's are all fallbacks)."""
        return any(not payload.priorities or payload.priorities[0] != -math.inf for payload in self._payloads)

    def _trim_request_log(self) -> None:
        log = self._requests
        excess = len(log) - self.request_log_limit
        if excess > 0:
            # Requests still being matched by kmock must stay: it finds them in its log.
            log[:] = [r for r in log[:excess] if r in self._delegated] + log[excess:]

    def _serve_machinery(self, request: rendering.Request) -> aiohttp.web.StreamResponse | None:
        """Discovery, `/version` and OpenAPI as kube-apiserver serves them (None: not such a path)."""
        if str(getattr(request.method, "value", request.method)).upper() != "GET":
            return None
        path = request.url.path.rstrip("/") or "/"
        kinds = self.resources._resources
        accept = request.headers.get("Accept", "")
        found: Obj | None
        if path in {"/api", "/apis"} and discovery.wants_aggregated(accept):
            body = json.dumps(discovery.aggregated(kinds, core=path == "/api")).encode()
            return aiohttp.web.Response(body=body, headers={"Content-Type": discovery.AGGREGATED})
        if path == "/api":
            found = discovery.api_versions(request.headers.get("Host", ""))
        elif path == "/apis":
            found = discovery.api_group_list(kinds)
        elif path == "/api/v1":
            found = discovery.api_resource_list(kinds, "", "v1")
        elif path == "/version":
            found = discovery.server_version()
        elif path == "/openapi/v3":
            found = self.openapi.v3_root(kinds)
        elif path.startswith("/openapi/v3/"):
            found = self.openapi.v3_document(kinds, path.removeprefix("/openapi/v3/"))
        elif path == "/openapi/v2":
            if not openapi.accepts_json(accept):
                return aiohttp.web.json_response(
                    ApiError(406, "NotAcceptable", f"only application/json is served, not {accept}").status(),
                    status=406,
                )
            found = self.openapi.v2_document(kinds)
        elif path.startswith("/apis/") and path.count("/") == 2:
            found = discovery.api_group(kinds, path.split("/")[2])
        elif path.startswith("/apis/") and path.count("/") == 3:
            found = discovery.api_resource_list(kinds, *path.split("/")[2:4])
        else:
            return None
        if found is None:
            return aiohttp.web.json_response(
                ApiError(404, "NotFound", "the server could not find the requested resource").status(), status=404
            )
        return aiohttp.web.json_response(found)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body_type = raw_request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if raw_request.method in {"POST", "PUT", "PATCH"} and body_type in UNSERVED_MEDIA_TYPES:
            # kube-apiserver's answer to a body it has no serializer for (handlers/rest.go,
            # negotiation.NewUnsupportedMediaTypeError): 415 listing what it accepts, before kmock
            # tries to read the body as text. The stand-in speaks JSON and YAML only; client-go's
            # protobuf clients (Helm's release storage) then send JSON.
            accepted = ", ".join(SERVED_MEDIA_TYPES)
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "the body of the request was in an unknown format - accepted media types include: "
                + accepted,
                "reason": "UnsupportedMediaType",
                "code": 415,
            }
            await raw_request.read()
            return aiohttp.web.json_response(status, status=415)
        return await super().__call__(raw_request)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        self._trim_request_log()
        method = str(getattr(request.method, "value", request.method)).upper()
        transport = request._raw_request.transport if request._raw_request is not None else None
        local = transport.get_extra_info("sockname") if transport is not None else None
        refused = self.access.check(
            self, method, request.url.path, request.params, request.headers, local_port=local[1] if local else None
        )
        if refused is not None:  # authentication and authorization come before any handler
            return aiohttp.web.json_response(refused, status=refused["code"])
        machinery = self._serve_machinery(request)
        if machinery is not None:
            return machinery
        res = request.resource
        ours = res is not None and (
            method in {"POST", "PATCH", "PUT", "DELETE"}
            # discovery (/api/v1, /apis/group/version) parses as a resource without a plural
            or (method == "GET" and res.plural is not None and not self._has_own_reactions())
        )
        if res is None or not ours:
            self._delegated.add(request)
            try:
                return await super()._handle(request)
            finally:
                self._delegated.discard(request)
        warnings = collect_warnings()
        try:
            response = await self._respond(request, method, res)
        finally:
            headers = warning_headers(warnings)
        for header in headers:  # what admission warned about (never on a watch: it sends at once)
            response.headers.add("Warning", header)
        return response

    async def _respond(self, request: rendering.Request, method: str, res: resource) -> aiohttp.web.StreamResponse:
        validation = request.params.get("fieldValidation")
        try:
            if method == "GET" and request.subresource == "log":
                return await self._serve_log(request)
            if method == "GET" and request.subresource == "scale":
                return aiohttp.web.json_response(scale.scale_of(self._fetch(request), self._scale_paths_of(res)))
            if method == "GET":
                if _is_true(request.params.get("watch")):
                    return await self._watch(request)
                found = self._fetch(request) if request.name is not None else self._list(request)
                if tables.wants_table(request.headers.get("Accept", "")):
                    found = self._as_table(res, found, request.params.get("includeObject", "Metadata"))
                return aiohttp.web.json_response(found)
            if request.params.get("dryRun"):
                # Refused rather than ignored: an ignored dry run would really write.
                raise ApiError(400, "BadRequest", "dryRun is not served by the emulated API")
            manager = request.params.get("fieldManager") or apply.manager_from_user_agent(
                request.headers.get("User-Agent", "")
            )
            if request.subresource == "scale":
                return await self._serve_scale(request, method, res, validation, manager)
            if method == "POST" and request.name is None:
                obj = await self.create_object(
                    res, request.namespace, request.data or {}, field_manager=manager, validation=validation
                )
                return aiohttp.web.json_response(obj, status=201)
            if request.name is None:
                raise ApiError(405, "MethodNotAllowed", f"{method} needs an object name")
            if method == "DELETE":
                policy = propagation_policy(request.data, dict(request.params))
                obj = await self.delete_object(res, request.namespace, request.name, policy=policy)
                return aiohttp.web.json_response(obj)
            content_type = request.headers.get("Content-Type", "application/merge-patch+json")
            if content_type.startswith(apply.APPLY_PATCH):
                created = self._lookup(res, request.namespace, request.name) is None
                data = yaml.safe_load(request.text or "null")
                obj = await self.update_object(
                    res,
                    request.namespace,
                    request.name,
                    data,
                    subresource=request.subresource,
                    content_type=content_type,
                    field_manager=request.params.get("fieldManager"),
                    force=_is_true(request.params.get("force")),
                    validation=validation,
                )
                return aiohttp.web.json_response(obj, status=201 if created else 200)
            data = request.data if request.data is not None else json.loads(request.text or "null")
            obj = await self.update_object(
                res,
                request.namespace,
                request.name,
                data,
                subresource=request.subresource,
                content_type=content_type,
                replace=method == "PUT",
                validation=validation,
                field_manager=manager,
            )
            return aiohttp.web.json_response(obj)
        except ApiError as exc:
            return aiohttp.web.json_response(exc.status(), status=exc.code)


def _patched(current: Obj, body: Any, content_type: str, *, replace: bool) -> Obj:
    """What a PUT (`replace`) or a JSON / merge (strategic as merge) patch makes of `current` (a new object)."""
    if replace:
        return copy.deepcopy(body)
    if content_type.startswith(JSON_PATCH):
        try:
            return json_patch(current, body)
        except PatchTestFailedError as exc:
            raise ApiError(422, "Invalid", f"the server rejected our request: test failed: {exc}") from None
    return merge_patch(current, body)


def _encode(events: list[Obj]) -> bytes:
    return b"".join(json.dumps(event).encode() + b"\n" for event in events)


def _gone(revision: int) -> Obj:
    """The watch event of a resourceVersion older than the watch cache: the client lists again."""
    return {
        "type": "ERROR",
        "object": {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "reason": "Expired",
            "code": 410,
            "message": f"too old resource version: {revision}",
        },
    }


# kmock routes actions by enums; re-exported for tests that build requests by hand.
__all__ = ["ApiError", "KubeEmulator", "WatchCache", "enums", "matches_labels"]
