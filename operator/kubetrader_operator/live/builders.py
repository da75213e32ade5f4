"""Pure builders: a LiveDeployment spec -> the manifests of its gateway, runner and policy.

Children carry NO ownerReference to the LiveDeployment. That is deliberate: with an
ownerReference, foreground cascading deletion (`kubectl delete --cascade=foreground`)
makes the garbage collector delete the gateway and the runner BEFORE the owner's
finalizer runs, i.e. before the positions are closed, and background deletion races
the stop. Instead the children are found by label, protected by the operator's own
finalizer (`STOP_FINALIZER`), and deleted explicitly once flat is confirmed.

Security: the runner runs under the restricted Pod Security Standard, and so does the
gateway but for one documented exception. The gnzsnz/ib-gateway image runs as its own user
(`USER 1000:1000`, `ibgateway`, in its Dockerfile: github.com/gnzsnz/ib-gateway-docker
stable/Dockerfile), so the pod has runAsNonRoot, drops every capability and adds none. The
exception: its start script writes IBC's config.ini and jts.ini from templates into the
image's home directory, so the root filesystem stays writable (an emptyDir there would hide
the installed gateway). Its image must be one of the operator's allowed (digest-pinned) images
and its credentials a Secret that names this deployment (kubetrader_operator.live.deputy).

Network: every pod here is isolated both ways. The gateway admits this deployment's runner and
the operator's own pods (by namespace name: another namespace cannot imitate them) on its API
port and reaches only DNS and IBKR's ports; the runner admits the operator, the API and the
metrics scraper (the chart's monitoring.scrapeFrom) on its HTTP port and reaches only DNS and
its own gateway.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from kubetrader.specs.live import LiveDeploymentSpec
from kubetrader_operator.labels import MANAGED_BY, MANAGER, PART_OF, label_value
from kubetrader_operator.live.settings import LiveNetwork, PodPeer
from kubetrader_operator.scheduling import PodScheduling, apply_scheduling

RUNNER_USER = 10001
GATEWAY_USER = 1000  # the image's `ibgateway` user (USER 1000:1000 in its Dockerfile)
STOP_FINALIZER = "kubetrader.io/live-stop"
GENERATION_ANNOTATION = "kubetrader.io/spec-generation"  # on the runner's pod template: which spec it runs
LIVE_LABEL = "kubetrader.io/livedeployment"
COMPONENT = "app.kubernetes.io/component"
TOKEN_KEY = "token"
# The gnzsnz/ib-gateway image relays its API (which accepts localhost only) with socat.
SOCAT_PORTS = {"live": 4003, "paper": 4004}
VNC_PORT = 5900
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server
DNS_PORTS = ({"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53})


def names(deployment: str) -> dict[str, str]:
    """Deterministic child names (a restart finds, never duplicates, them)."""
    base = deployment if len(deployment) <= 40 else f"{deployment[:31]}-{_digest(deployment)}"
    return {
        "gateway": f"{base}-gateway",
        "runner": f"{base}-runner",
        "token": f"{base}-runner-token",
        "policy": f"{base}-gateway-api",
        "runner-policy": f"{base}-runner-http",
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def labels(deployment: str, component: str) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGER,
        PART_OF: "kubetrader",
        COMPONENT: component,
        LIVE_LABEL: label_value(deployment),
    }


def _meta(name: str, namespace: str, deployment: str, component: str, *, protect: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels(deployment, component)}
    if protect:
        meta["finalizers"] = [STOP_FINALIZER]
    return meta


def runner_token(key: str, namespace: str, deployment: str) -> str:
    """The bearer token of one deployment's runner: HMAC-SHA256 of its namespace and name under the
    operator's key. The operator derives it again whenever it calls the runner (/status, /flatten),
    so it never reads the token Secret back: the chart grants it no `get` on Secrets beyond the
    credentials named in operator.readableSecrets. A restart derives the same token; another
    deployment's token cannot be derived without the key."""
    return hmac.new(key.encode(), f"{namespace}/{deployment}".encode(), hashlib.sha256).hexdigest()


