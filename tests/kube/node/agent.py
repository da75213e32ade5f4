"""`NodeAgent`: one node of the sandbox cluster: the controllers, the kubelet and the DNS names.

Every `POLL_SECONDS` it reads the API (as the cluster's administrator, in the emulator's process:
the controller manager and the kubelet are trusted components):

1. `controllers.Controllers.reconcile()`: workloads -> Pods, PVCs bound;
2. a `pods.PodWorker` for each new Pod (bound to this node: `spec.nodeName` is set, the
   scheduler's part), stopped when its Pod is gone;
3. each pod's hosts file: every Service's DNS names -> the address of a Ready pod it selects
   (the endpoints controller and cluster DNS, see network.py), and in each pod a Service
   selects, its `port` redirected to its `targetPort` where the two differ (kube-proxy's part).

    with NodeAgent(cluster, workdir, api_host=..., api_port=..., ca_cert=...) as agent:
        ...
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.kube.node.controllers import Controllers
from tests.kube.node.images import known_images
from tests.kube.node.network import PodNetwork, service_names
from tests.kube.node.pods import NodeContext, PodWorker
from tests.kube.node.podspec import Obj

POLL_SECONDS = 0.5


def _ready(pod: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions", []))


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """A Service's selector (a plain map: equality on every key) against a pod's labels."""
    return all(labels.get(k) == v for k, v in selector.items())


def dns_names(services: list[Obj], pods: list[Obj], pod_namespace: str) -> dict[str, str]:
    """Name -> address for a pod in `pod_namespace`: each Service's names to its first Ready
    endpoint (pods in its namespace matching its selector), and StatefulSet pods' names under
    their headless Service (`HOSTNAME.SUBDOMAIN.NS.svc.cluster.local`)."""
    names: dict[str, str] = {}
    for svc in services:
        ns = svc["metadata"]["namespace"]
        selector = (svc.get("spec") or {}).get("selector")
        if not selector:
            continue
        endpoints = sorted(
            (
                p
                for p in pods
                if p["metadata"]["namespace"] == ns
                and _ready(p)
                and (p.get("status") or {}).get("podIP")
                and _selects(selector, p["metadata"].get("labels", {}))
            ),
            key=lambda p: p["metadata"]["name"],
        )
        if not endpoints:
            continue
        for name in service_names(svc["metadata"]["name"], ns, pod_namespace):
            names[name] = endpoints[0]["status"]["podIP"]
        for pod in endpoints:
            spec = pod["spec"]
            if spec.get("subdomain") == svc["metadata"]["name"] and spec.get("hostname"):
                for name in service_names(svc["metadata"]["name"], ns, pod_namespace):
                    names[f"{spec['hostname']}.{name}"] = pod["status"]["podIP"]
    return names


def port_redirects(services: list[Obj], pod: Obj) -> frozenset[tuple[str, int, int]]:
    """(protocol, Service port, container port) for each Service port selecting `pod` whose
    target port (a number, or the name of one of the pod's container ports) is another number."""
    ports = {
        p["name"]: int(p["containerPort"])
        for c in pod["spec"].get("containers", [])
        for p in c.get("ports") or []
        if p.get("name")
    }
    found = set()
    for svc in services:
        selector = (svc.get("spec") or {}).get("selector")
        if svc["metadata"]["namespace"] != pod["metadata"]["namespace"] or not selector:
            continue
        if not _selects(selector, pod["metadata"].get("labels", {})):
            continue
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            number = int(target) if str(target).isdigit() else ports.get(str(target))
            if number is not None and number != int(port["port"]):
                found.add((port.get("protocol", "TCP"), int(port["port"]), number))
    return frozenset(found)


class NodeAgent:
    def __init__(self, cluster: Any, workdir: Path, *, api_port: int, ca_cert: bytes, network: PodNetwork) -> None:
        self.cluster = cluster
        self.network = network
        self.node = NodeContext(
            cluster=cluster,
            network=network,
            workdir=workdir,
            images=known_images(),
            api_host=network.node_ip,
            api_port=api_port,
            ca_cert=ca_cert,
            dns=lambda namespace: dns_names(cluster.select("Service"), cluster.select("Pod"), namespace),
        )
        self.workers: dict[str, PodWorker] = {}  # pod uid -> worker
        self.controllers = Controllers(cluster, self._running, self._running_name)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="node-agent", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()

    def close(self) -> None:
        self.stop.set()
        self._thread.join(30)
        for worker in self.workers.values():
            worker.stop()
        for worker in self.workers.values():
            worker.thread.join(60)

    def _running(self, uid: str) -> bool:
        worker = self.workers.get(uid)
        return worker is not None and worker.thread.is_alive()

    def _running_name(self, namespace: str, name: str) -> bool:
        return any(w.namespace == namespace and w.name == name and w.thread.is_alive() for w in self.workers.values())

    def _loop(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            try:
                self._step()
            except Exception as exc:  # noted and reported by the agent's owner; the loop goes on
                self.error = exc
                print(f"node agent: {exc!r}", file=sys.stderr, flush=True)

    def _step(self) -> None:
        self.controllers.reconcile()
        pods = self.cluster.select("Pod")
        live = {p["metadata"]["uid"]: p for p in pods}
        for uid, pod in live.items():
            if uid not in self.workers and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                worker = PodWorker(self.node, pod)
                self.workers[uid] = worker
                worker.start()
        for uid, worker in list(self.workers.items()):
            if uid not in live or live[uid]["metadata"].get("deletionTimestamp"):
                worker.stop()
            if not worker.thread.is_alive() and uid not in live:
                del self.workers[uid]
        services = self.cluster.select("Service")
        for uid, worker in self.workers.items():
            if uid in live and worker.ip:
                names = dns_names(services, pods, worker.namespace)
                self.network.write_hosts(worker.key, worker.name, names)
                self.network.set_port_redirects(worker.key, port_redirects(services, live[uid]))
