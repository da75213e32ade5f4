"""What kube-apiserver's registry strategies set on built-in kinds when they are created.

A Job without `manualSelector` gets a selector on a label naming its own uid, and that label
(plus `job-name`) on its pod template (k8s.io/kubernetes pkg/registry/batch/job/strategy.go
`generateSelector`; the `batch.kubernetes.io/` labels since 1.27). Clients rely on it:
`kubectl logs job/NAME` and `kubectl describe job` find the Job's pods through `spec.selector`.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def default_job(job: Obj) -> None:
    """Give a new Job (with its uid set) the selector and template labels the API server generates."""
    spec = job.setdefault("spec", {})
    if spec.get("manualSelector"):
        return
    uid = job["metadata"]["uid"]
    name = job["metadata"]["name"]
    generated = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **generated}
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
