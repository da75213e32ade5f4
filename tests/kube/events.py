"""Core Events (`v1`) seen through `events.k8s.io/v1`, as the API server serves the one store under both.

kopf and the operator write core Events; `kubectl events` and newer clients may read
`events.k8s.io/v1`. The API server keeps one object and converts between the two schemas
(k8s.io/kubernetes pkg/apis/events/v1/conversion.go): `involvedObject` is `regarding`, `message`
is `note`, `source` is `deprecatedSource` (and `reportingController`/`reportingInstance` when
those are unset), `firstTimestamp`/`lastTimestamp`/`count` are `deprecated*`.
"""

from __future__ import annotations

import copy
from typing import Any

from kmock import resource

Obj = dict[str, Any]
CORE_EVENTS = resource(group="", version="v1", plural="events")
EVENTS_V1 = resource(group="events.k8s.io", version="v1", plural="events")

_RENAMED_TO_V1 = {
    "involvedObject": "regarding",
    "message": "note",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
}


def to_events_v1(event: Obj) -> Obj:
    """A core Event as events.k8s.io/v1 shows it."""
    out = {_RENAMED_TO_V1.get(k, k): copy.deepcopy(v) for k, v in event.items() if k != "reportingComponent"}
    out["apiVersion"] = "events.k8s.io/v1"
    source = event.get("source") or {}
    out["reportingController"] = event.get("reportingComponent") or source.get("component", "")
    out["reportingInstance"] = event.get("reportingInstance") or source.get("host", "")
    return out


def to_core(event: Obj) -> Obj:
    """An events.k8s.io/v1 Event written by a client, stored as the core Event it is."""
    back = {v: k for k, v in _RENAMED_TO_V1.items()}
    out = {back.get(k, k): copy.deepcopy(v) for k, v in event.items() if k != "reportingController"}
    out["apiVersion"] = "v1"
    if event.get("reportingController"):
        out["reportingComponent"] = event["reportingController"]
    return out
