"""kopf handlers of LiveDeployment: thin. Parse, call a builder or the stop sequence, patch status.

The delete handler is the heart. kopf releases a finalizer when a deletion handler
fails permanently: a `PermanentError`, exhausted `retries=`, a passed `timeout=`. So
the handler declares none of them and turns EVERY failure into
`TemporaryError(delay=spec.stopPolicy.retrySeconds)`: the LiveDeployment stays
Terminating, with a `StopBlocked` condition and a warning Event, until the broker
confirms no order and no position. Only then are the children released.
"""

from __future__ import annotations

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


def _runner_token(namespace: str, name: str) -> str | None:
    """The runner's bearer token, derived from the operator's key (None: no key configured)."""
    key = get_live_settings().runner_token_key
    return builders.runner_token(key.get_secret_value(), namespace, name) if key is not None else None


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


def _valid_spec(body: kopf.Body, patch: kopf.Patch, *, generation: Any, now: str) -> LiveDeploymentSpec:
    """The spec, or Failed (InvalidSpec, with pydantic's first message) and a permanent error: no retry helps."""
    try:
        return _spec(body)
    except ValidationError as exc:
        message = f"invalid spec: {exc.errors()[0].get('msg')}"
        _fail(body, patch, "InvalidSpec", message, generation=generation, now=now)
        raise kopf.PermanentError(message) from exc


def _promotion_gate(
    body: kopf.Body, spec: LiveDeploymentSpec, namespace: str, patch: kopf.Patch, *, generation: Any, now: str
) -> str | None:
    """`mode: live` only behind a matching, fresh Backtest: the Promoted condition, and the refusal if any."""
    if spec.mode != "live" or spec.promotion is None:
        return None
    backtest = kube_io.read_backtest(namespace, spec.promotion.from_backtest)
    refusal = status.promotion_refusal(
        spec.promotion, backtest, spec, max_age_days=get_live_settings().max_backtest_age_days
    )
    c = set_condition(
        _current(body, patch), status.PROMOTED, refusal is None, "BacktestGate" if refusal is None else "GateClosed",
        refusal or f"Backtest {spec.promotion.from_backtest} passed the gate", generation=generation, now=now,
    )  # fmt: skip
    _apply(patch, {"conditions": c, "phase": status.derive_phase(c), "message": refusal})
    if refusal is not None:
        kopf.warn(body, reason="PromotionRefused", message=refusal)
    return refusal


@kopf.on.resume(*RESOURCE, backoff=SETTINGS.backoff_seconds)
@kopf.on.create(*RESOURCE, backoff=SETTINGS.backoff_seconds)
def create_children(body: kopf.Body, name: str, namespace: str | None, patch: kopf.Patch, **_: Any) -> None:
    """Gateway, runner, policy and token: created if absent, never replaced."""
    assert namespace is not None  # LiveDeployment is namespaced
    generation = body.get("metadata", {}).get("generation")
    now = now_iso()
    spec = _valid_spec(body, patch, generation=generation, now=now)
    if spec.mode == "live" and spec.promotion is None:  # the CRD's CEL refuses it too: never trade unpromoted
        message = "mode 'live' needs spec.promotion.fromBacktest"
        c = set_condition(
            _conditions(body), status.FAILED, True, "NotPromoted", message, generation=generation, now=now
        )
        _apply(patch, {"conditions": c, "phase": status.derive_phase(c), "message": message})
        raise kopf.PermanentError(message)
    refusal = _promotion_gate(body, spec, namespace, patch, generation=generation, now=now)
    if refusal is not None:
        raise kopf.TemporaryError(refusal, delay=get_live_settings().refusal_retry_seconds)
    settings = get_live_settings()
    refusal = deputy.image_refusal(spec, settings.allowed_gateway_images)
    if refusal is not None:
        _fail(body, patch, "ImageNotAllowed", refusal, generation=generation, now=now)
        raise kopf.PermanentError(refusal)
    try:
        secret = kube_io.read_credentials(namespace, spec.gateway.credentials_secret)
        refusal = deputy.credentials_refusal(secret, spec, name)
    except PermissionError:
        refusal = deputy.unreadable_credentials(spec)
    if refusal is not None:  # the Secret may be annotated later: retried, the reason in status meanwhile
        _fail(body, patch, "CredentialsNotAllowed", refusal, generation=generation, now=now)
        raise kopf.TemporaryError(refusal, delay=settings.refusal_retry_seconds)
    token = _runner_token(namespace, name)
    if token is None:
        message = "KUBETRADER_OPERATOR_LIVE_RUNNER_TOKEN_KEY is not set: no runner token can be derived"
        _fail(body, patch, "NoRunnerTokenKey", message, generation=generation, now=now)
        raise kopf.TemporaryError(message, delay=settings.refusal_retry_seconds)
    image = settings.runner_image or SETTINGS.image
    for manifest in builders.build_children(
        spec, name, namespace, image=image, gateway_image=deputy.gateway_image(spec, settings.allowed_gateway_images),
        runner_port=settings.runner_port, token=token, network=settings.network(), generation=generation,
        stall_fence=settings.runner_stall_fence_seconds, scheduling=SETTINGS.pod_scheduling,
    ):  # fmt: skip
        existing, created = kube_io.create_if_absent(manifest)
        if created:
            kopf.info(body, reason="Created", message=f"{manifest['kind']} {manifest['metadata']['name']}")
        elif manifest["kind"] == "NetworkPolicy" and existing.get("spec") != manifest["spec"]:
            # Policies are safe to replace (no pod restarts): one made by an older operator (the
            # spoofable `namespaceSelector: {}` of #21) is brought up to date on resume.
            kube_io.patch("NetworkPolicy", namespace, manifest["metadata"]["name"], {"spec": manifest["spec"]})
            kopf.info(body, reason="Updated", message=f"NetworkPolicy {manifest['metadata']['name']}")
    c = set_condition(
        _current(body, patch), status.FAILED, False, "ChildrenCreated", "", generation=generation, now=now
    )
    _apply(patch, {"conditions": c, "phase": status.derive_phase(c), "message": None})
    patch.status["startTime"] = (body.get("status") or {}).get("startTime") or now
    runner = kube_io.read("Deployment", namespace, builders.names(name)["runner"])
    _apply(patch, {"observedGeneration": generation, "runningGeneration": builders.running_generation(runner or {})})