def build_token_secret(deployment: str, namespace: str, token: str) -> dict[str, Any]:
    """The bearer token the runner's endpoint requires (env from this Secret); written, never read back."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(names(deployment)["token"], namespace, deployment, "runner"),
        "type": "Opaque",
        "stringData": {TOKEN_KEY: token},
    }


def gateway_target_port(spec: LiveDeploymentSpec) -> int:
    return SOCAT_PORTS[spec.mode] if spec.gateway.kind == "gateway" else spec.api_port


def build_gateway_statefulset(
    spec: LiveDeploymentSpec, deployment: str, namespace: str, *, image: str, scheduling: PodScheduling | None = None
) -> dict[str, Any]:
    """`image` is the allowed image the spec asked for (kubetrader_operator.live.deputy decides);
    `scheduling`: where the pod may run (kubetrader_operator.scheduling)."""
    n = names(deployment)
    secret = spec.gateway.credentials_secret
    env: list[dict[str, Any]] = [
        {"name": "TRADING_MODE", "value": spec.mode},
        {"name": "TWS_USERID", "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}}},
        {"name": "TWS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}},
        {"name": "READ_ONLY_API", "value": "no"},
        {"name": "TWOFA_TIMEOUT_ACTION", "value": "restart"},
    ]
    ports = [{"name": "api", "containerPort": gateway_target_port(spec), "protocol": "TCP"}]
    if spec.gateway.vnc:
        env.append(
            {"name": "VNC_SERVER_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "vncPassword"}}}
        )
        ports.append({"name": "vnc", "containerPort": VNC_PORT, "protocol": "TCP"})
    pod_labels = labels(deployment, "gateway")
    gateway: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(n["gateway"], namespace, deployment, "gateway", protect=True),
        "spec": {
            "serviceName": n["gateway"],
            "replicas": 1,
            "podManagementPolicy": "OrderedReady",
            "selector": {"matchLabels": {LIVE_LABEL: label_value(deployment), COMPONENT: "gateway"}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 60,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": GATEWAY_USER,
                        "runAsGroup": GATEWAY_USER,
                        "fsGroup": GATEWAY_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "ib-gateway",
                            "image": image,
                            "env": env,
                            "ports": ports,
                            "readinessProbe": {
                                "tcpSocket": {"port": "api"},
                                "initialDelaySeconds": 30,
                                "periodSeconds": 10,
                            },
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "768Mi"},
                                "limits": {"cpu": "1", "memory": "1536Mi"},
                            },
                            # The one exception (module docstring): config written into the image's home.
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": False,
                                "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                        }
                    ],
                },
            },
        },
    }
    gateway["spec"]["template"] = apply_scheduling(gateway["spec"]["template"], scheduling or PodScheduling())
    return gateway


def build_gateway_service(spec: LiveDeploymentSpec, deployment: str, namespace: str) -> dict[str, Any]:
    """Headless: the StatefulSet's stable DNS name; the runner connects to `<gateway>:<apiPort>`."""
    n = names(deployment)
    ports = [{"name": "api", "port": spec.api_port, "targetPort": "api", "protocol": "TCP"}]
    if spec.gateway.vnc:
        ports.append({"name": "vnc", "port": VNC_PORT, "targetPort": "vnc", "protocol": "TCP"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(n["gateway"], namespace, deployment, "gateway"),
        "spec": {
            "clusterIP": "None",
            "selector": {LIVE_LABEL: label_value(deployment), COMPONENT: "gateway"},
            "ports": ports,
            # the pod is addressable before it is ready: the runner's own retries handle a gateway logging in
            "publishNotReadyAddresses": True,
        },
    }


def build_runner_service(deployment: str, namespace: str, port: int) -> dict[str, Any]:
    n = names(deployment)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(n["runner"], namespace, deployment, "runner"),
        "spec": {
            "selector": {LIVE_LABEL: label_value(deployment), COMPONENT: "runner"},
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def build_runner_deployment(
    spec: LiveDeploymentSpec,
    deployment: str,
    namespace: str,
    *,
    image: str,
    port: int,
    generation: int | None = None,
    journal_url: str | None = None,
    stall_fence: float = 60.0,
    scheduling: PodScheduling | None = None,
) -> dict[str, Any]:
    """One runner, `Recreate`: a rollout stops the old trader before the new one starts. Never two at once.

    The pod template carries the spec (KUBETRADER_LIVE_SPEC, the runner's risk limits included) and
    its generation, so a spec edit is a new template: a rollout with the new spec. `stall_fence`
    (`LiveSettings.runner_stall_fence_seconds`) is shorter than the operator's hung-runner deadline.
    """
    n = names(deployment)
    args = [
        "live", "run",
        "--deployment", deployment,
        "--host", n["gateway"],
        "--port", str(spec.api_port),
        "--client-id", str(spec.gateway.client_id),
        "--http-port", str(port),
        "--journal-url", journal_url or f"sqlite:////journal/{deployment}.db",
        "--stall-fence", f"{stall_fence:g}",
    ]  # fmt: skip
    runner: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(n["runner"], namespace, deployment, "runner", protect=True),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {LIVE_LABEL: label_value(deployment), COMPONENT: "runner"}},
            "template": {
                "metadata": {
                    "labels": labels(deployment, "runner"),
                    "annotations": {GENERATION_ANNOTATION: str(generation or 0)},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUNNER_USER,
                        "runAsGroup": RUNNER_USER,
                        "fsGroup": RUNNER_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "runner",
                            "image": image,
                            "args": args,
                            "env": [
                                {"name": "KUBETRADER_LIVE_SPEC", "value": spec.model_dump_json(by_alias=True)},
                                {
                                    "name": "KUBETRADER_RUNNER_TOKEN",
                                    "valueFrom": {"secretKeyRef": {"name": n["token"], "key": TOKEN_KEY}},
                                },
                            ],
                            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
                            "volumeMounts": [{"name": "journal", "mountPath": "/journal"}],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "256Mi"},
                                "limits": {"cpu": "1", "memory": "1Gi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                        }
                    ],
                    # An emptyDir journal survives container restarts; reconciliation against the
                    # broker (orderRef) covers a new pod. A PVC is the chart's choice to make.
                    "volumes": [{"name": "journal", "emptyDir": {}}],
                },
            },
        },
    }
    runner["spec"]["template"] = apply_scheduling(runner["spec"]["template"], scheduling or PodScheduling())
    return runner


