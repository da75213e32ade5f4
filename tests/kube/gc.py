"""The garbage collector, as kube-controller-manager's runs it: after the owner's DELETE has returned.

A DELETE picks a propagation policy (DeleteOptions `propagationPolicy`, or the deprecated
`orphanDependents`; else the kind's default: `Orphan` for batch/v1 Jobs and core/v1
ReplicationControllers, kept for backward compatibility, `Background` for everything else,
kubernetes pkg/registry/batch/job/strategy.go `DefaultGarbageCollectionPolicy`; kubectl always
sends one, `Background` unless `--cascade=orphan|foreground`):

- Background: the owner goes at once (once its own finalizers are gone); later the collector
  deletes every object none of whose owners exists any more. An owner is identified by uid: a new
  object under the old name is not the owner of the old one's dependents.
- Foreground: the API server sets `deletionTimestamp` and the `foregroundDeletion` finalizer; the
  collector deletes the dependents (those with `blockOwnerDeletion` in the foreground too) and
  removes the finalizer once no dependent with `blockOwnerDeletion: true` is left.
- Orphan: the API server sets `deletionTimestamp` and the `orphan` finalizer; the collector
  removes the owner's entry from its dependents' `ownerReferences`, then the finalizer.

A dependent with several owners stays while one of them exists; the references to the owners that
are gone are removed from it (garbagecollector.go `attemptToDeleteItem`: "dangling" references
of an object with "solid" owners are patched away).

The collector runs `delay` seconds after a change that may give it work (as the real one reacts
to its informers' events, not at once), or when a test calls `KubeEmulator.collect_garbage()`.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kmock import resource

from tests.kube.field_errors import ApiError

if TYPE_CHECKING:
    from tests.kube.emulator import Key, KubeEmulator

Obj = dict[str, Any]
ORPHAN_FINALIZER = "orphan"  # metav1.FinalizerOrphanDependents
FOREGROUND_FINALIZER = "foregroundDeletion"  # metav1.FinalizerDeleteDependents
BACKGROUND, FOREGROUND, ORPHAN = "Background", "Foreground", "Orphan"
_ORPHAN_BY_DEFAULT = {("batch", "v1", "jobs"), ("", "v1", "replicationcontrollers")}


def default_policy(res: resource) -> str:
    return ORPHAN if (res.group or "", res.version or "", res.plural) in _ORPHAN_BY_DEFAULT else BACKGROUND


def propagation_policy(options: Any, params: dict[str, str]) -> str | None:
    """The policy a DELETE asks for: DeleteOptions in the body, or the query parameters."""
    options = options if isinstance(options, dict) else {}
    policy = options.get("propagationPolicy") or params.get("propagationPolicy")
    orphan = options.get("orphanDependents", params.get("orphanDependents"))
    if policy and orphan is not None:
        raise ApiError(422, "Invalid", "orphanDependents and deletionPropagation cannot be both set")
    if orphan is not None:
        return ORPHAN if str(orphan).lower() == "true" else BACKGROUND
    if policy and policy not in {BACKGROUND, FOREGROUND, ORPHAN}:
        raise ApiError(
            422,
            "Invalid",
            f'propagationPolicy: Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan"',
        )
    return policy


def deletion_finalizer(policy: str) -> str | None:
    """The finalizer the API server adds for a policy the collector has to finish."""
    return {ORPHAN: ORPHAN_FINALIZER, FOREGROUND: FOREGROUND_FINALIZER}.get(policy)


class GarbageCollector:
    """Works on one emulator's store (its indexes by uid and by owner uid), under its lock."""

    def __init__(self, emulator: KubeEmulator, *, delay: float, enabled: bool) -> None:
        self._emulator = emulator
        self.delay = delay
        self.enabled = enabled
        self._pending: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[int]] = set()

    def schedule(self) -> None:
        """Run a pass `delay` seconds from now (one pending pass at a time)."""
        if not self.enabled or self._pending is not None:
            return
        loop = asyncio.get_running_loop()

        def start() -> None:
            self._pending = None
            task = loop.create_task(self.run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._pending = loop.call_later(self.delay, start)

    async def run(self) -> int:
        async with self._emulator._lock:
            return self.collect()

    def collect(self) -> int:
        """Passes until nothing is left to do; how many objects were deleted (the caller holds the lock)."""
        deleted = 0
        while True:
            done = self._pass()
            if not done:
                return deleted
            deleted += sum(1 for action in done if action == "deleted")

    # ---- one pass ---------------------------------------------------------------------------

    def _pass(self) -> list[str]:
        e = self._emulator
        actions: list[str] = []
        for owner_uid in list(e._owned):
            owner_key = e._by_uid.get(owner_uid)
            owner = e._lookup(*owner_key) if owner_key is not None else None
            if owner is None:
                actions += self._dangling(owner_uid)
            elif owner["metadata"].get("deletionTimestamp"):
                finalizers = owner["metadata"].get("finalizers") or []
                if ORPHAN_FINALIZER in finalizers:
                    actions += self._orphan(owner_uid, owner_key)  # type: ignore[arg-type]
                elif FOREGROUND_FINALIZER in finalizers:
                    actions += self._foreground(owner_uid)
        # owners in deletion whose dependents are all gone: their GC finalizer goes
        for key in self._finalizing():
            actions += self._finish(key)
        return actions

    def _dependents(self, owner_uid: str) -> list[tuple[Key, Obj]]:
        e = self._emulator
        found = []
        for key in sorted(e._owned.get(owner_uid, ()), key=str):
            obj = e._lookup(*key)
            if obj is not None:
                found.append((key, obj))
        return found

    def _dangling(self, owner_uid: str) -> list[str]:
        """Dependents of an owner that is gone: deleted when no owner is left, else the reference goes."""
        e = self._emulator
        actions = []
        for key, obj in self._dependents(owner_uid):
            refs = obj["metadata"].get("ownerReferences") or []
            solid = [r for r in refs if r.get("uid") in e._by_uid]
            if solid:
                self._rewrite(key, lambda o, keep=solid: o["metadata"].__setitem__("ownerReferences", keep))
                actions.append("patched")
            elif not obj["metadata"].get("deletionTimestamp"):
                own = obj["metadata"].get("finalizers") or []
                policy = ORPHAN if ORPHAN_FINALIZER in own else FOREGROUND if FOREGROUND_FINALIZER in own else None
                e._delete(*key, policy=policy or BACKGROUND)
                actions.append("deleted")
        return actions

    def _orphan(self, owner_uid: str, owner_key: Key) -> list[str]:
        actions = []
        for key, _ in self._dependents(owner_uid):

            def drop(o: Obj) -> None:
                refs = [r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
                if refs:
                    o["metadata"]["ownerReferences"] = refs
                else:
                    o["metadata"].pop("ownerReferences", None)

            self._rewrite(key, drop)
            actions.append("patched")
        return actions

    def _foreground(self, owner_uid: str) -> list[str]:
        e = self._emulator
        actions = []
        for key, obj in self._dependents(owner_uid):
            if obj["metadata"].get("deletionTimestamp"):
                continue
            ref = next(r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") == owner_uid)
            e._delete(*key, policy=FOREGROUND if ref.get("blockOwnerDeletion") else BACKGROUND)
            actions.append("deleted")
        return actions

    def _finalizing(self) -> list[Key]:
        """Objects in deletion with a GC finalizer and nothing left that holds it."""
        e = self._emulator
        return [
            (res, namespace, name)
            for res, spaces in e._live.items()
            for namespace, objects in spaces.items()
            for name, obj in objects.items()
            if obj["metadata"].get("deletionTimestamp") and self._released(obj["metadata"])
        ]

    def _released(self, meta: Obj) -> bool:
        """`orphan`: no dependent refers to it any more; `foregroundDeletion`: none that blocks it."""
        finalizers = meta.get("finalizers") or []
        dependents = self._dependents(meta["uid"])
        if ORPHAN_FINALIZER in finalizers:
            return not dependents
        if FOREGROUND_FINALIZER in finalizers:
            return not any(
                ref.get("uid") == meta["uid"] and ref.get("blockOwnerDeletion")
                for _, dependent in dependents
                for ref in dependent["metadata"].get("ownerReferences") or []
            )
        return False

    def _finish(self, key: Key) -> list[str]:
        def drop(o: Obj) -> None:
            o["metadata"]["finalizers"] = [
                f for f in o["metadata"].get("finalizers") or [] if f not in {ORPHAN_FINALIZER, FOREGROUND_FINALIZER}
            ]
            if not o["metadata"]["finalizers"]:
                del o["metadata"]["finalizers"]

        return ["deleted" if self._rewrite(key, drop) else "patched"]

    def _rewrite(self, key: Key, change: Callable[[Obj], None]) -> bool:
        """Write a changed copy of an object as the collector's PATCH would; True when that deleted it."""
        e = self._emulator
        current = e._lookup(*key)
        if current is None:
            return False
        new = copy.deepcopy(current)
        change(new)
        new["metadata"]["resourceVersion"] = e._next_revision()
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            e._remove(*key, new)
            return True
        e._store(*key, new, "MODIFIED")
        return False
