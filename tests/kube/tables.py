"""Server-side Table output (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), as `kubectl get` asks it.

kubectl prints the columns the server sends. For custom resources those are `Name` and the
CRD's `additionalPrinterColumns`, each cell its JSONPath evaluated on the object: a `string`
column prints the value as kubectl's JSONPath does (lists and maps as compact JSON), `integer`
and `number` cells stay numbers, a `date` cell becomes the age (`5m`), a missing value an empty
cell (apiextensions-apiserver `registry/customresource/tableconvertor/tableconvertor.go`,
`cellForJSONValue`). Built-in kinds have the columns of kube-apiserver's printers
(`pkg/printers/internalversion/printers.go`: pods `NAME READY STATUS RESTARTS AGE`, jobs
`NAME STATUS COMPLETIONS DURATION AGE`, ...); a kind without a printer gets the default
`Name, Created At`. Ages use the API machinery's `duration.HumanDuration`. Each row carries the
object as `PartialObjectMetadata` (the server's default `includeObject=Metadata`), the whole
object with `includeObject=Object`, or nothing with `None`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

Obj = dict[str, Any]
Cell = Any
Column = tuple[str, str, int]  # name, type, priority (1: only with -o wide)

NAME_COLUMN: Obj = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}


# What apiextensions gives a CRD version that declares no additionalPrinterColumns.
AGE_COLUMN: Obj = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def wants_table(accept: str) -> bool:
    """Whether the Accept header asks for a meta.k8s.io/v1 Table."""
    for part in accept.split(","):
        params = {p.strip() for p in part.split(";")}
        if {"as=Table", "g=meta.k8s.io", "v=v1"} <= params:
            return True
    return False


# ---- time ----------------------------------------------------------------------------------


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _since(value: str | None, now: dt.datetime) -> str:
    """printers.go translateTimestampSince: `<unknown>` for no time."""
    when = _parse_time(value)
    return "<unknown>" if when is None else human_duration((now - when).total_seconds())


# ---- JSONPath (the simple paths CRD columns allow) ---------------------------------------------

_STEP = re.compile(r"\.([A-Za-z0-9_\-$]+)|\[(\d+)\]|\['([^']*)'\]")
_MISSING = object()


def evaluate(path: str, obj: Any) -> Any:
    """A CRD column's JSONPath (`.spec.data.symbols`, `.status.conditions[0].type`); _MISSING if absent."""
    value = obj
    position = 0
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {path[position:]!r}")
        position = step.end()
        field, index, quoted = step.groups()
        if index is not None:
            if not isinstance(value, list) or int(index) >= len(value):
                return _MISSING
            value = value[int(index)]
        else:
            key = field if field is not None else quoted
            if not isinstance(value, dict) or key not in value:
                return _MISSING
            value = value[key]
    return value


def _jsonpath_text(value: Any) -> str:
    """How kubectl's JSONPath prints one result: maps and lists as JSON, scalars as Go's fmt does."""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _crd_cell(column: Obj, obj: Obj, now: dt.datetime) -> Cell:
    value = evaluate(column["jsonPath"], obj)
    if value is _MISSING or value is None:
        return None
    kind = column["type"]
    if kind == "string":
        return _jsonpath_text(value)
    if kind == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "date" and isinstance(value, str):
        try:
            return _since(value, now)
        except ValueError:
            return "<invalid>"
    return None


def crd_columns(columns: Iterable[Obj]) -> list[Obj]:
    """The column definitions of a CRD version's additionalPrinterColumns."""
    return [NAME_COLUMN] + [
        {
            "name": c["name"],
            "type": c["type"],
            "format": c.get("format", ""),
            "description": c.get("description")
            or f"Custom resource definition column (in JSONPath format): {c['jsonPath']}",
            "priority": c.get("priority", 0),
        }
        for c in columns
    ]


# ---- built-in printers -------------------------------------------------------------------------


