"""`kubetrader live ...`: run a strategy live (paper or live), stop it, or stop everything now."""

from __future__ import annotations

import json
import sys

import click

from kubetrader.errors import EXIT_RETRYABLE


@click.group("live")
def live() -> None:
    """Trade a strategy through Interactive Brokers (or a replay), and stop it."""


@live.command("emergency-stop")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=4002, show_default=True, help="4001/4002 gateway, 7496/7497 TWS.")
@click.option("--client-id", type=int, default=999, show_default=True, help="A client id the runner does not use.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to reach flat.")
@click.option("--connect-attempts", type=int, default=3, show_default=True)
def emergency_stop_cmd(host: str, port: int, client_id: int, timeout: float, connect_attempts: int) -> None:
    """Cancel every order, flatten every position, then confirm at the broker (exit 0 only when flat)."""
    from kubetrader.live.broker import BrokerUnavailableError
    from kubetrader.live.connection import RetryPolicy, connect_with_retry
    from kubetrader.live.ib_broker import IBBroker
    from kubetrader.live.stop import emergency_stop

    broker = IBBroker(host, port, client_id, timeout=min(timeout, 10.0))
    try:
        connect_with_retry(broker, RetryPolicy(attempts=connect_attempts, base_delay=0.5, max_delay=5.0))
    except BrokerUnavailableError as exc:
        click.echo(f"EMERGENCY STOP FAILED: cannot reach the broker, nothing was cancelled or closed: {exc}", err=True)
        sys.exit(EXIT_RETRYABLE)
    try:
        report = emergency_stop(broker, timeout=timeout)
    finally:
        broker.disconnect()
    click.echo(json.dumps(report.as_dict()))
    if not report.flat:
        click.echo(f"EMERGENCY STOP FAILED: {report.message}", err=True)
        sys.exit(EXIT_RETRYABLE)
    click.echo(report.message, err=True)
