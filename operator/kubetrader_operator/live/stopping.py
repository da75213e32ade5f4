"""The stop sequence of a LiveDeployment being deleted (no Kubernetes here).

Exactly one process flattens an account at a time (`kubetrader.live.lease`):

1. Ask the runner: `POST /flatten?wait=S` halts it, cancels every order and closes every
   position with the one flattener (`kubetrader.live.stop`). If the runner ANSWERS, it is
   the flattener: the operator sends nothing. When it says flat, the operator confirms
   read-only at the gateway under its own client id (no cancel, no order); when it does
   not, the stop is blocked with the runner's reason and retried.
2. Only when the runner does not answer, the operator flattens itself, connected under
   the RUNNER's client id: the gateway refuses that connection while the runner is still
   connected (IB error 326), so a runner that is alive but unreachable over HTTP keeps
   the slot and the operator does not act ("runner holds the flattener slot"); and while
   the operator holds it, a restarted runner cannot connect and trade.

3. A runner that is connected but HUNG (its process stopped, its loop stuck: it holds its
   client id at the gateway, and either its HTTP endpoint is silent or its status is no
   longer published) would block step 2 forever. After `hung_deadline` seconds of seeing
   it hung, the operator acts under its OWN client id. The fencing is the runner's: a
   runner whose loop did not run for `stall_fence` seconds (shorter than the deadline)
   halts itself before it sends anything again (`Session._check_stall`), so when it wakes
   up the operator is still the one flattener; a runner that has fenced itself says so
   (`fenced` in its status) and the operator acts at once. What this cannot tell apart: a
   runner that is alive but cut off from the operator's network while its gateway link
   works; it keeps trading beside the operator's stop until its reconciliation sees the
   operator's closes as a difference and halts it. (Deleting its pod would be the stronger
   fence, and needs the node to answer.)

With `stopPolicy: {flatten: false, cancelOrders: false}` step 1 is `POST /halt?cancel=entries`
(the runner, owner of its orders, cancels those that would increase exposure and keeps
its exits) and step 2 confirms that no exposure-increasing order works, falling back to
reqGlobalCancel if some still do; `cancelOrders: false` has no effect when flattening.
The exact rules are in `kubetrader.live.stop`'s docstring.

Only a confirmation at the broker counts. A runner that is down, a gateway that
refuses connections or an empty position list after a socket error are failures,
reported as such; the caller keeps the finalizer and tries again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# The default `hung_deadline` (the operator passes `LiveSettings.hung_runner_deadline_seconds`, and
# gives its runners a `--stall-fence` of two thirds of it): longer than the runner's default
# `SessionConfig.stall_fence` (60 s), so a runner hung this long has fenced itself by the time it
# could send again.
HUNG_DEADLINE_SECONDS = 90.0
# Since when each runner (by URL) has been seen hung, across the kopf handler's retries. An
# operator restart forgets it and waits the deadline again: the safe direction.
_hung_since: dict[str, float] = {}


@dataclass
class StopOutcome:
    flat: bool
    via: str  # "gateway" (confirmed directly), "runner" (confirmed by the runner only), "" (failed)
    message: str
    positions: dict[str, float] | None = None
    open_orders: int | None = None
    notes: list[str] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)  # contract -> the broker's reason
    left: dict[str, float] = field(default_factory=dict)
    slot_held: bool = False  # the gateway refused the runner's client id: the runner is connected

    def summary(self) -> str:
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"{self.message}{notes}"


@dataclass
class RunnerAnswer:
    reachable: bool
    flat: bool
    note: str
    fenced: bool = False  # the runner fenced itself after a stall: it is no flattener any more
    stale: bool = False  # it answers, but its loop has not published its status for too long


def _answer_age(status: dict[str, Any]) -> float | None:
    published = status.get("published_at")
    return time.time() - float(published) if published is not None else None


def flatten_via_runner(url: str, token: str | None, *, wait: float, timeout: float) -> RunnerAnswer:
    from kubetrader.live.http import RunnerUnreachableError, call_runner

    try:
        body = call_runner(url, f"/flatten?wait={wait:g}", token=token, method="POST", timeout=wait + timeout)
    except RunnerUnreachableError as exc:
        return RunnerAnswer(False, False, f"runner unreachable: {exc}")
    if body.get("flat"):
        return RunnerAnswer(True, True, "runner confirmed flat")
    status: dict[str, Any] = body.get("status") or {}
    if status.get("fenced"):
        return RunnerAnswer(True, False, f"runner fenced itself: {status['fenced']}", fenced=True)
    age = _answer_age(status)
    if age is not None and age > wait + timeout:
        return RunnerAnswer(True, False, f"runner answers but its loop last published {age:.0f} s ago", stale=True)
    why = status.get("stop_blocked") or f"positions {status.get('positions')}"
    return RunnerAnswer(True, False, f"runner not flat after {wait:g} s: {why}")


def halt_via_runner(url: str, token: str | None, *, cancel_entries: bool, timeout: float) -> str:
    from kubetrader.live.http import RunnerUnreachableError, call_runner

    path = "/halt?cancel=entries" if cancel_entries else "/halt"
    try:
        call_runner(url, path, token=token, method="POST", timeout=timeout)
    except RunnerUnreachableError as exc:
        return f"runner unreachable: {exc}"
    return "runner halted" + (", its entries cancelled" if cancel_entries else "")


def stop_at_gateway(
    host: str,
    port: int,
    client_id: int,
    *,
    timeout: float,
    flatten: bool,
    cancel_orders: bool = True,
    read_only: bool = False,
    scope: str = "account",
    owned: frozenset[str] = frozenset(),
    settle_window: float = 1.5,
) -> StopOutcome:
    from kubetrader.live.broker import BrokerUnavailableError, ClientIdInUseError
    from kubetrader.live.ib_broker import IBBroker
    from kubetrader.live.stop import StopSettings, emergency_stop

    broker = IBBroker(host, port, client_id, timeout=min(timeout, 5.0))
    try:
        broker.connect()
        broker.ping()
    except ClientIdInUseError as exc:
        broker.disconnect()
        return StopOutcome(False, "", f"the runner still holds the flattener slot (client id {client_id} is "
                                      f"connected to the gateway) but does not answer; not acting: {exc}",
                           slot_held=True)  # fmt: skip
    except BrokerUnavailableError as exc:
        broker.disconnect()
        return StopOutcome(False, "", f"gateway {host}:{port} unreachable, nothing confirmed: {exc}")
    settings = StopSettings(
        timeout=timeout, read_only=read_only, scope="account" if scope == "account" else "strategy", owned=owned,
        settle_window=settle_window, ref_prefix="kt-ostop",
    )  # fmt: skip
    try:
        report = emergency_stop(broker, flatten=flatten, cancel_orders=cancel_orders, settings=settings)
    finally:
        broker.disconnect()
    via = "gateway" if report.flat else ""
    outcome = StopOutcome(
        report.flat, via, report.message, report.positions, report.open_orders, blocked=report.blocked,
        left=report.left,
    )  # fmt: skip
    if report.kept_orders:
        outcome.notes.append(f"exits kept: {', '.join(report.kept_orders)}")
    return outcome


def stop_everything(
    *,
    runner_url: str,
    token: str | None,
    gateway_host: str,
    gateway_port: int,
    client_id: int,
    wait: float,
    http_timeout: float,
    flatten: bool,
    cancel_orders: bool = True,
    runner_client_id: int | None = None,
    scope: str = "strategy",
    owned: frozenset[str] = frozenset(),
    hung_deadline: float = HUNG_DEADLINE_SECONDS,
) -> StopOutcome:
    """The runner if it answers, else the operator under the runner's client id, else (the runner hung
    past `hung_deadline`, or fenced) under the operator's own; flat only when confirmed."""
    common: dict[str, Any] = {"flatten": flatten, "cancel_orders": cancel_orders, "scope": scope, "owned": owned}
    if not flatten and not cancel_orders:
        note = halt_via_runner(runner_url, token, cancel_entries=True, timeout=http_timeout)
        outcome = stop_at_gateway(gateway_host, gateway_port, client_id, timeout=wait, **common)
        outcome.notes.insert(0, note)
        return outcome
    answer = flatten_via_runner(runner_url, token, wait=wait, timeout=http_timeout) if flatten else None
    if answer is not None and answer.fenced:
        _hung_since.pop(runner_url, None)
        return _take_over(gateway_host, gateway_port, client_id, wait, common, answer.note)
    if answer is not None and answer.stale:
        return _hung(runner_url, answer.note, hung_deadline, gateway_host, gateway_port, client_id, wait, common)
    if answer is not None and answer.reachable:
        _hung_since.pop(runner_url, None)
        if not answer.flat:  # the runner is the flattener and still at it: never a second one
            return StopOutcome(False, "", answer.note, notes=["the runner is flattening; the operator does not act"])
        outcome = stop_at_gateway(gateway_host, gateway_port, client_id, timeout=wait, read_only=True, **common)
        outcome.notes.insert(0, answer.note)
        if not outcome.flat and "unreachable" in outcome.message:
            # The operator cannot reach the gateway but the runner could and confirmed with fresh
            # broker queries over its settling window: a confirmation at the broker, the runner's.
            return StopOutcome(True, "runner", "flat: confirmed by the runner's fresh broker queries", {}, 0,
                               outcome.notes)  # fmt: skip
        return outcome
    from kubetrader.live.lease import acting_client_id

    # flattening is fenced by the runner's client id; cancelling only (flatten: false) is not a race
    acting_id = client_id
    if runner_client_id is not None:
        acting_id = acting_client_id(runner_client_id, client_id, flatten=flatten)
    outcome = stop_at_gateway(gateway_host, gateway_port, acting_id, timeout=wait, **common)
    if outcome.slot_held and flatten:
        note = answer.note if answer is not None else "runner unreachable"
        return _hung(runner_url, f"{note}; {outcome.message}", hung_deadline, gateway_host, gateway_port, client_id,
                     wait, common)  # fmt: skip
    _hung_since.pop(runner_url, None)
    if answer is not None:
        outcome.notes.insert(0, answer.note)
    return outcome


def _hung(
    runner_url: str, why: str, deadline: float, host: str, port: int, client_id: int, wait: float,
    common: dict[str, Any],
) -> StopOutcome:  # fmt: skip
    """The runner is connected but hung: wait out `deadline` from the first sighting, then take over."""
    since = _hung_since.setdefault(runner_url, time.monotonic())
    hung_for = time.monotonic() - since
    if hung_for < deadline:
        message = f"runner hung for {hung_for:.0f} s (taking over after {deadline:g} s): {why}"
        return StopOutcome(False, "", message, notes=["not acting yet: a hung runner fences itself after its stall"])
    _hung_since.pop(runner_url, None)
    return _take_over(host, port, client_id, wait, common, f"runner hung for {hung_for:.0f} s: {why}")


def _take_over(host: str, port: int, client_id: int, wait: float, common: dict[str, Any], why: str) -> StopOutcome:
    """Flatten under the operator's own client id (the runner is fenced by its own stall rule)."""
    outcome = stop_at_gateway(host, port, client_id, timeout=wait, **common)
    outcome.notes.insert(0, f"{why}; acting under the operator's own client id {client_id}")
    return outcome
