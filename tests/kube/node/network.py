"""The pod network: one Linux network namespace per Pod on a bridge, names in /etc/netns/NS/hosts.

Each Pod gets a network namespace (`ip netns add`), a veth pair whose host end is on the node's
bridge, and an address of the bridge's /24; the bridge's own address is the node (and the API
server's TLS listener, `KUBERNETES_SERVICE_HOST`). Pods have no default route: nothing leaves the
node. `ip netns exec NS` bind-mounts `/etc/netns/NS/hosts` over `/etc/hosts` for the processes it
starts, so a Pod resolves Services by their cluster DNS names (`svc`, `svc.ns`, `svc.ns.svc`,
`svc.ns.svc.cluster.local`) and StatefulSet pods by `pod.headless-svc...`; `resolv.conf` names no
reachable server, so any other name fails at once. The hosts files are rewritten in place (same
inode, so the bind mounts see it) whenever a Service's endpoints change.

A Service's name resolves to the address of one ready Pod it selects (there is no kube-proxy, so
no virtual cluster IP). Where a Service's `port` differs from its `targetPort` (the operator's
gateway Service: 4002 -> the image's socat port 4004), the endpoint pod's namespace redirects
the Service port to the target port (iptables `nat PREROUTING REDIRECT`, `set_port_redirects`),
as kube-proxy's DNAT would: a client connects to `name:port` and reaches the container.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
import threading
from pathlib import Path

NETNS_ETC = Path("/etc/netns")
CLUSTER_DOMAIN = "cluster.local"
# No name server in a pod: Services are in /etc/hosts, any other name fails at once.
RESOLV_CONF = "# sandbox node: Services are in /etc/hosts\nnameserver 127.0.0.1\noptions attempts:1 timeout:1\n"


def _ip(*args: str, netns: str | None = None) -> str:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


def _used_subnets() -> list[ipaddress.IPv4Network]:
    routes = json.loads(_ip("-j", "-4", "route", "show", "table", "all") or "[]")
    found = []
    for route in routes:
        dst = route.get("dst", "")
        if "/" in dst:
            network = ipaddress.ip_network(dst, strict=False)
            if isinstance(network, ipaddress.IPv4Network):
                found.append(network)
    return found


class PodNetwork:
    """The node's bridge and the pods' namespaces (names carry a random id: several nodes, e.g.
    two CI runs or engineers, never share one)."""

    def __init__(self) -> None:
        self.id = secrets.token_hex(2)
        self.bridge = f"ktbr{self.id}"
        used = _used_subnets()
        free = [
            net
            for net in ipaddress.ip_network("10.244.0.0/16").subnets(new_prefix=24)
            if not any(net.overlaps(u) for u in used)
        ]
        if not free:
            raise RuntimeError("no free /24 in 10.244.0.0/16 for the pod network")
        self.subnet = free[secrets.randbelow(len(free))]
        hosts = self.subnet.hosts()
        self.node_ip = str(next(hosts))
        self._free = [str(h) for h in hosts]
        self._lock = threading.Lock()
        self._pods: dict[str, tuple[str, str]] = {}  # pod key -> (netns, ip)
        self._redirects: dict[str, frozenset[tuple[str, int, int]]] = {}  # pod key -> (protocol, port, target)
        self._seq = 0
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.node_ip}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add(self, key: str) -> tuple[str, str]:
        """A new namespace for the pod `key`: (netns name, pod IP)."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            ip = self._free.pop(0)
        netns = f"kt{self.id}-{seq}"
        host_end = f"kt{self.id}h{seq}"
        (NETNS_ETC / netns).mkdir(parents=True, exist_ok=True)
        (NETNS_ETC / netns / "hosts").write_text(self._base_hosts(ip, ""))
        (NETNS_ETC / netns / "resolv.conf").write_text(RESOLV_CONF)
        _ip("netns", "add", netns)
        _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("link", "set", host_end, "master", self.bridge, "up")
        _ip("link", "set", "lo", "up", netns=netns)
        _ip("addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
        with self._lock:
            self._pods[key] = (netns, ip)
        return netns, ip

    def remove(self, key: str) -> None:
        with self._lock:
            found = self._pods.pop(key, None)
            self._redirects.pop(key, None)
        if found is None:
            return
        netns, ip = found
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False, timeout=30)
        for path in (NETNS_ETC / netns).glob("*"):
            path.unlink(missing_ok=True)
        (NETNS_ETC / netns).rmdir()
        with self._lock:
            self._free.append(ip)

    @staticmethod
    def _base_hosts(ip: str, hostname: str) -> str:
        own = f"{ip}\t{hostname}\n" if hostname else ""
        return (
            f"# Kubernetes-managed hosts file (node agent).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n{own}"
        )

    def write_hosts(self, key: str, hostname: str, names: dict[str, str]) -> None:
        """The pod's hosts file: itself, then `names` (DNS name -> address), rewritten in place."""
        with self._lock:
            found = self._pods.get(key)
        if found is None:
            return
        netns, ip = found
        text = self._base_hosts(ip, hostname) + "".join(f"{addr}\t{name}\n" for name, addr in sorted(names.items()))
        path = NETNS_ETC / netns / "hosts"
        with path.open("r+") as handle:  # same inode: the pod's bind mount of /etc/hosts sees it
            if handle.read() != text:
                handle.seek(0)
                handle.truncate()
                handle.write(text)

    def set_port_redirects(self, key: str, redirects: frozenset[tuple[str, int, int]]) -> None:
        """In the pod's namespace, traffic arriving for each (protocol, Service port) goes to the
        target port; rewritten only when the set changes."""
        with self._lock:
            found = self._pods.get(key)
            if found is None or self._redirects.get(key, frozenset()) == redirects:
                return
        netns = found[0]
        commands = [["iptables", "-t", "nat", "-F", "PREROUTING"]]
        for protocol, port, target in sorted(redirects):
            commands.append([
                "iptables", "-t", "nat", "-A", "PREROUTING", "-p", protocol.lower(), "--dport", str(port),
                "-j", "REDIRECT", "--to-ports", str(target),
            ])  # fmt: skip
        for command in commands:
            done = subprocess.run(
                ["ip", "netns", "exec", netns, *command], capture_output=True, text=True, check=False, timeout=30
            )
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} in {netns} failed: {done.stderr.strip()}")
        with self._lock:
            self._redirects[key] = redirects

    def close(self) -> None:
        for key in list(self._pods):
            self.remove(key)
        # Any namespace of this node left half-made (its pod's start was interrupted).
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False, timeout=30)
        for line in listed.stdout.splitlines():
            name = line.split(" ", 1)[0]
            if name.startswith(f"kt{self.id}-"):
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False, timeout=30)
                for path in (NETNS_ETC / name).glob("*"):
                    path.unlink(missing_ok=True)
                if (NETNS_ETC / name).exists():
                    (NETNS_ETC / name).rmdir()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False, timeout=30)


def service_names(service: str, namespace: str, pod_namespace: str) -> list[str]:
    """The names a pod in `pod_namespace` resolves a Service by (kube-dns: the search path
    `ns.svc.cluster.local svc.cluster.local cluster.local`, written out for the hosts file)."""
    names = [f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}"]
    if namespace == pod_namespace:
        names.insert(0, service)
    return names