def peer(pods: PodPeer) -> dict[str, Any]:
    """A NetworkPolicy peer for pods of one named namespace (`namespaceSelector: {}` would admit any)."""
    return {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: pods.namespace}},
        "podSelector": {"matchLabels": dict(pods.labels)},
    }


def _selector(deployment: str, component: str) -> dict[str, Any]:
    return {"matchLabels": {LIVE_LABEL: label_value(deployment), COMPONENT: component}}


def _policy(name: str, namespace: str, deployment: str, component: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, namespace, deployment, component),
        "spec": {"podSelector": _selector(deployment, component), "policyTypes": ["Ingress", "Egress"], **spec},
    }


def build_network_policy(
    spec: LiveDeploymentSpec, deployment: str, namespace: str, network: LiveNetwork
) -> dict[str, Any]:
    """The gateway: its API port from this deployment's runner and the operator; out only to DNS and IBKR."""
    api_from: list[dict[str, Any]] = [{"podSelector": _selector(deployment, "runner")}]
    if network.operator_pod is not None:
        api_from.append(peer(network.operator_pod))
    egress: list[dict[str, Any]] = [{"to": [peer(network.dns_pod)], "ports": list(DNS_PORTS)}]
    for target in network.gateway_egress:
        block: dict[str, Any] = {"cidr": target.cidr}
        if target.except_:
            block["except"] = list(target.except_)
        egress.append(
            {"to": [{"ipBlock": block}], "ports": [{"protocol": target.protocol, "port": p} for p in target.ports]}
        )
    ingress = [{"from": api_from, "ports": [{"protocol": "TCP", "port": gateway_target_port(spec)}]}]
    # VNC, when on, is reached with `kubectl port-forward` only (through the node, which policies let in)
    return _policy(
        names(deployment)["policy"], namespace, deployment, "gateway", {"ingress": ingress, "egress": egress}
    )


def build_runner_policy(
    spec: LiveDeploymentSpec, deployment: str, namespace: str, network: LiveNetwork, *, port: int
) -> dict[str, Any]:
    """The runner: its HTTP port from the operator, the API and the metrics scraper (for /metrics:
    every other path needs the runner's token); out only to DNS and its own gateway."""
    http_from = [peer(p) for p in (network.operator_pod, network.api_pod) if p is not None]
    if network.metrics_scraper is not None:
        http_from.append(network.metrics_scraper.peer())
    ingress = [{"from": http_from, "ports": [{"protocol": "TCP", "port": port}]}] if http_from else []
    egress = [
        {"to": [peer(network.dns_pod)], "ports": list(DNS_PORTS)},
        {
            "to": [{"podSelector": _selector(deployment, "gateway")}],
            "ports": [{"protocol": "TCP", "port": gateway_target_port(spec)}],
        },
    ]
    name = names(deployment)["runner-policy"]
    return _policy(name, namespace, deployment, "runner", {"ingress": ingress, "egress": egress})


def build_children(
    spec: LiveDeploymentSpec,
    deployment: str,
    namespace: str,
    *,
    image: str,
    gateway_image: str,
    runner_port: int,
    token: str,
    network: LiveNetwork,
    generation: int | None = None,
    stall_fence: float = 60.0,
    scheduling: PodScheduling | None = None,
) -> list[dict[str, Any]]:
    """Every child, in creation order: policies and secret before the pods that need them.

    `scheduling`: where the gateway and runner pods may run (kubetrader_operator.scheduling)."""
    return [
        build_network_policy(spec, deployment, namespace, network),
        build_runner_policy(spec, deployment, namespace, network, port=runner_port),
        build_token_secret(deployment, namespace, token),
        build_gateway_service(spec, deployment, namespace),
        build_gateway_statefulset(spec, deployment, namespace, image=gateway_image, scheduling=scheduling),
        build_runner_service(deployment, namespace, runner_port),
        build_runner_deployment(
            spec,
            deployment,
            namespace,
            image=image,
            port=runner_port,
            generation=generation,
            stall_fence=stall_fence,
            scheduling=scheduling,
        ),
    ]


def running_generation(runner: dict[str, Any]) -> int | None:
    """The spec generation a runner Deployment's pod template carries (None: made before generations)."""
    annotations = ((runner.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
    value = annotations.get(GENERATION_ANNOTATION)
    return int(value) if value is not None and str(value).isdigit() else None
