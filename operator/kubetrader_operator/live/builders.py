"""Pure builders: a LiveDeployment spec -> the manifests of its gateway, runner and policy.

Children carry NO ownerReference to the LiveDeployment. That is deliberate: with an
ownerReference, foreground cascading deletion (`kubectl delete --cascade=foreground`)
makes the garbage collector delete the gateway and the runner BEFORE the owner's
finalizer runs, i.e. before the positions are closed, and background deletion races
the stop. Instead the children are found by label, protected by the operator's own
finalizer (`STOP_FINALIZER`), and deleted explicitly once flat is confirmed.

Security: the runner runs under the restricted Pod Security Standard. The gateway
image (gnzsnz/ib-gateway) needs documented exceptions: it starts as root to run Xvfb,
IBC and socat and writes to its home directory, so it cannot have runAsNonRoot or
a read-only root filesystem; it still drops every capability but the ones it uses
(SETUID/SETGID to switch to its `ibgateway` user), has no privilege escalation and
the RuntimeDefault seccomp profile, and the NetworkPolicy admits only the runner
(and the operator, for emergency stops) to its API port.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kubetrader.specs.live import LiveDeploymentSpec
from kubetrader_operator.labels import label_value

RUNNER_USER = 10001
STOP_FINALIZER = "kubetrader.io/live-stop"
LIVE_LABEL = "kubetrader.io/livedeployment"
COMPONENT = "app.kubernetes.io/component"
TOKEN_KEY = "token"
# The gnzsnz/ib-gateway image relays its API (which accepts localhost only) with socat.
SOCAT_PORTS = {"live": 4003, "paper": 4004}
VNC_PORT = 5900
OPERATOR_SELECTOR = {"app.kubernetes.io/name": "kubetrader-operator"}


def names(deployment: str) -> dict[str, str]:
    """Deterministic child names (a restart finds, never duplicates, them)."""
    base = deployment if len(deployment) <= 40 else f"{deployment[:31]}-{_digest(deployment)}"
    return {
        "gateway": f"{base}-gateway",
        "runner": f"{base}-runner",
        "token": f"{base}-runner-token",
        "policy": f"{base}-gateway-api",
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def labels(deployment: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "kubetrader-operator",
        "app.kubernetes.io/part-of": "kubetrader",
        COMPONENT: component,
        LIVE_LABEL: label_value(deployment),
    }


def _meta(name: str, namespace: str, deployment: str, component: str, *, protect: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels(deployment, component)}
    if protect:
        meta["finalizers"] = [STOP_FINALIZER]
    return meta


def build_token_secret(deployment: str, namespace: str, token: str) -> dict[str, Any]:
    """The bearer token the runner's endpoint requires; the operator reads it back to call /flatten."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(names(deployment)["token"], namespace, deployment, "runner"),
        "type": "Opaque",
        "stringData": {TOKEN_KEY: token},
    }


def gateway_target_port(spec: LiveDeploymentSpec) -> int:
    return SOCAT_PORTS[spec.mode] if spec.gateway.kind == "gateway" else spec.api_port


def build_gateway_statefulset(spec: LiveDeploymentSpec, deployment: str, namespace: str) -> dict[str, Any]:
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
    return {
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
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "ib-gateway",
                            "image": spec.gateway.image,
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
                            # Documented exception (module docstring): root start, writable home.
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"], "add": ["SETUID", "SETGID", "CHOWN"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                        }
                    ],
                },
            },
        },
    }


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
    spec: LiveDeploymentSpec, deployment: str, namespace: str, *, image: str, port: int, journal_url: str | None = None
) -> dict[str, Any]:
    """One runner, `Recreate`: a rollout stops the old trader before the new one starts. Never two at once."""
    n = names(deployment)
    args = [
        "live", "run",
        "--deployment", deployment,
        "--host", n["gateway"],
        "--port", str(spec.api_port),
        "--client-id", str(spec.gateway.client_id),
        "--http-port", str(port),
        "--journal-url", journal_url or f"sqlite:////journal/{deployment}.db",
    ]  # fmt: skip
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(n["runner"], namespace, deployment, "runner", protect=True),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {LIVE_LABEL: label_value(deployment), COMPONENT: "runner"}},
            "template": {
                "metadata": {"labels": labels(deployment, "runner")},
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


def build_network_policy(spec: LiveDeploymentSpec, deployment: str, namespace: str) -> dict[str, Any]:
    """Only this deployment's runner (and the operator, for emergency stops) reach the gateway's API port."""
    n = names(deployment)
    api_from = [
        {"podSelector": {"matchLabels": {LIVE_LABEL: label_value(deployment), COMPONENT: "runner"}}},
        {"namespaceSelector": {}, "podSelector": {"matchLabels": OPERATOR_SELECTOR}},
    ]
    ingress: list[dict[str, Any]] = [
        {"from": api_from, "ports": [{"protocol": "TCP", "port": gateway_target_port(spec)}]}
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(n["policy"], namespace, deployment, "gateway"),
        "spec": {
            "podSelector": {"matchLabels": {LIVE_LABEL: label_value(deployment), COMPONENT: "gateway"}},
            "policyTypes": ["Ingress"],
            "ingress": ingress,  # VNC, when on, is reached with `kubectl port-forward` only
        },
    }


def build_children(
    spec: LiveDeploymentSpec, deployment: str, namespace: str, *, image: str, runner_port: int, token: str
) -> list[dict[str, Any]]:
    """Every child, in creation order: policy and secret before the pods that need them."""
    return [
        build_network_policy(spec, deployment, namespace),
        build_token_secret(deployment, namespace, token),
        build_gateway_service(spec, deployment, namespace),
        build_gateway_statefulset(spec, deployment, namespace),
        build_runner_service(deployment, namespace, runner_port),
        build_runner_deployment(spec, deployment, namespace, image=image, port=runner_port),
    ]
