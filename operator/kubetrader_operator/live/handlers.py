"""kopf handlers of LiveDeployment: thin. Parse, call a builder or the stop sequence, patch status.

The delete handler is the heart. kopf releases a finalizer when a deletion handler
fails permanently: a `PermanentError`, exhausted `retries=`, a passed `timeout=`. So
the handler declares none of them and turns EVERY failure into
`TemporaryError(delay=spec.stopPolicy.retrySeconds)`: the LiveDeployment stays
Terminating, with a `StopBlocked` condition and a warning Event, until the broker
confirms no order and no position. Only then are the children released.
"""

from __future__ import annotations

import secrets
from typing import Any

import kopf
from pydantic import ValidationError

from kubetrader.specs import API_GROUP, API_VERSION
from kubetrader.specs.live import LiveDeploymentSpec
from kubetrader_operator.conditions import Condition, now_iso, set_condition
from kubetrader_operator.live import builders, deputy, kube_io, status, stopping
from kubetrader_operator.live.settings import get_live_settings
from kubetrader_operator.metrics import LIVE_STOP_BLOCKED
from kubetrader_operator.settings import get_settings

RESOURCE = (API_GROUP, API_VERSION, "livedeployments")
SETTINGS = get_settings()
LIVE = get_live_settings()


def _spec(body: kopf.Body) -> LiveDeploymentSpec:
    return LiveDeploymentSpec.model_validate(dict(body.get("spec") or {}))


def _conditions(body: kopf.Body) -> list[Condition]:
    return list((body.get("status") or {}).get("conditions") or [])


def _current(body: kopf.Body, patch: kopf.Patch) -> list[Condition]:
    """The conditions as this handler has left them so far (its patch), else as stored."""
    patched = patch.status.get("conditions")
    return list(patched) if patched is not None else _conditions(body)


