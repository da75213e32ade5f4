"""The controllers the node agent plays: Deployments, StatefulSets and Jobs -> Pods, PVC binding.

Each `reconcile_*` reads the workload and the pods it owns (by owner uid) and makes one step
toward the spec, as kube-controller-manager's controllers do, then writes the workload's status:

- Deployment: `replicas` (default 1) pods from the template, named `NAME-HASH-xxxxx` with the
  `pod-template-hash` label; a changed template rolls out `Recreate` (every old pod gone, its
  processes stopped, before a new one is made) or `RollingUpdate` (new pods first, old ones
  deleted once the new ones are ready); scaling deletes the newest pods first.
- StatefulSet: pods `NAME-0..N-1` in order, each created once the one before is Ready
  (OrderedReady), with `hostname`/`subdomain`, one PVC per `volumeClaimTemplates` entry
  (`TEMPLATE-NAME-ORDINAL`, kept when the pod or the StatefulSet goes); scale-down and rolling
  update from the highest ordinal.
- Job: one pod at a time (`parallelism`/`completions` 1, as the operator's Jobs), a new one after
  a failure while `failed <= backoffLimit`, with the Job controller's back-off (10 s doubling);
  `podFailurePolicy` FailJob rules on exit codes; Complete/Failed conditions.
- PersistentVolumeClaim: bound at once (the node is its own provisioner, as kind's local-path).

Differences from Kubernetes: a Deployment owns its pods directly (no ReplicaSet objects), and a
Job's `activeDeadlineSeconds` and `ttlSecondsAfterFinished` are not enforced.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from tests.kube.node import podspec
from tests.kube.node.podspec import Obj

JOB_BACKOFF_START, JOB_BACKOFF_MAX = 10.0, 360.0
NODE_NAME = "sandbox-node"


def template_hash(template: Obj) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _owner_ref(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _is_ready(pod: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions", []))


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase", "Pending"))


class Controllers:
    """One reconcile pass over every workload (`reconcile()`), called by the agent's loop.

    `running(uid)` and `running_name(namespace, name)` say whether a pod's processes still run on
    the node (Recreate and a StatefulSet's new pod of the same name wait for a deleted pod's)."""

    def __init__(self, cluster: Any, running: Callable[[str], bool], running_name: Callable[[str, str], bool]) -> None:
        self.cluster = cluster
        self.running = running
        self.running_name = running_name
        self._job_retry_at: dict[str, float] = {}
        self._known_pods: dict[str, set[str]] = {}

    def reconcile(self) -> None:
        pods = self.cluster.select("Pod")
        owned: dict[str, list[Obj]] = {}
        for pod in pods:
            for ref in pod["metadata"].get("ownerReferences", []):
                if ref.get("controller"):
                    owned.setdefault(ref["uid"], []).append(pod)
        for claim in self.cluster.select("PersistentVolumeClaim"):
            self._bind(claim)
        for kind, step in (
            ("Deployment", self._deployment),
            ("StatefulSet", self._statefulset),
            ("Job", self._job),
        ):
            for obj in self.cluster.select(kind):
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    step(obj, owned.get(obj["metadata"]["uid"], []))
                except Exception as exc:  # one workload's trouble (e.g. deleted meanwhile) never stops the others
                    if getattr(exc, "code", None) not in (404, 409):
                        raise

    # ---- helpers ---------------------------------------------------------------------------

    def _create_pod(
        self,
        owner: Obj,
        template: Obj,
        *,
        name: str | None = None,
        extra_labels: Obj | None = None,
        spec_extra: Obj | None = None,
    ) -> Obj | None:
        meta = owner["metadata"]
        spec = {**template["spec"], **(spec_extra or {})}
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        if account != "default" and self.cluster.get("ServiceAccount", meta["namespace"], account) is None:
            # The ServiceAccount admission plugin refuses such a pod; the controller retries.
            print(
                f"node: {owner['kind']} {meta['namespace']}/{meta['name']}: error looking up service account "
                f'{meta["namespace"]}/{account}: serviceaccount "{account}" not found',
                flush=True,
            )
            return None
        pod_meta: Obj = {
            "namespace": meta["namespace"],
            "labels": {**(template.get("metadata") or {}).get("labels", {}), **(extra_labels or {})},
            "annotations": dict((template.get("metadata") or {}).get("annotations", {})),
            "ownerReferences": [_owner_ref(owner)],
        }
        if name:
            pod_meta["name"] = name
        else:
            pod_meta["generateName"] = f"{meta['name']}-"
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("nodeName", NODE_NAME)  # one node: the scheduler's choice is made here
        spec.setdefault("serviceAccountName", account)
        return self.cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec})

    def _delete(self, pod: Obj) -> None:
        try:
            self.cluster.delete("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"])
        except Exception as exc:
            if getattr(exc, "code", None) != 404:
                raise

    def _status(self, obj: Obj, status: Obj) -> None:
        current = obj.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return
        self.cluster.patch(
            obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"], {"status": status}, subresource="status"
        )

    def _bind(self, claim: Obj) -> None:
        if (claim.get("status") or {}).get("phase") == "Bound":
            return
        spec = claim.get("spec", {})
        status = {
            "phase": "Bound",
            "accessModes": spec.get("accessModes", ["ReadWriteOnce"]),
            "capacity": {"storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")},
        }
        self.cluster.patch(
            "PersistentVolumeClaim",
            claim["metadata"]["namespace"],
            claim["metadata"]["name"],
            {"status": status},
            subresource="status",
        )

    # ---- Deployment ------------------------------------------------------------------------

    def _deployment(self, d: Obj, pods: list[Obj]) -> None:
        spec = d["spec"]
        replicas = int(spec.get("replicas", 1))
        current_hash = template_hash(spec["template"])
        labels = {"pod-template-hash": current_hash}
        new = [p for p in pods if p["metadata"].get("labels", {}).get("pod-template-hash") == current_hash]
        old = [p for p in pods if p not in new]
        strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
        if old and strategy == "Recreate":
            for pod in old:
                self._delete(pod)
        elif old:
            ready_new = [p for p in new if _is_ready(p)]
            if len(ready_new) >= replicas:
                for pod in old:
                    self._delete(pod)
        gone = self._known_pods.get(d["metadata"]["uid"], set()) - {p["metadata"]["uid"] for p in pods}
        blocked = strategy == "Recreate" and bool(old or any(self.running(uid) for uid in gone))
        if not blocked and len(new) < replicas:
            created = self._create_pod(d, spec["template"], extra_labels=labels)
            if created is not None:
                new.append(created)
        elif len(new) > replicas:
            for pod in sorted(new, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True)[
                : len(new) - replicas
            ]:
                self._delete(pod)
                new.remove(pod)
        self._remember(d, pods)
        ready = sum(1 for p in new if _is_ready(p))
        available = ready >= replicas
        self._status(
            d,
            {
                "observedGeneration": d["metadata"].get("generation", 1),
                "replicas": len(new) + len(old),
                "updatedReplicas": len(new),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": max(replicas - ready, 0),
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True" if available else "False",
                        "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                        "message": "Deployment has minimum availability."
                        if available
                        else "Deployment does not have minimum availability.",
                    }
                ],
            },
        )

    def _remember(self, owner: Obj, pods: list[Obj]) -> None:
        """The pod uids each owner had (so Recreate can wait for deleted pods' processes)."""
        self._known_pods.setdefault(owner["metadata"]["uid"], set()).update(p["metadata"]["uid"] for p in pods)

    # ---- StatefulSet -----------------------------------------------------------------------

    def _statefulset(self, s: Obj, pods: list[Obj]) -> None:
        spec = s["spec"]
        meta = s["metadata"]
        replicas = int(spec.get("replicas", 1))
        revision = f"{meta['name']}-{template_hash(spec['template'])}"
        by_name = {p["metadata"]["name"]: p for p in pods}
        for ordinal in range(replicas):
            name = f"{meta['name']}-{ordinal}"
            if name in by_name:
                if not _is_ready(by_name[name]) and spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady":
                    break
                continue
            if self.running_name(meta["namespace"], name):
                break  # the previous pod of that name is still stopping
            volumes = list(spec["template"]["spec"].get("volumes", []))
            for claim in spec.get("volumeClaimTemplates", []):
                claim_name = f"{claim['metadata']['name']}-{name}"
                if self.cluster.get("PersistentVolumeClaim", meta["namespace"], claim_name) is None:
                    self.cluster.create(
                        {
                            "apiVersion": "v1",
                            "kind": "PersistentVolumeClaim",
                            "metadata": {
                                "name": claim_name,
                                "namespace": meta["namespace"],
                                "labels": {
                                    **claim["metadata"].get("labels", {}),
                                    **spec["selector"].get("matchLabels", {}),
                                },
                            },
                            "spec": claim["spec"],
                        }
                    )
                volumes.append({"name": claim["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim_name}})
            labels = {
                "statefulset.kubernetes.io/pod-name": name,
                "apps.kubernetes.io/pod-index": str(ordinal),
                "controller-revision-hash": revision,
            }
            extra = {"hostname": name, "subdomain": spec.get("serviceName", ""), "volumes": volumes}
            self._create_pod(s, spec["template"], name=name, extra_labels=labels, spec_extra=extra)
            break  # one step at a time: the next ordinal waits for this one to be Ready
        for pod in pods:
            ordinal = int(pod["metadata"]["name"].rsplit("-", 1)[1])
            if ordinal >= replicas:
                self._delete(pod)
        outdated = [p for p in pods if p["metadata"].get("labels", {}).get("controller-revision-hash") != revision]
        if outdated and all(_is_ready(p) for p in pods):
            self._delete(max(outdated, key=lambda p: int(p["metadata"]["name"].rsplit("-", 1)[1])))
        ready = sum(1 for p in pods if _is_ready(p))
        updated = len(pods) - len(outdated)
        self._status(
            s,
            {
                "observedGeneration": meta.get("generation", 1),
                "replicas": len(pods),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "currentReplicas": updated,
                "updatedReplicas": updated,
                "currentRevision": revision,
                "updateRevision": revision,
            },
        )

    # ---- Job -------------------------------------------------------------------------------

    def _job(self, job: Obj, pods: list[Obj]) -> None:
        status = job.get("status") or {}
        if any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in status.get("conditions", [])):
            return
        spec = job["spec"]
        meta = job["metadata"]
        backoff_limit = int(spec.get("backoffLimit", 6))
        active = [p for p in pods if _phase(p) not in ("Succeeded", "Failed")]
        failed = [p for p in pods if _phase(p) == "Failed"]
        succeeded = [p for p in pods if _phase(p) == "Succeeded"]
        if not status.get("startTime"):
            self._status(job, {"startTime": podspec.now(), "active": 0})
            return
        if succeeded:
            final = podspec.job_finished_status(succeeded=True, reason="Completed", message="", failed=len(failed))
            self._status(job, final)
            return
        for pod in failed:
            for cs in (pod.get("status") or {}).get("containerStatuses", []):
                code = cs.get("state", {}).get("terminated", {}).get("exitCode")
                if code is not None and podspec.fails_job(spec, int(code)):
                    text = (
                        f"Container {cs['name']} for pod {meta['namespace']}/{pod['metadata']['name']} "
                        f"failed with exit code {code} matching FailJob rule at index 0"
                    )
                    for other in active:
                        self._delete(other)
                    final = podspec.job_finished_status(
                        succeeded=False, reason="PodFailurePolicy", message=text, failed=len(failed)
                    )
                    self._status(job, final)
                    return
        if len(failed) > backoff_limit:
            text = "Job has reached the specified backoff limit"
            final = podspec.job_finished_status(
                succeeded=False, reason="BackoffLimitExceeded", message=text, failed=len(failed)
            )
            self._status(job, final)
            return
        uid = meta["uid"]
        if not active:
            if failed:
                retry_at = self._job_retry_at.setdefault(
                    f"{uid}/{len(failed)}",
                    time.monotonic() + min(JOB_BACKOFF_START * 2 ** (len(failed) - 1), JOB_BACKOFF_MAX),
                )
                if time.monotonic() < retry_at:
                    self._status(job, {"active": 0, "ready": 0, "failed": len(failed)})
                    return
            created = self._create_pod(job, spec["template"])
            if created is not None:
                active.append(created)
        self._status(
            job,
            {"active": len(active), "ready": sum(1 for p in active if _is_ready(p)), "failed": len(failed)},
        )
