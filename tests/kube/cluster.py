"""`EmulatedCluster`: a `KubeEmulator` on a loopback port, run in a background thread.

Tests are synchronous, the emulator is asyncio: the cluster owns an event loop in
its own thread, and its methods (create, get, patch, ...) run the emulator's
coroutines there, through the same write path HTTP clients use, so watchers see
every change (they act as the cluster's administrator: no token, no RBAC).
`kubeconfig` is a file any client (kopf, the kubernetes package, kubectl) can use to
reach it as the administrator: it points at `admin_url`, a second port served as
kube-apiserver's old insecure port was (no authentication, no RBAC), because kubectl sends
no bearer token over plain HTTP. `url` requires a token: `kubeconfig_for(identity)` writes
a kubeconfig for a user or a ServiceAccount there, whose requests RBAC then decides. The default
ClusterRoles and bindings (cluster-admin, system:discovery, ...) exist from the start.

    with EmulatedCluster(crds=load_crds().values()) as cluster:
        cluster.create(backtest_dict)
        cluster.get("Job", "default", "bt-sma-orcl")
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp.test_utils
import yaml
from kmock import Server, resource

from tests.kube import authn
from tests.kube.emulator import ApiError, KubeEmulator, Obj
from tests.kube.rbac import BOOTSTRAP_POLICY
from tests.kube.tls import ServingFiles, write_serving_files

T = TypeVar("T")
CALL_TIMEOUT = 10.0


def _tls_server_class(context: ssl.SSLContext) -> type[aiohttp.test_utils.RawTestServer]:
    """kmock's server class, listening with TLS (kmock's `Server` starts aiohttp's test server
    without an SSL context; `start_server` takes one as `ssl`)."""

    class TLSServer(aiohttp.test_utils.RawTestServer):
        async def start_server(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
            await super().start_server(loop=loop, ssl=context, **kwargs)

    return TLSServer


class EmulatedCluster:
    def __init__(
        self,
        crds: Iterable[Obj] = (),
        *,
        workdir: Path,
        gc: bool = True,
        namespaces: Iterable[str] = (),
        tls_host: str | None = None,
    ) -> None:
        """`namespaces`: created at start (`kubectl create namespace`): a create elsewhere gets 404, as on a cluster.

        `tls_host`: also serve HTTPS there (`tls_url`, a new CA in `tls.ca_cert`), where every
        client, kubectl included, authenticates with a bearer token (`kubeconfig_for(..., tls=True)`).
        """
        self._workdir = workdir
        self._tls_host = tls_host
        self.tls: ServingFiles | None = None
        self.tls_url = ""
        self._crds = list(crds)
        self._namespaces = list(namespaces)
        self._gc = gc
        self.kubeconfig = workdir / "kubeconfig"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.emulator: KubeEmulator | None = None
        self.url = ""
        self._kinds: dict[str, resource] = {}
        self.admin_token = ""
        self.admin_url = ""

    # ---- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(CALL_TIMEOUT) or self._error is not None:
            raise RuntimeError(f"the emulator did not start: {self._error!r}")
        self._write_kubeconfig()
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(CALL_TIMEOUT)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with (
            KubeEmulator(gc_enabled=self._gc) as emulator,
            Server(emulator) as server,
            Server(emulator) as admin_server,
            contextlib.AsyncExitStack() as stack,
        ):
            if self._tls_host is not None:
                self.tls = write_serving_files(self._workdir / "pki", (self._tls_host,))
                tls_server = await stack.enter_async_context(
                    Server(emulator, host=self._tls_host, server_cls=_tls_server_class(self.tls.server_context()))
                )
                self.tls_url = f"https://{self._tls_host}:{tls_server.port}"
            emulator.access.insecure_ports.add(admin_server.port)
            emulator.register_builtin_kinds()
            for crd in self._crds:
                emulator.register_crd(crd)
                await emulator.create_object(
                    resource(group="apiextensions.k8s.io", version="v1", plural="customresourcedefinitions"), None, crd
                )
            namespaces = resource(group="", version="v1", plural="namespaces")
            for namespace in self._namespaces:
                await emulator.create_object(
                    namespaces, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
                )
            for policy in BOOTSTRAP_POLICY:
                res = resource(group="rbac.authorization.k8s.io", version="v1", plural=f"{policy['kind'].lower()}s")
                await emulator.create_object(res, None, policy)
            self.emulator = emulator
            self.url = f"http://{server.host}:{server.port}"
            self.admin_url = f"http://{admin_server.host}:{admin_server.port}"
            self._index_kinds()
            self._ready.set()
            await self._stop.wait()

    def _index_kinds(self) -> None:
        assert self.emulator is not None
        for res, info in self.emulator.resources._resources.items():
            if info.kind and info.kind not in self._kinds:
                self._kinds[info.kind] = res

    def _write_kubeconfig(self) -> None:
        # The administrator's kubeconfig reaches the port without authentication (see
        # access.AccessControl.insecure_ports: kubectl sends no token over plain HTTP); the
        # token is there too, and works on `url`.
        self.admin_token = self.token_for(authn.ADMIN)
        self.kubeconfig.write_text(yaml.safe_dump(authn.kubeconfig(self.admin_url, self.admin_token, authn.ADMIN.name)))

    def token_for(self, identity: authn.Identity) -> str:
        """A new bearer token that authenticates as `identity`."""
        assert self.emulator is not None
        return self.emulator.access.authenticator.mint(identity)

    def kubeconfig_for(self, identity: authn.Identity, path: Path, *, tls: bool = False) -> Path:
        """Write a kubeconfig that reaches this cluster as `identity` (on `tls_url`, trusting its CA,
        with `tls`); returns `path`."""
        token = self.token_for(identity)
        if tls:
            if self.tls is None:
                raise RuntimeError("this cluster serves no TLS port: start it with tls_host")
            config = authn.kubeconfig(self.tls_url, token, identity.name, ca_file=self.tls.ca_cert)
        else:
            config = authn.kubeconfig(self.url, token, identity.name)
        path.write_text(yaml.safe_dump(config))
        return path

    def apply(self, manifests: Iterable[Obj], namespace: str) -> None:
        """Create manifests as the administrator (as `kubectl apply -n namespace` would for new
        objects); namespaced ones without a namespace go to `namespace`, which is created if absent."""
        self.ensure_namespace(namespace)
        for manifest in manifests:
            res = self.resource_of(manifest["kind"])
            info = self.emulator.resources._resources[res] if self.emulator is not None else None
            ns = (manifest["metadata"].get("namespace") or namespace) if info is None or info.namespaced else None
            if ns is not None:
                self.ensure_namespace(ns)
            self.create(manifest, namespace=ns)

    def ensure_namespace(self, name: str) -> None:
        """Create the Namespace unless it exists."""
        if self.get("Namespace", None, name) is None:
            try:
                self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
            except ApiError as exc:
                if exc.code != 409:
                    raise

    def call(self, make: Callable[[KubeEmulator], Awaitable[T]]) -> T:
        """Run `make(emulator)` on the emulator's loop and wait for its result."""
        assert self._loop is not None and self.emulator is not None
        emulator = self.emulator

        async def run() -> T:
            return await make(emulator)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(CALL_TIMEOUT)

    # ---- a small synchronous client --------------------------------------------------------

    def resource_of(self, kind: str) -> resource:
        """The resource serving a kind, e.g. "Job" -> batch/v1/jobs ("Event" is the core one)."""
        return self._kinds[kind]

    def create(self, obj: Obj, namespace: str | None = None) -> Obj:
        res = self.resource_of(obj["kind"])
        ns = namespace or obj.get("metadata", {}).get("namespace")
        return self.call(lambda e: e.create_object(res, ns, obj))

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        found = self.select(kind, namespace, name=name)
        return found[0] if found else None

    def select(
        self, kind: str, namespace: str | None = None, labels: str | None = None, name: str | None = None
    ) -> list[Obj]:
        """Live objects of a kind, optionally in one namespace, with a label selector or a name."""
        res = self.resource_of(kind)

        async def select(e: KubeEmulator) -> list[Obj]:
            return e.select(res, namespace, labels, name)

        return self.call(select)

    def count(self, kind: str, namespace: str | None = None) -> int:
        """How many live objects of a kind (in one namespace, or all); copies nothing."""
        res = self.resource_of(kind)

        async def count(e: KubeEmulator) -> int:
            return e.count(res, namespace)

        return self.call(count)

    def patch(self, kind: str, namespace: str | None, name: str, patch: Any, *, subresource: str | None = None) -> Obj:
        res = self.resource_of(kind)
        return self.call(lambda e: e.update_object(res, namespace, name, patch, subresource=subresource))

    def delete(self, kind: str, namespace: str | None, name: str, *, policy: str | None = None) -> Obj:
        """DELETE with a propagationPolicy (Background, Foreground, Orphan; None: the kind's default)."""
        res = self.resource_of(kind)
        return self.call(lambda e: e.delete_object(res, namespace, name, policy=policy))

    def attach_log(self, namespace: str, pod: str, container: str, path: Path) -> None:
        """Serve `path` (which the kubelet stand-in writes) as the container's log at `pods/<pod>/log`."""

        async def attach(e: KubeEmulator) -> None:
            e.logs.attach(namespace, pod, container, path)

        self.call(attach)

    def collect_garbage(self) -> int:
        """Run the garbage collector now (with `gc=True` it also runs by itself shortly after a deletion)."""
        return self.call(lambda e: e.collect_garbage())