def _apply(patch: kopf.Patch, fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        patch.status[key] = value


def _addresses(spec: LiveDeploymentSpec, name: str, namespace: str) -> tuple[str, str, int]:
    """(runner URL, gateway host, gateway port), from the templates in the live settings."""
    settings = get_live_settings()
    n = builders.names(name)
    url = settings.runner_url.format(service=n["runner"], namespace=namespace, port=settings.runner_port)
    address = settings.gateway_address.format(service=n["gateway"], namespace=namespace, port=spec.api_port)
    host, _, port = address.rpartition(":")
    return url, host, int(port)


def _fail(body: kopf.Body, patch: kopf.Patch, reason: str, message: str, *, generation: Any, now: str) -> None:
    """A Failed condition with the reason, the phase it implies, and a warning Event."""
    c = set_condition(_current(body, patch), status.FAILED, True, reason, message, generation=generation, now=now)
    _apply(patch, {"conditions": c, "phase": status.derive_phase(c), "message": message})
    kopf.warn(body, reason=reason, message=message)


@kopf.on.resume(*RESOURCE, backoff=SETTINGS.backoff_seconds)
@kopf.on.create(*RESOURCE, backoff=SETTINGS.backoff_seconds)
def create_children(body: kopf.Body, name: str, namespace: str | None, patch: kopf.Patch, **_: Any) -> None:
    """Gateway, runner, policy and token: created if absent, never replaced."""
    assert namespace is not None  # LiveDeployment is namespaced
    generation = body.get("metadata", {}).get("generation")
    now = now_iso()
    try:
        spec = _spec(body)
    except ValidationError as exc:
        message = f"invalid spec: {exc.errors()[0].get('msg')}"
        c = set_condition(
            _conditions(body), status.FAILED, True, "InvalidSpec", message, generation=generation, now=now
        )
        _apply(patch, {"conditions": c, "phase": status.derive_phase(c), "message": message})
        kopf.warn(body, reason="InvalidSpec", message=message)
        raise kopf.PermanentError(message) from exc
    if spec.mode == "live" and spec.promotion is None:  # the CRD's CEL refuses it too: never trade unpromoted
        message = "mode 'live' needs spec.promotion.fromBacktest"
        c = set_condition(
            _conditions(body), status.FAILED, True, "NotPromoted", message, generation=generation, now=now
        )
        _apply(patch, {"conditions": c, "phase": status.derive_phase(c), "message": message})
        raise kopf.PermanentError(message)
    if spec.mode == "live" and spec.promotion is not None:
        backtest = kube_io.read_backtest(namespace, spec.promotion.from_backtest)
        refusal = status.promotion_refusal(
            spec.promotion, backtest, spec, max_age_days=get_live_settings().max_backtest_age_days
        )
        c = set_condition(
            _conditions(body), status.PROMOTED, refusal is None, "BacktestGate" if refusal is None else "GateClosed",
            refusal or f"Backtest {spec.promotion.from_backtest} passed the gate", generation=generation, now=now,
        )  # fmt: skip
        _apply(patch, {"conditions": c, "phase": status.derive_phase(c), "message": refusal})
        if refusal is not None:
            kopf.warn(body, reason="PromotionRefused", message=refusal)
            raise kopf.TemporaryError(refusal, delay=30)
    settings = get_live_settings()
    refusal = deputy.image_refusal(spec, settings.allowed_gateway_images)
    if refusal is not None:
        _fail(body, patch, "ImageNotAllowed", refusal, generation=generation, now=now)
        raise kopf.PermanentError(refusal)
    secret = kube_io.read("Secret", namespace, spec.gateway.credentials_secret)
    refusal = deputy.credentials_refusal(secret, spec, name)
    if refusal is not None:  # the Secret may be annotated later: retried, the reason in status meanwhile
        _fail(body, patch, "CredentialsNotAllowed", refusal, generation=generation, now=now)
        raise kopf.TemporaryError(refusal, delay=settings.refusal_retry_seconds)
    token = kube_io.read_token(namespace, name) or secrets.token_urlsafe(32)
    image = settings.runner_image or SETTINGS.image
    for manifest in builders.build_children(
        spec, name, namespace, image=image, gateway_image=deputy.gateway_image(spec, settings.allowed_gateway_images),
        runner_port=settings.runner_port, token=token, network=settings.network(),
    ):  # fmt: skip
        _, created = kube_io.create_if_absent(manifest)
        if created:
            kopf.info(body, reason="Created", message=f"{manifest['kind']} {manifest['metadata']['name']}")
    c = set_condition(
        _current(body, patch), status.FAILED, False, "ChildrenCreated", "", generation=generation, now=now
    )
    _apply(patch, {"conditions": c, "phase": status.derive_phase(c), "message": None})
    patch.status["startTime"] = (body.get("status") or {}).get("startTime") or now


@kopf.timer(*RESOURCE, interval=LIVE.poll_interval_seconds, initial_delay=1.0, idle=0.0)
def poll_runner(body: kopf.Body, name: str, namespace: str | None, patch: kopf.Patch, **_: Any) -> None:
    """Status from the runner's /status: positions, PnL, open orders, heartbeat, halted."""
    assert namespace is not None  # LiveDeployment is namespaced
    from kubetrader.live.http import RunnerUnreachableError, call_runner

    if body.get("metadata", {}).get("deletionTimestamp"):
        return  # the delete handler owns the status now
    try:
        spec = _spec(body)
    except ValidationError:
        return
    generation = body.get("metadata", {}).get("generation")
    now = now_iso()
    c = set_condition(
        _conditions(body), status.GATEWAY_READY, kube_io.gateway_ready(namespace, name), "StatefulSetReady",
        "", generation=generation, now=now,
    )  # fmt: skip
    url = _addresses(spec, name, namespace)[0]
    try:
        snapshot = call_runner(
            url, "/status", token=kube_io.read_token(namespace, name), timeout=get_live_settings().http_timeout_seconds
        )
    except RunnerUnreachableError as exc:
        _apply(patch, status.runner_unreachable_status(c, str(exc), generation=generation, now=now))
        return
    _apply(patch, status.status_from_snapshot(snapshot, c, generation=generation, now=now))


@kopf.on.delete(*RESOURCE)  # no retries=, no timeout=, no PermanentError: see the module docstring
def emergency_stop_on_delete(body: kopf.Body, name: str, namespace: str | None, patch: kopf.Patch, **_: Any) -> None:
    assert namespace is not None  # LiveDeployment is namespaced
    try:
        spec = _spec(body)
    except ValidationError as exc:
        if kube_io.read("StatefulSet", namespace, builders.names(name)["gateway"]) is None:
            return  # never created anything: nothing can be trading
        raise kopf.TemporaryError("invalid spec but children exist: fix the spec", delay=30) from exc
    delay = spec.stop_policy.retry_seconds
    generation = body.get("metadata", {}).get("generation")
    now = now_iso()
    c = set_condition(
        _conditions(body), status.STOPPING, True, "Deleting", "cancelling orders and flattening positions",
        generation=generation, now=now,
    )  # fmt: skip
    try:
        url, host, port = _addresses(spec, name, namespace)
        settings = get_live_settings()
        outcome = stopping.stop_everything(
            runner_url=url,
            token=kube_io.read_token(namespace, name),
            gateway_host=host,
            gateway_port=port,
            client_id=settings.emergency_client_id,
            wait=settings.flatten_wait_seconds,
            http_timeout=settings.http_timeout_seconds,
            flatten=spec.stop_policy.flatten,
            cancel_orders=spec.stop_policy.cancel_orders,
            runner_client_id=spec.gateway.client_id,
            scope=spec.stop_policy.scope,
            owned=frozenset(spec.symbols),
        )
    except Exception as exc:
        outcome = stopping.StopOutcome(False, "", f"stop attempt failed: {exc!r}")
    if not outcome.flat:
        message = f"NOT FLAT, retrying in {delay:g} s: {outcome.summary()}"
        reason = "FlattenRejected" if outcome.blocked else "StopNotConfirmed"  # the broker's reasons are in message
        c = set_condition(c, status.STOP_BLOCKED, True, reason, message, generation=generation, now=now)
        _apply(patch, {"conditions": c, "phase": status.derive_phase(c), "stopOutcome": message})
        kopf.warn(body, reason="EmergencyStopBlocked", message=message)
        LIVE_STOP_BLOCKED.labels(namespace, name).set(1)
        raise kopf.TemporaryError(message, delay=delay)
    message = f"flat confirmed via {outcome.via}: {outcome.summary()}"
    c = set_condition(c, status.STOP_BLOCKED, False, "StopConfirmed", message, generation=generation, now=now)
    _apply(patch, {"conditions": c, "phase": status.derive_phase(c), "stopOutcome": message, "positions": {}})
    kopf.info(body, reason="EmergencyStopConfirmed", message=message)
    LIVE_STOP_BLOCKED.labels(namespace, name).set(0)
    kube_io.release_children(namespace, name)
