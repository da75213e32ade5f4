"""Where the pods the operator creates may run: the chart's scheduling knobs, applied to every one.

The chart gives its own pods nodeSelector, tolerations, affinity, priorityClassName, image pull
Secrets and extra labels/annotations (`global` and per component, `_helpers.tpl`
`kubetrader.podScheduling`). The pods the operator creates (Backtest and study-driver Jobs, a
LiveDeployment's gateway and runner) are not in the chart, so they get the same knobs from
`operator.childPods` merged over `global`, passed as one JSON object in
KUBETRADER_OPERATOR_POD_SCHEDULING. A cluster that taints its trading nodes or pulls from a
private registry then runs the operator's pods where it runs the chart's.

`apply_scheduling` is pure: a pod template in, a new one out. The builder's own labels and
annotations win over the extra ones (a selector, a NetworkPolicy or the spec-generation
annotation must keep meaning what the builder made them mean).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PodScheduling(BaseModel):
    """The knobs, in the pod spec's own field names (the chart passes them through as written)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] = Field(default_factory=dict)
    priority_class_name: str = Field(default="", alias="priorityClassName")
    # names of Secrets of type kubernetes.io/dockerconfigjson in the pod's namespace
    image_pull_secrets: tuple[str, ...] = Field(default=(), alias="imagePullSecrets")
    pod_labels: dict[str, str] = Field(default_factory=dict, alias="podLabels")
    pod_annotations: dict[str, str] = Field(default_factory=dict, alias="podAnnotations")


def apply_scheduling(template: dict[str, Any], scheduling: PodScheduling) -> dict[str, Any]:
    """`template` (a pod template: metadata + spec) with the knobs set; empty knobs add nothing."""
    out = copy.deepcopy(template)
    metadata = out.setdefault("metadata", {})
    spec = out["spec"]
    if scheduling.pod_labels:
        metadata["labels"] = {**scheduling.pod_labels, **metadata.get("labels", {})}
    if scheduling.pod_annotations:
        metadata["annotations"] = {**scheduling.pod_annotations, **metadata.get("annotations", {})}
    if scheduling.node_selector:
        spec["nodeSelector"] = {**scheduling.node_selector, **spec.get("nodeSelector", {})}
    if scheduling.tolerations:
        spec["tolerations"] = [*spec.get("tolerations", []), *copy.deepcopy(list(scheduling.tolerations))]
    if scheduling.affinity and "affinity" not in spec:
        spec["affinity"] = copy.deepcopy(scheduling.affinity)
    if scheduling.priority_class_name and "priorityClassName" not in spec:
        spec["priorityClassName"] = scheduling.priority_class_name
    if scheduling.image_pull_secrets:
        names = [s["name"] for s in spec.get("imagePullSecrets", [])]
        names += [n for n in scheduling.image_pull_secrets if n not in names]
        spec["imagePullSecrets"] = [{"name": n} for n in names]
    return out
