"""What a kubelet and the Job controller derive from a Pod's spec: pure functions, no processes.

Shared by `FakeKubelet` (tests/kube/kubelet.py, one Job in a temporary directory) and the node
agent (tests/kube/node/), so both read a manifest the same way:

- `expand`: `$(VAR)` references in command, args and env values, as the kubelet expands them
  (k8s.io/kubernetes third_party/forked/golang/expansion/expand.go: `$$` is a literal `$`, an
  undefined `$(NAME)` stays as written, a `$` before anything else is kept);
- `container_env`: a container's environment in kubelet order (the Services' variables, then
  `envFrom`, then `env` in order, each value expanded against what came before:
  pkg/kubelet/kubelet_pods.go makeEnvironmentVariables), with `value`, `secretKeyRef`,
  `configMapKeyRef` and `fieldRef`; a missing Secret, ConfigMap or key (not `optional`) is
  `CreateContainerConfigError` with the kubelet's message;
- `container_status`, `job_finished_status`, `fails_job`: the status shapes the kubelet and the
  Job controller write.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

Obj = dict[str, Any]
# (kind, namespace, name) -> the object, or None when it does not exist.
Lookup = Callable[[str, str, str], Obj | None]


class ContainerConfigError(Exception):
    """The container cannot start (kubelet: waiting, reason CreateContainerConfigError)."""

    reason = "CreateContainerConfigError"


def now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def expand(text: str, env: Mapping[str, str]) -> str:
    """`$(VAR)` expansion as the kubelet does it (expansion.Expand with MappingFuncFor)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 >= len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":  # `$$` is an escaped `$`
            out.append("$")
            i += 2
        elif following == "(":
            close = text.find(")", i + 2)
            if close == -1:  # unterminated: kept as written
                out.append(text[i:])
                break
            name = text[i + 2 : close]
            out.append(env.get(name, f"$({name})"))
            i = close + 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


_LABEL_PATH = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


def field_value(pod: Obj, path: str) -> str:
    """The downward API's `fieldRef.fieldPath` (pkg/fieldpath/fieldpath.go ExtractFieldPathAsString
    and the kubelet's podFieldSelectorRuntimeValue for spec.* and status.*)."""
    meta = pod.get("metadata", {})
    status = pod.get("status", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIP": status.get("podIP", ""),
        "status.podIPs": ",".join(p["ip"] for p in status.get("podIPs", [])),
    }
    if path in simple:
        return str(simple[path])
    match = _LABEL_PATH.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ContainerConfigError(f'unsupported fieldPath: "{path}"')


def _key_ref(kind: str, ref: Obj, namespace: str, lookup: Lookup) -> str | None:
    obj = lookup(kind, namespace, ref["name"])
    optional = bool(ref.get("optional", False))
    if obj is None:
        if optional:
            return None
        raise ContainerConfigError(f'{kind.lower()} "{ref["name"]}" not found')
    if kind == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        data.update(obj.get("stringData") or {})
    else:
        data = dict(obj.get("data") or {})
    if ref["key"] not in data:
        if optional:
            return None
        raise ContainerConfigError(f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}")
    return str(data[ref["key"]])


