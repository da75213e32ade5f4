"""The operator is no confused deputy: what a LiveDeployment may make it run, and with which Secret.

Whoever may create a LiveDeployment would otherwise choose the image that receives the IB
credentials and any Secret of the namespace to inject into it. So:

- the gateway image is one of the operator's allowed images (`allowed_gateway_images`, digest
  pinned; the first is the default), whatever the spec says;
- the credentials Secret must name the deployment in its annotation
  `kubetrader.io/live-deployments` (comma-separated names): whoever can annotate that Secret has
  agreed that this deployment may use it.

Pure functions: the handler reads the Secret and reports the refusal as a Failed condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubetrader.specs.live import LiveDeploymentSpec

SECRET_OPT_IN_ANNOTATION = "kubetrader.io/live-deployments"


def gateway_image(spec: LiveDeploymentSpec, allowed: Sequence[str]) -> str:
    """The image to run: the spec's when allowed, the first allowed one when it names none."""
    return spec.gateway.image or allowed[0]


def image_refusal(spec: LiveDeploymentSpec, allowed: Sequence[str]) -> str | None:
    image = spec.gateway.image
    if image is None or image in allowed:
        return None
    return f"spec.gateway.image {image} is not one of the operator's allowed gateway images: {', '.join(allowed)}"


def unreadable_credentials(spec: LiveDeploymentSpec) -> str:
    """Why a credentials Secret the operator may not read (RBAC 403) is refused."""
    return (
        f"spec.gateway.credentialsSecret: the operator may not read Secret {spec.gateway.credentials_secret}: "
        "list it in the chart's operator.readableSecrets"
    )


def credentials_refusal(secret: dict[str, Any] | None, spec: LiveDeploymentSpec, deployment: str) -> str | None:
    """Why the named Secret may not be handed to this deployment's gateway (None: it may)."""
    name = spec.gateway.credentials_secret
    if secret is None:
        return f"spec.gateway.credentialsSecret: Secret {name} not found"
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    allowed = {n.strip() for n in str(annotations.get(SECRET_OPT_IN_ANNOTATION, "")).split(",") if n.strip()}
    if deployment not in allowed:
        return (
            f"spec.gateway.credentialsSecret: Secret {name} does not opt in to LiveDeployment {deployment}: "
            f"annotate it with {SECRET_OPT_IN_ANNOTATION}={deployment}"
        )
    data = {**(secret.get("data") or {}), **(secret.get("stringData") or {})}
    keys = ["username", "password", *(["vncPassword"] if spec.gateway.vnc else [])]
    missing = [k for k in keys if k not in data]
    if missing:
        return f"spec.gateway.credentialsSecret: Secret {name} lacks the keys {', '.join(missing)}"
    return None
