"""The kubelet part of the node agent: runs one Pod's containers as real processes and reports.

For each Pod bound to the node: a network namespace (`network.PodNetwork`), the volumes in the
pod's directory (ConfigMap and Secret files, emptyDir, a PersistentVolumeClaim as a folder shared
by every pod mounting it, the ServiceAccount's `token`, `ca.crt` and `namespace` when the token is
automounted), the init containers one after another, then the containers, each started by
`launch.py` inside the pod's namespaces as the pod's uid with its volumes at their mount paths
and the environment and argv the kubelet derives (`podspec`). Probes (exec inside the pod,
httpGet and tcpSocket from the node to the pod's address) run on their schedules; readiness
sets the container's `ready` and the Pod's `Ready` condition, a failed liveness probe restarts
the container. Exits are reported with exit code, reason and termination message; containers
restart per `restartPolicy` with the kubelet's back-off (10 s doubling to 5 min). A Pod that
disappears (deleted) has its processes stopped: SIGTERM, then SIGKILL after
`terminationGracePeriodSeconds`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.kube.node import podspec
from tests.kube.node.images import Image, ImagePullError, resolve
from tests.kube.node.network import PodNetwork
from tests.kube.node.podspec import ContainerConfigError, Obj

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT = Path(__file__).resolve().parents[3]
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0
TICK = 0.25


@dataclasses.dataclass
class NodeContext:
    """What every pod on the node shares."""

    cluster: Any  # tests.kube.cluster.EmulatedCluster
    network: PodNetwork
    workdir: Path
    images: dict[str, Image]
    api_host: str
    api_port: int
    ca_cert: bytes
    # namespace -> the DNS names its pods resolve (name -> address), for the pod's hosts file
    dns: Any = None
    node_name: str = "sandbox-node"


@dataclasses.dataclass
class Container:
    spec: Obj
    init: bool
    process: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    started_mono: float = 0.0
    state: Obj = dataclasses.field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last: Obj | None = None
    restarts: int = 0
    ready: bool = False
    next_start: float = 0.0
    backoff: float = BACKOFF_START
    liveness_failures: int = 0
    readiness_ok: int = 0
    readiness_fail: int = 0
    done: bool = False  # terminated and will not start again
    started: bool = False  # the startupProbe passed (at once without one): the other probes run
    startup_failures: int = 0


def image_key(c: Container) -> str:
    return c.spec["image"].replace("/", "_").replace(":", "_")


class PodWorker:
    """One Pod, from creation to its end (see the module docstring)."""

    def __init__(self, node: NodeContext, pod: Obj) -> None:
        self.node = node
        self.pod = pod
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.key = f"{self.namespace}/{self.name}/{self.uid}"
        self.dir = node.workdir / "pods" / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.stopping = threading.Event()
        self.netns = ""
        self.ip = ""
        spec = pod["spec"]
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.inits = [Container(c, True) for c in spec.get("initContainers", [])]
        self.containers = [Container(c, False) for c in spec["containers"]]
        self._status_sent: str = ""
        self._probe_threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        try:
            self._live()
        except Exception as exc:  # the pod's failure is reported, the node goes on
            print(f"node: pod {self.namespace}/{self.name}: {exc!r}", file=sys.stderr, flush=True)
        finally:
            for c in [*self.inits, *self.containers]:
                self._kill(c, grace=float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))
            self.node.network.remove(self.key)

    def _live(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.netns, self.ip = self.node.network.add(self.key)
        if self.node.dns is not None:  # the names before the first process looks one up
            self.node.network.write_hosts(self.key, self.name, self.node.dns(self.namespace))
        self._report(phase="Pending")
        mounts = self._wait_for_volumes()
        if mounts is None:
            return
        for init in self.inits:
            if not self._run_init(init, mounts):
                return
        for probe_kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            for c in self.containers:
                if probe_kind in c.spec:
                    t = threading.Thread(target=self._probe_loop, args=(c, probe_kind), daemon=True)
                    self._probe_threads.append(t)
                    t.start()
        while not self.stopping.is_set():
            for c in self.containers:
                self._tend(c, mounts)
            self._report()
            if all(c.done for c in self.containers):
                return
            self.stopping.wait(TICK)

    # ---- volumes ----------------------------------------------------------------------------

    def _wait_for_volumes(self) -> dict[str, Path] | None:
        while not self.stopping.is_set():
            try:
                return self._volumes()
            except ContainerConfigError as exc:
                for c in self.containers:
                    c.state = {"waiting": {"reason": "ContainerCreating", "message": str(exc)}}
                self._report(phase="Pending")
                self.stopping.wait(2)
        return None

    def _volumes(self) -> dict[str, Path]:
        """Volume name -> its directory on the node (made ready for the pod's uid)."""
        get = self.node.cluster.get
        out: dict[str, Path] = {}
        for volume in self.pod["spec"].get("volumes", []):
            name = volume["name"]
            local = self.dir / "volumes" / name
            if "emptyDir" in volume:
                local.mkdir(parents=True, exist_ok=True)
                local.chmod(0o777)  # as the kubelet makes emptyDir
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                pvc = get("PersistentVolumeClaim", self.namespace, claim)
                if pvc is None:
                    raise ContainerConfigError(f'persistentvolumeclaim "{claim}" not found')
                local = self.node.workdir / "volumes" / self.namespace / f"{claim}-{pvc['metadata']['uid'][:8]}"
                local.mkdir(parents=True, exist_ok=True)
                local.chmod(0o777)  # as kind's local-path provisioner makes its volumes
            elif "configMap" in volume or "secret" in volume:
                kind, ref = (
                    ("ConfigMap", volume["configMap"]) if "configMap" in volume else ("Secret", volume["secret"])
                )
                obj_name = ref.get("name") or ref.get("secretName")
                obj = get(kind, self.namespace, obj_name)
                if obj is None:
                    if ref.get("optional"):
                        obj = {"data": {}}
                    else:
                        raise ContainerConfigError(f'{kind.lower()} "{obj_name}" not found')
                data = dict(obj.get("data") or {})
                if kind == "Secret":
                    data = {k: base64.b64decode(v).decode() for k, v in data.items()}
                items = ref.get("items") or [{"key": k, "path": k} for k in data]
                if local.exists():
                    shutil.rmtree(local)
                local.mkdir(parents=True)
                for item in items:
                    if item["key"] not in data:
                        raise ContainerConfigError(f"configmap references non-existent config key: {item['key']}")
                    target = local / item["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(data[item["key"]])
                    target.chmod(int(item.get("mode", ref.get("defaultMode", 0o644))))
                local.chmod(0o755)
            else:
                raise ContainerConfigError(f"volume {name}: unsupported volume type {sorted(set(volume) - {'name'})}")
            out[name] = local
        if self.pod["spec"].get("automountServiceAccountToken", True):
            from tests.kube import authn

            account = self.pod["spec"].get("serviceAccountName", "default")
            token = self.node.cluster.token_for(authn.service_account(self.namespace, account))
            sa = self.dir / "serviceaccount"
            authn.write_service_account_files(sa, token, self.namespace, self.node.ca_cert)
            for path in sa.iterdir():
                path.chmod(0o644)
            out["\0serviceaccount"] = sa
        return out

    def _mounts(self, c: Container, volumes: dict[str, Path]) -> list[Obj]:
        mounts: list[Obj] = []
        for mount in c.spec.get("volumeMounts", []):
            source = volumes[mount["name"]]
            if mount.get("subPath"):
                source = source / mount["subPath"]
                source.mkdir(parents=True, exist_ok=True)
            mounts.append({"source": str(source), "target": mount["mountPath"], "readOnly": mount.get("readOnly")})
        if "\0serviceaccount" in volumes:
            mounts.append({"source": str(volumes["\0serviceaccount"]), "target": SA_DIR, "readOnly": True})
        termination = self._termination_file(c)
        termination.touch()
        termination.chmod(0o666)
        path = c.spec.get("terminationMessagePath", "/dev/termination-log")
        mounts.append({"source": str(termination), "target": path})
        return mounts

    def _termination_file(self, c: Container) -> Path:
        return self.dir / f"{c.spec['name']}.termination-log"

    # ---- processes --------------------------------------------------------------------------

    def _identity(self, c: Container, image: Image) -> tuple[int, int, list[int]]:
        pod_sc = self.pod["spec"].get("securityContext") or {}
        sc = {**pod_sc, **(c.spec.get("securityContext") or {})}
        uid = int(sc.get("runAsUser", image.user))
        gid = int(sc.get("runAsGroup", uid if "runAsUser" in sc else image.user))
        if sc.get("runAsNonRoot") and uid == 0:
            raise ContainerConfigError("container has runAsNonRoot and image will run as root")
        groups = [int(g) for g in pod_sc.get("supplementalGroups", [])]
        if "fsGroup" in pod_sc:
            groups.append(int(pod_sc["fsGroup"]))
        return uid, gid, groups

    def _environment(self, c: Container, image: Image) -> dict[str, str]:
        services = self.node.cluster.select("Service", self.namespace)
        base = {
            "PATH": image.path,
            "HOSTNAME": self.name,
            "KUBERNETES_SERVICE_HOST": self.node.api_host,
            "KUBERNETES_SERVICE_PORT": str(self.node.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.node.api_port),
            "KUBERNETES_PORT": f"tcp://{self.node.api_host}:{self.node.api_port}",
            **podspec.service_env(services),
        }
        pod = {**self.pod, "status": {"podIP": self.ip, "hostIP": self.node.network.node_ip}}
        pod["spec"] = {**self.pod["spec"], "nodeName": self.node.node_name}
        return podspec.container_env(c.spec, pod, self.node.cluster.get, base)

    def _spawn(
        self, argv: list[str], env: dict[str, str], c: Container, mounts: list[Obj], image: Image, log: Any
    ) -> subprocess.Popen[bytes]:
        uid, gid, groups = self._identity(c, image)
        etc = self.dir / "etc" / image_key(c)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "passwd").write_text(image.passwd())
        (etc / "group").write_text(image.group())
        system = [
            {"source": str(etc / "passwd"), "target": "/etc/passwd", "readOnly": True},
            {"source": str(etc / "group"), "target": "/etc/group", "readOnly": True},
        ]
        spec = {
            "mounts": system + mounts,
            # The interpreter (pyenv's lives under /root, which the launcher hides), the venv and
            # the repository: kept visible at their paths whatever the pod mounts over them.
            "runtime": sorted({sys.base_prefix, sys.prefix, str(ROOT)}),
            "uid": uid,
            "gid": gid,
            "groups": groups,
            "env": env,
            "argv": argv,
            "cwd": c.spec.get("workingDir") or "/",
            "dev_dir": str(self.dir / "dev"),
        }
        spec_file = self.dir / f"{c.spec['name']}.launch-{time.monotonic_ns()}.json"
        spec_file.touch(mode=0o600)
        spec_file.write_text(json.dumps(spec))
        command = ["ip", "netns", "exec", self.netns, sys.executable, "-m", "tests.kube.node.launch", str(spec_file)]
        return subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )

    def _start(self, c: Container, volumes: dict[str, Path]) -> None:
        try:
            image = resolve(c.spec["image"], self.node.images)
            env = self._environment(c, image)
            argv = [image.local_word(w) for w in podspec.argv(c.spec, env, list(image.entrypoint), list(image.cmd))]
            mounts = self._mounts(c, volumes)
            self._identity(c, image)
        except (ContainerConfigError, ImagePullError) as exc:
            c.state = {"waiting": {"reason": exc.reason, "message": str(exc)}}
            c.next_start = time.monotonic() + 2
            return
        self._termination_file(c).write_text("")
        log_path = self.dir / f"{c.spec['name']}-{c.restarts}.log"
        with log_path.open("wb") as log:
            c.process = self._spawn(argv, env, c, mounts, image, log)
        self.node.cluster.attach_log(self.namespace, self.name, c.spec["name"], log_path)
        c.started_at = podspec.now()
        c.started_mono = time.monotonic()
        c.state = {"running": {"startedAt": c.started_at}}
        c.ready = False
        c.liveness_failures = c.readiness_ok = c.readiness_fail = c.startup_failures = 0
        c.started = "startupProbe" not in c.spec

    def _exited(self, c: Container, code: int) -> None:
        log_path = self.dir / f"{c.spec['name']}-{c.restarts}.log"
        message = podspec.termination_message(
            c.spec,
            self._termination_file(c).read_text(errors="replace"),
            lambda: log_path.read_text(errors="replace") if log_path.exists() else "",
            code,
        )
        c.state = podspec.terminated(code, message, c.started_at)
        c.process = None
        c.ready = False
        policy = self.restart_policy
        again = policy == "Always" or (policy == "OnFailure" and code != 0)
        if c.init and code == 0:
            again = False
        if not again:
            c.done = True
            return
        if time.monotonic() - c.started_mono > 600:
            c.backoff = BACKOFF_START  # ran 10 minutes: the back-off starts over
        c.next_start = time.monotonic() + c.backoff
        c.backoff = min(c.backoff * 2, BACKOFF_MAX)

    def _tend(self, c: Container, volumes: dict[str, Path]) -> None:
        if c.process is not None:
            code = c.process.poll()
            if code is not None:
                self._exited(c, code)
        if c.process is None and not c.done and time.monotonic() >= c.next_start:
            if c.started_at:  # it ran before: this start is a restart
                if "terminated" in c.state:
                    c.last = c.state
                c.restarts += 1
            self._start(c, volumes)
        elif c.process is None and not c.done and "terminated" in c.state:
            c.last = c.state
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {int(c.backoff / 2)}s restarting failed "
                    f"container={c.spec['name']} pod={self.name}",
                }
            }

    def _run_init(self, c: Container, volumes: dict[str, Path]) -> bool:
        while not self.stopping.is_set():
            self._tend(c, volumes)
            self._report(phase="Pending")
            if c.done:
                code = c.state["terminated"]["exitCode"]
                if code == 0:
                    return True
                self._report(phase="Failed")
                return False
            self.stopping.wait(TICK)
        return False

    def _kill(self, c: Container, grace: float) -> None:
        process = c.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    # ---- probes -----------------------------------------------------------------------------

    def _probe_loop(self, c: Container, kind: str) -> None:
        probe = c.spec[kind]
        period = float(probe.get("periodSeconds", 10))
        timeout = float(probe.get("timeoutSeconds", 1))
        success_needed = int(probe.get("successThreshold", 1))
        failures_allowed = int(probe.get("failureThreshold", 3))
        while not self.stopping.is_set():
            process, started = c.process, c.started_mono
            waiting = (kind == "startupProbe") == c.started  # startup first, then the others
            if waiting or process is None or time.monotonic() - started < float(probe.get("initialDelaySeconds", 0)):
                self.stopping.wait(TICK)
                continue
            ok = self._probe(c, probe, timeout)
            if c.process is not process:  # restarted meanwhile: the result is stale
                continue
            if kind == "startupProbe":
                c.startup_failures = 0 if ok else c.startup_failures + 1
                c.started = ok
                if c.startup_failures >= failures_allowed:
                    print(f"node: {self.name}/{c.spec['name']}: startup probe failed, restarting", file=sys.stderr)
                    self._kill(c, grace=float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))
            elif kind == "readinessProbe":
                c.readiness_ok = c.readiness_ok + 1 if ok else 0
                c.readiness_fail = 0 if ok else c.readiness_fail + 1
                if c.readiness_ok >= success_needed:
                    c.ready = True
                elif c.readiness_fail >= failures_allowed:
                    c.ready = False
            elif kind == "livenessProbe":
                c.liveness_failures = 0 if ok else c.liveness_failures + 1
                if c.liveness_failures >= failures_allowed:
                    print(f"node: {self.name}/{c.spec['name']}: liveness probe failed, restarting", file=sys.stderr)
                    self._kill(c, grace=float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))
                    c.liveness_failures = 0
            self.stopping.wait(period)

    def _port(self, c: Container, port: Any) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in c.spec.get("ports", []):
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ContainerConfigError(f"probe port {port!r} names no container port")

    def _probe(self, c: Container, probe: Obj, timeout: float) -> bool:
        try:
            if "exec" in probe:
                image = resolve(c.spec["image"], self.node.images)
                env = self._environment(c, image)
                argv = [image.local_word(w) for w in probe["exec"]["command"]]
                with (self.dir / f"{c.spec['name']}.probe.log").open("ab") as log:
                    process = self._spawn(argv, env, c, self._mounts(c, self._volumes_cached()), image, log)
                    try:
                        return process.wait(timeout=timeout + 5) == 0  # + the launcher's own start-up
                    except subprocess.TimeoutExpired:
                        os.killpg(process.pid, signal.SIGKILL)
                        process.wait()
                        return False
            if "httpGet" in probe:
                get = probe["httpGet"]
                conn = http.client.HTTPConnection(self.ip, self._port(c, get["port"]), timeout=timeout)
                try:
                    conn.request("GET", get.get("path", "/"), headers={"User-Agent": "kube-probe/1.37"})
                    return 200 <= conn.getresponse().status < 400
                finally:
                    conn.close()
            if "tcpSocket" in probe:
                with socket.create_connection((self.ip, self._port(c, probe["tcpSocket"]["port"])), timeout=timeout):
                    return True
        except (OSError, http.client.HTTPException, ContainerConfigError, ImagePullError):
            return False
        return False

    def _volumes_cached(self) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for volume in self.pod["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                found = sorted((self.node.workdir / "volumes" / self.namespace).glob(f"{claim}-*"))
                out[volume["name"]] = found[0]
            else:
                out[volume["name"]] = self.dir / "volumes" / volume["name"]
        if (self.dir / "serviceaccount").exists():
            out["\0serviceaccount"] = self.dir / "serviceaccount"
        return out

    # ---- status -----------------------------------------------------------------------------

    def _report(self, phase: str | None = None) -> None:
        if phase is None:
            if all(c.done for c in self.containers):
                codes = [c.state.get("terminated", {}).get("exitCode", 1) for c in self.containers]
                phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
            else:
                phase = "Running" if any(c.process is not None for c in self.containers) else "Pending"
        ready = phase == "Running" and all(
            c.ready or ("readinessProbe" not in c.spec and c.process) for c in self.containers
        )
        initialized = all(c.done and c.state.get("terminated", {}).get("exitCode") == 0 for c in self.inits)
        stamp = podspec.now()

        def condition(kind: str, value: bool) -> Obj:
            return {"type": kind, "status": "True" if value else "False", "lastTransitionTime": stamp}

        def statuses(cs: list[Container]) -> list[Obj]:
            out = []
            for c in cs:
                is_ready = bool(c.ready or ("readinessProbe" not in c.spec and c.process is not None and not c.init))
                out.append(podspec.container_status(c.spec, c.state, ready=is_ready, restarts=c.restarts, last=c.last))
            return out

        status: Obj = {
            "phase": phase,
            "hostIP": self.node.network.node_ip,
            "hostIPs": [{"ip": self.node.network.node_ip}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "conditions": [
                condition("PodScheduled", True),
                condition("Initialized", initialized),
                condition("ContainersReady", ready),
                condition("Ready", ready),
            ],
            "containerStatuses": statuses(self.containers),
        }
        if self.inits:
            status["initContainerStatuses"] = statuses(self.inits)
        # Only a change is written (timestamps aside), as the kubelet's status manager does.
        fingerprint = json.dumps(
            {**status, "conditions": [(c["type"], c["status"]) for c in status["conditions"]]}, sort_keys=True
        )
        if fingerprint == self._status_sent:
            return
        if not self._status_sent:
            status["startTime"] = stamp
        try:
            self.node.cluster.patch("Pod", self.namespace, self.name, {"status": status}, subresource="status")
        except Exception as exc:  # the pod was deleted meanwhile: the agent stops this worker
            if getattr(exc, "code", None) == 404:
                self.stopping.set()
                return
            raise
        self._status_sent = fingerprint

    @property
    def ready(self) -> bool:
        return all(c.ready or ("readinessProbe" not in c.spec and c.process is not None) for c in self.containers)