def _containers(obj: Obj) -> list[Obj]:
    return list(((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers", []))


def _selector(obj: Obj) -> str:
    selector = (obj.get("spec") or {}).get("selector") or {}
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        values = ",".join(expr.get("values") or [])
        terms.append(f"{expr['key']} {expr['operator'].lower()} ({values})")
    return ",".join(terms) or "<none>"


def _pod_cells(pod: Obj, now: dt.datetime) -> list[Cell]:
    """printers.go printPod: READY, STATUS (the container's reason wins over the phase), RESTARTS."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    reason = status.get("reason") or status.get("phase") or "Pending"
    restarts = 0
    ready = 0
    for container in reversed(statuses):
        restarts += int(container.get("restartCount", 0))
        state = container.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            terminated = state["terminated"]
            if terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Signal:{terminated['signal']}"
            else:
                reason = f"ExitCode:{terminated.get('exitCode', 0)}"
        elif container.get("ready") and "running" in state:
            ready += 1
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    total = len(spec.get("containers") or [])
    return [
        f"{ready}/{total}",
        reason,
        str(restarts),
        _since(pod["metadata"].get("creationTimestamp"), now),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        "<none>",
    ]


def _condition_true(obj: Obj, kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True" for c in (obj.get("status") or {}).get("conditions") or []
    )


def _job_cells(job: Obj, now: dt.datetime) -> list[Cell]:
    """printers.go printJob: STATUS from the conditions, COMPLETIONS succeeded/completions, DURATION."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    succeeded = int(status.get("succeeded", 0))
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    else:
        parallelism = int(spec.get("parallelism", 0))
        completions = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    start, end = _parse_time(status.get("startTime")), _parse_time(status.get("completionTime"))
    duration = "" if start is None else human_duration(((end or now) - start).total_seconds())
    if _condition_true(job, "Failed"):
        state = "Failed"
    elif _condition_true(job, "Complete"):
        state = "Complete"
    elif (job.get("metadata") or {}).get("deletionTimestamp"):
        state = "Terminating"
    elif _condition_true(job, "Suspended"):
        state = "Suspended"
    elif _condition_true(job, "FailureTarget"):
        state = "FailureTarget"
    elif _condition_true(job, "SuccessCriteriaMet"):
        state = "SuccessCriteriaMet"
    else:
        state = "Running"
    return [state, completions, duration, *_workload_tail(job, now, selector=True)]


def _ready_replicas(obj: Obj) -> str:
    """READY of a Deployment or StatefulSet: ready pods / wanted replicas (1 when unset)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return f"{int(status.get('readyReplicas', 0))}/{int(spec.get('replicas', 1))}"


def _workload_tail(obj: Obj, now: dt.datetime, *, selector: bool) -> list[Cell]:
    """The columns the workload printers end with: AGE, CONTAINERS, IMAGES (wide), SELECTOR (wide)."""
    containers = _containers(obj)
    cells: list[Cell] = [
        _since(obj["metadata"].get("creationTimestamp"), now),
        ",".join(c["name"] for c in containers),
        ",".join(c.get("image", "") for c in containers),
    ]
    return [*cells, _selector(obj)] if selector else cells


def _deployment_cells(obj: Obj, now: dt.datetime) -> list[Cell]:
    status = obj.get("status") or {}
    return [
        _ready_replicas(obj),
        str(int(status.get("updatedReplicas", 0))),
        str(int(status.get("availableReplicas", 0))),
        *_workload_tail(obj, now, selector=True),
    ]


def _statefulset_cells(obj: Obj, now: dt.datetime) -> list[Cell]:
    return [_ready_replicas(obj), *_workload_tail(obj, now, selector=False)]


def _configmap_cells(obj: Obj, now: dt.datetime) -> list[Cell]:
    return [
        len(obj.get("data") or {}) + len(obj.get("binaryData") or {}),
        _since(obj["metadata"].get("creationTimestamp"), now),
    ]


def _secret_cells(obj: Obj, now: dt.datetime) -> list[Cell]:
    return [obj.get("type", ""), len(obj.get("data") or {}), _since(obj["metadata"].get("creationTimestamp"), now)]


def _service_cells(obj: Obj, now: dt.datetime) -> list[Cell]:
    spec = obj.get("spec") or {}
    ports = ",".join(f"{p['port']}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []) or "<none>"
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>"
    return [
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        ",".join(spec.get("externalIPs") or []) or "<none>",
        ports,
        _since(obj["metadata"].get("creationTimestamp"), now),
        selector,
    ]


def _event_cells(event: Obj, now: dt.datetime) -> list[Cell]:
    """printers.go printEvent: LAST SEEN, TYPE, REASON, OBJECT (kind/name, lower-case kind), MESSAGE."""
    involved = event.get("involvedObject") or {}
    last = event.get("lastTimestamp") or event.get("eventTime") or event["metadata"].get("creationTimestamp")
    first = event.get("firstTimestamp") or event.get("eventTime") or event["metadata"].get("creationTimestamp")
    source = event.get("source") or {}
    source_text = source.get("component", "") + (f", {source['host']}" if source.get("host") else "")
    return [
        _since(last, now),
        event.get("type", ""),
        event.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        involved.get("fieldPath", ""),
        source_text or event.get("reportingComponent", ""),
        (event.get("message") or "").strip(),
        _since(first, now),
        int(event.get("count", 1)),
        event["metadata"]["name"],
    ]


def _namespace_cells(obj: Obj, now: dt.datetime) -> list[Cell]:
    return [(obj.get("status") or {}).get("phase", "Active"), _since(obj["metadata"].get("creationTimestamp"), now)]


def _service_account_cells(obj: Obj, now: dt.datetime) -> list[Cell]:
    return [len(obj.get("secrets") or []), _since(obj["metadata"].get("creationTimestamp"), now)]


Printer = tuple[list[Column], Callable[[Obj, dt.datetime], list[Cell]]]


def _columns(names: str) -> list[Column]:
    """`"Ready,Status,*IP"` -> string columns; a `*` marks a wide (priority 1) column."""
    return [(n.lstrip("*"), "string", 1 if n.startswith("*") else 0) for n in names.split(",")]


PRINTERS: dict[str, Printer] = {
    "Pod": (_columns("Ready,Status,Restarts,Age,*IP,*Node,*Nominated Node,*Readiness Gates"), _pod_cells),
    "Job": (_columns("Status,Completions,Duration,Age,*Containers,*Images,*Selector"), _job_cells),
    "Deployment": (_columns("Ready,Up-to-date,Available,Age,*Containers,*Images,*Selector"), _deployment_cells),
    "StatefulSet": (_columns("Ready,Age,*Containers,*Images"), _statefulset_cells),
    "ConfigMap": (_columns("Data,Age"), _configmap_cells),
    "Secret": (_columns("Type,Data,Age"), _secret_cells),
    "Service": (_columns("Type,Cluster-IP,External-IP,Port(s),Age,*Selector"), _service_cells),
    "Namespace": (_columns("Status,Age"), _namespace_cells),
    "ServiceAccount": (_columns("Secrets,Age"), _service_account_cells),
    "Event": (
        _columns("Last Seen,Type,Reason,Object,*Subobject,*Source,Message,*First Seen,*Count,*Name"),
        _event_cells,
    ),
}
# printers.go prints Events without a Name column first (the name is a wide column at the end).
_NO_NAME_FIRST = {"Event"}


def _definitions(kind: str) -> list[Obj]:
    if kind not in PRINTERS:
        return [NAME_COLUMN, {"name": "Created At", "type": "date", "format": "", "description": "", "priority": 0}]
    columns = [{"name": n, "type": t, "format": "", "description": "", "priority": p} for n, t, p in PRINTERS[kind][0]]
    return columns if kind in _NO_NAME_FIRST else [NAME_COLUMN, *columns]


def _cells(kind: str, obj: Obj, now: dt.datetime) -> list[Cell]:
    if kind not in PRINTERS:
        return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp")]
    cells = PRINTERS[kind][1](obj, now)
    return cells if kind in _NO_NAME_FIRST else [obj["metadata"]["name"], *cells]


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table(
    kind: str,
    objects: Iterable[Obj],
    *,
    crd_printer_columns: list[Obj] | None = None,
    include_object: str = "Metadata",
    list_metadata: Obj | None = None,
    now: dt.datetime | None = None,
) -> Obj:
    """A meta.k8s.io/v1 Table of `objects` of `kind` (a CRD's columns when `crd_printer_columns` is given)."""
    now = now or dt.datetime.now(dt.UTC)
    if crd_printer_columns is not None:
        definitions = crd_columns(crd_printer_columns)

        def cells(obj: Obj) -> list[Cell]:
            return [obj["metadata"]["name"], *(_crd_cell(c, obj, now) for c in crd_printer_columns)]

    else:
        definitions = _definitions(kind)

        def cells(obj: Obj) -> list[Cell]:
            return _cells(kind, obj, now)

    rows = []
    for obj in objects:
        row: Obj = {"cells": cells(obj)}
        attached = _row_object(obj, include_object)
        if attached is not None:
            row["object"] = attached
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata or {},
        "columnDefinitions": definitions,
        "rows": rows,
    }
