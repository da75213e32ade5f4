"""`GET .../pods/<name>/log`: what the kubelet stand-in captured from each container.

On a cluster the API server proxies this to the kubelet, which reads the container runtime's
log (stdout and stderr interleaved, one stream per container). Here `FakeKubelet` writes each
container's output to a file and attaches it (`ContainerLogs.attach`); this module serves it
as the kubelet does (k8s.io/kubernetes pkg/kubelet/server/server.go `getContainerLogs`,
pkg/registry/core/pod/rest/log.go):

- `container` names the container; a pod with several needs it (400 naming the choices);
- `follow=true` streams (chunked) until the container has terminated and its output is read;
- `tailLines` (last N lines) and `limitBytes` (first N bytes);
- a container that has not started yet: 400 `container "x" in pod "p" is waiting to start`.

`timestamps`, `previous`, `sinceSeconds` and `sinceTime` are refused with 400 rather than
ignored: the stand-in keeps no timestamps and no previous instances, and a silently different
answer would be worse than a clear "not served here".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web

Obj = dict[str, Any]
PodKey = tuple[str, str]  # namespace, pod name
FOLLOW_POLL_SECONDS = 0.1
UNSERVED_PARAMETERS = ("timestamps", "previous", "sinceSeconds", "sinceTime")


class LogError(Exception):
    """A log request the kubelet would refuse: `code` and message for the API `Status`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ContainerLogs:
    """Which file holds each container's output, by (namespace, pod) and container name."""

    def __init__(self) -> None:
        self._files: dict[PodKey, dict[str, Path]] = {}

    def attach(self, namespace: str, pod: str, container: str, path: Path) -> None:
        self._files.setdefault((namespace, pod), {})[container] = path

    def forget(self, namespace: str, pod: str) -> None:
        """The pod is gone: so are its logs (as on a node)."""
        self._files.pop((namespace, pod), None)

    def _file(self, namespace: str, pod: Obj, container: str) -> Path:
        path = self._files.get((namespace, pod["metadata"]["name"]), {}).get(container)
        if path is None or not path.exists():
            raise LogError(
                400,
                f'container "{container}" in pod "{pod["metadata"]["name"]}" is waiting to start: ContainerCreating',
            )
        return path

    async def serve(
        self,
        raw: aiohttp.web.BaseRequest,
        params: Mapping[str, str],
        namespace: str,
        pod: Obj,
        current: Callable[[], Obj | None],
    ) -> aiohttp.web.StreamResponse:
        """Answer one log request for `pod`; `current()` re-reads the pod (to see its container end)."""
        for name in UNSERVED_PARAMETERS:
            if name in params and params[name] not in {"", "false"}:
                raise LogError(400, f"the emulated kubelet does not serve {name}={params[name]}")
        container = _container_name(pod, params.get("container"))
        path = self._file(namespace, pod, container)
        tail = int(params["tailLines"]) if params.get("tailLines") else None
        limit = int(params["limitBytes"]) if params.get("limitBytes") else None
        if params.get("follow", "").lower() not in {"true", "1"}:
            return aiohttp.web.Response(body=_window(path.read_bytes(), tail, limit), content_type="text/plain")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain", "Transfer-Encoding": "chunked"})
        await response.prepare(raw)
        with path.open("rb") as stream:
            first = _window(stream.read(), tail, limit)
            sent = len(first)
            if first:
                await response.write(first)
            while limit is None or sent < limit:
                chunk = stream.read()
                if chunk:
                    chunk = chunk if limit is None else chunk[: limit - sent]
                    sent += len(chunk)
                    await response.write(chunk)
                    continue
                if _terminated(current(), container):
                    rest = stream.read()  # written between the last read and the end
                    if rest:
                        await response.write(rest if limit is None else rest[: limit - sent])
                    break
                if raw.transport is None or raw.transport.is_closing():
                    break  # the client went away (kubectl logs -f interrupted)
                await asyncio.sleep(FOLLOW_POLL_SECONDS)
        await response.write_eof()
        return response


def _container_name(pod: Obj, wanted: str | None) -> str:
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers", [])]
    pod_name = pod["metadata"]["name"]
    if wanted:
        if wanted not in names:
            raise LogError(400, f"container {wanted} is not valid for pod {pod_name}")
        return wanted
    if len(names) == 1:
        return names[0]
    raise LogError(400, f"a container name must be specified for pod {pod_name}, choose one of: [{' '.join(names)}]")


def _window(data: bytes, tail: int | None, limit: int | None) -> bytes:
    if tail is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-tail:]) if tail > 0 else b""
    return data if limit is None else data[:limit]


def _terminated(pod: Obj | None, container: str) -> bool:
    """Whether the container has ended (or its pod is gone): a follow stream then ends."""
    if pod is None:
        return True
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return "terminated" in (status.get("state") or {})
    return False
