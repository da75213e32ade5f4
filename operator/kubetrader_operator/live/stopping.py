"""The stop sequence of a LiveDeployment being deleted (no Kubernetes here).

1. Ask the runner: `POST /flatten?wait=S` halts it, cancels every order, closes every
   position and answers `flat: true` only after fresh broker queries agree.
2. Confirm (or, when the runner is unreachable, do the whole job) directly at the
   gateway with the operator's own client id: `kubetrader.live.stop.emergency_stop`
   (reqGlobalCancel cancels every client's orders; flat only after a fresh round of
   successful queries).

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
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class StopOutcome:
    flat: bool
    via: str  # "gateway" (confirmed directly), "runner" (confirmed by the runner only), "" (failed)
    message: str
    positions: dict[str, float] | None = None
    open_orders: int | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"{self.message}{notes}"


def flatten_via_runner(url: str, token: str | None, *, wait: float, timeout: float) -> tuple[bool, str]:
    from kubetrader.live.http import RunnerUnreachableError, call_runner

    try:
        body = call_runner(url, f"/flatten?wait={wait:g}", token=token, method="POST", timeout=wait + timeout)
    except RunnerUnreachableError as exc:
        return False, f"runner unreachable: {exc}"
    if body.get("flat"):
        return True, "runner confirmed flat"
    status: dict[str, Any] = body.get("status") or {}
    return False, f"runner not flat after {wait:g} s: positions {status.get('positions')}"


def halt_via_runner(url: str, token: str | None, *, cancel_entries: bool, timeout: float) -> str:
    from kubetrader.live.http import RunnerUnreachableError, call_runner

    path = "/halt?cancel=entries" if cancel_entries else "/halt"
    try:
        call_runner(url, path, token=token, method="POST", timeout=timeout)
    except RunnerUnreachableError as exc:
        return f"runner unreachable: {exc}"
    return "runner halted" + (", its entries cancelled" if cancel_entries else "")


def stop_at_gateway(
    host: str, port: int, client_id: int, *, timeout: float, flatten: bool, cancel_orders: bool = True
) -> StopOutcome:
    from kubetrader.live.broker import BrokerUnavailableError
    from kubetrader.live.ib_broker import IBBroker
    from kubetrader.live.stop import emergency_stop

    broker = IBBroker(host, port, client_id, timeout=min(timeout, 5.0))
    try:
        broker.connect()
        broker.ping()
    except BrokerUnavailableError as exc:
        broker.disconnect()
        return StopOutcome(False, "", f"gateway {host}:{port} unreachable, nothing confirmed: {exc}")
    try:
        report = emergency_stop(broker, timeout=timeout, flatten=flatten, cancel_orders=cancel_orders)
    finally:
        broker.disconnect()
    via = "gateway" if report.flat else ""
    outcome = StopOutcome(report.flat, via, report.message, report.positions, report.open_orders)
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
) -> StopOutcome:
    """Runner first, then the gateway directly; flat only when the broker confirmed it."""
    notes: list[str] = []
    runner_flat = False
    if flatten:
        runner_flat, note = flatten_via_runner(runner_url, token, wait=wait, timeout=http_timeout)
        notes.append(note)
    elif not cancel_orders:
        notes.append(halt_via_runner(runner_url, token, cancel_entries=True, timeout=http_timeout))
    outcome = stop_at_gateway(
        gateway_host, gateway_port, client_id, timeout=wait, flatten=flatten, cancel_orders=cancel_orders
    )
    outcome.notes = notes + outcome.notes
    if not outcome.flat and runner_flat and "unreachable" in outcome.message:
        # The operator cannot reach the gateway but the runner could and confirmed with fresh
        # broker queries: that is a confirmation at the broker, recorded as the runner's.
        return StopOutcome(True, "runner", "flat: confirmed by the runner's fresh broker queries", {}, 0, outcome.notes)
    return outcome