def container_env(container: Obj, pod: Obj, lookup: Lookup, service_env: Mapping[str, str] = {}) -> dict[str, str]:
    """The container's environment as the kubelet builds it (see the module docstring)."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = dict(service_env)
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key not in source:
                continue
            ref = source[key]
            obj = lookup(kind, namespace, ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{kind.lower()} "{ref["name"]}" not found')
            for name, data in (obj.get("data") or {}).items():
                env[prefix + name] = base64.b64decode(data).decode() if kind == "Secret" else str(data)
    for var in container.get("env", []):
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        source = var["valueFrom"]
        value: str | None
        if "secretKeyRef" in source:
            value = _key_ref("Secret", source["secretKeyRef"], namespace, lookup)
        elif "configMapKeyRef" in source:
            value = _key_ref("ConfigMap", source["configMapKeyRef"], namespace, lookup)
        elif "fieldRef" in source:
            value = field_value(pod, source["fieldRef"]["fieldPath"])
        else:
            raise ContainerConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


def service_env(services: list[Obj]) -> dict[str, str]:
    """The Docker-links variables the kubelet adds for each Service of the pod's namespace
    (pkg/kubelet/envvars/envvars.go FromServices): `NAME_SERVICE_HOST`, `NAME_SERVICE_PORT`,
    `NAME_SERVICE_PORT_<PORTNAME>`, NAME upper-cased with `-` as `_`; headless Services have none."""
    env: dict[str, str] = {}
    for svc in services:
        spec = svc.get("spec", {})
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        ports = spec.get("ports", [])
        env[f"{prefix}_SERVICE_HOST"] = ip
        if ports:
            env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
    return env


def argv(container: Obj, env: Mapping[str, str], image_entrypoint: list[str], image_cmd: list[str]) -> list[str]:
    """What runs: `command` replaces the image's ENTRYPOINT (and drops its CMD), `args` replaces
    CMD; both expanded (kubelet kuberuntime makeCommandAndArgs / ExpandContainerCommandAndArgs)."""
    command = container.get("command")
    args = container.get("args")
    default_args = args if args is not None else image_cmd
    words = [*command, *(args or [])] if command else [*image_entrypoint, *default_args]
    return [expand(str(word), env) for word in words]


def container_status(container: Obj, state: Obj, *, ready: bool, restarts: int = 0, last: Obj | None = None) -> Obj:
    """One entry of `status.containerStatuses`, as the kubelet reports it."""
    digest = hashlib.sha256(container["image"].encode()).hexdigest()
    status: Obj = {
        "name": container["name"],
        "image": container["image"],
        "imageID": f"{container['image'].split(':')[0]}@sha256:{digest}",  # required, as a kubelet reports it
        "ready": ready,
        "started": "running" in state,
        "state": state,
        "restartCount": restarts,
    }
    if last:
        status["lastState"] = last
    return status


def terminated(exit_code: int, message: str, started: str) -> Obj:
    return {
        "terminated": {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "message": message,
            "startedAt": started,
            "finishedAt": now(),
        }
    }


def termination_message(container: Obj, written: str, log_tail: Callable[[], str], exit_code: int) -> str:
    """`terminationMessagePath`'s content (at most 4096 bytes), or with `FallbackToLogsOnError` and
    a failed container and an empty file, the log's last 80 lines / 2048 bytes (kubelet)."""
    message = written[:4096]
    if not message and exit_code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
        lines = log_tail().splitlines()[-80:]
        message = "\n".join(lines)[-2048:]
    return message


def fails_job(spec: Obj, exit_code: int) -> bool:
    """Whether the Job's podFailurePolicy fails the whole Job on this exit code (FailJob rules)."""
    for rule in (spec.get("podFailurePolicy") or {}).get("rules", []):
        on_exit = rule.get("onExitCodes")
        if rule.get("action") == "FailJob" and on_exit:
            values = set(on_exit.get("values", []))
            inside = exit_code in values
            if inside == (on_exit.get("operator", "In") == "In"):
                return True
    return False


def job_finished_status(*, succeeded: bool, reason: str, message: str, failed: int) -> Obj:
    """The Job controller's status when a Job ends (Complete or Failed, with the 1.31+ interim
    SuccessCriteriaMet / FailureTarget conditions)."""
    stamp = now()
    conditions: list[Obj] = []
    if succeeded:
        conditions.append({"type": "SuccessCriteriaMet", "status": "True", "reason": reason})
        conditions.append({"type": "Complete", "status": "True", "reason": reason, "lastTransitionTime": stamp})
    else:
        conditions.append({"type": "FailureTarget", "status": "True", "reason": reason, "message": message})
        conditions.append(
            {"type": "Failed", "status": "True", "reason": reason, "message": message, "lastTransitionTime": stamp}
        )
    status: Obj = {"active": 0, "ready": 0, "failed": failed, "conditions": conditions}
    if succeeded:
        status.update(succeeded=1, completionTime=stamp)
    return status