@kopf.on.update(*RESOURCE, field="spec", backoff=SETTINGS.backoff_seconds)
def roll_runner(body: kopf.Body, name: str, namespace: str | None, patch: kopf.Patch, **_: Any) -> None:
    """A spec edit the CRD admitted: the runner restarts with the new spec, safely.

    The unsafe edits never get here (CEL: `mode`, `gateway`, removing a symbol). A live
    deployment's edit must pass the promotion gate again, else the old runner keeps trading and
    the status says which generation runs and why the new one does not. With
    `stopPolicy.onUpdate: flatten` the positions are closed first (the stop sequence of a
    delete, confirmed at the broker); with `keep` (default) the old runner stops on SIGTERM
    (Recreate) and the new one reconciles the positions from the broker.
    """
    assert namespace is not None  # LiveDeployment is namespaced
    if body.get("metadata", {}).get("deletionTimestamp"):
        return  # the delete handler owns it now
    generation = body.get("metadata", {}).get("generation")
    now = now_iso()
    spec = _valid_spec(body, patch, generation=generation, now=now)
    settings = get_live_settings()
    runner = kube_io.read("Deployment", namespace, builders.names(name)["runner"])
    if runner is None:
        return  # nothing runs yet: the create handler (retrying) reads the new spec itself
    if builders.running_generation(runner) == generation:
        return  # already rolled (a retry after the patch)
    refusal = _promotion_gate(body, spec, namespace, patch, generation=generation, now=now)
    if refusal is not None:
        _spec_applied(body, patch, False, "GateClosed", f"generation {generation} not applied: {refusal}", runner,
                      generation=generation, now=now)  # fmt: skip
        raise kopf.TemporaryError(refusal, delay=settings.refusal_retry_seconds)
    if spec.stop_policy.on_update == "flatten":
        outcome = _stop(spec, name, namespace)
        if not outcome.flat:
            message = f"generation {generation} waits: NOT FLAT, retrying: {outcome.summary()}"
            _spec_applied(body, patch, False, "RollBlocked", message, runner, generation=generation, now=now)
            kopf.warn(body, reason="RollBlocked", message=message)
            raise kopf.TemporaryError(message, delay=spec.stop_policy.retry_seconds)
    wanted = builders.build_runner_deployment(
        spec, name, namespace, image=settings.runner_image or SETTINGS.image, port=settings.runner_port,
        generation=generation, stall_fence=settings.runner_stall_fence_seconds, scheduling=SETTINGS.pod_scheduling,
    )  # fmt: skip
    rolled = kube_io.patch(
        "Deployment", namespace, wanted["metadata"]["name"], {"spec": {"template": wanted["spec"]["template"]}}
    )
    message = f"runner restarted with generation {generation} ({spec.stop_policy.on_update} positions)"
    _spec_applied(body, patch, True, "RunnerRolled", message, rolled, generation=generation, now=now)
    kopf.info(body, reason="RunnerRolled", message=message)


def _spec_applied(
    body: kopf.Body, patch: kopf.Patch, applied: bool, reason: str, message: str, runner: dict[str, Any],
    *, generation: Any, now: str,
) -> None:  # fmt: skip
    """SpecApplied, observedGeneration (this generation was acted on) and the generation the runner runs."""
    c = set_condition(
        _current(body, patch), status.SPEC_APPLIED, applied, reason, message, generation=generation, now=now
    )
    _apply(patch, {
        "conditions": c, "phase": status.derive_phase(c), "message": None if applied else message,
        "observedGeneration": generation, "runningGeneration": builders.running_generation(runner),
    })  # fmt: skip


def _stop(spec: LiveDeploymentSpec, name: str, namespace: str) -> stopping.StopOutcome:
    """The stop sequence (kubetrader_operator.live.stopping) with this deployment's addresses; never raises."""
    try:
        url, host, port = _addresses(spec, name, namespace)
        settings = get_live_settings()
        return stopping.stop_everything(
            runner_url=url,
            token=_runner_token(namespace, name),
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
            hung_deadline=settings.hung_runner_deadline_seconds,
        )
    except Exception as exc:
        return stopping.StopOutcome(False, "", f"stop attempt failed: {exc!r}")


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
            url, "/status", token=_runner_token(namespace, name), timeout=get_live_settings().http_timeout_seconds
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
    outcome = _stop(spec, name, namespace)
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
