"""`kubetrader live ...`: run a strategy live (paper or live), stop it, or stop everything now."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import Any

import click

from kubetrader.cli.options import _parse_param, greedy_option, split_symbols
from kubetrader.errors import EXIT_RETRYABLE, SpecError

RISK_OPTIONS = (
    "max_position_size",
    "max_concentration",
    "max_daily_loss",
    "max_drawdown",
    "max_order_notional",
    "max_orders_per_minute",
)


@click.group("live")
def live() -> None:
    """Trade a strategy through Interactive Brokers (or a replay), and stop it."""


@live.command("emergency-stop")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=4002, show_default=True, help="4001/4002 gateway, 7496/7497 TWS.")
@click.option("--client-id", type=int, default=999, show_default=True, help="A client id the runner does not use.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to reach flat.")
@click.option("--connect-attempts", type=int, default=3, show_default=True)
@click.option("--account", default="", help="Only this account (default: every account of the login).")
@click.option("--settle-window", type=float, default=1.5, show_default=True,
              help="Seconds the books must agree at zero; longer than the gateway's position-report lag.")  # fmt: skip
def emergency_stop_cmd(
    host: str, port: int, client_id: int, timeout: float, connect_attempts: int, account: str, settle_window: float
) -> None:
    """Cancel every order, flatten every position, then confirm at the broker (exit 0 only when flat).

    Pass the runner's client id to fence it (kubetrader.live.lease): the gateway then
    refuses this stop while the runner is connected, so two processes never flatten at once.
    A connection cut on the way is retried until --timeout; exit 3 with the report when not flat.
    """
    from kubetrader.live.broker import BrokerUnavailableError
    from kubetrader.live.connection import RetryPolicy, connect_with_retry
    from kubetrader.live.ib_broker import IBBroker
    from kubetrader.live.stop import StopSettings, emergency_stop

    if settle_window <= 0:
        raise click.BadParameter("must be > 0 seconds", param_hint="--settle-window")
    broker = IBBroker(host, port, client_id, timeout=min(timeout, 10.0), account=account)
    try:
        connect_with_retry(broker, RetryPolicy(attempts=connect_attempts, base_delay=0.5, max_delay=5.0))
    except BrokerUnavailableError as exc:
        click.echo(f"EMERGENCY STOP FAILED: cannot reach the broker, nothing was cancelled or closed: {exc}", err=True)
        sys.exit(EXIT_RETRYABLE)
    try:
        report = emergency_stop(broker, settings=StopSettings(timeout=timeout, settle_window=settle_window))
    finally:
        broker.disconnect()
    click.echo(json.dumps(report.as_dict()))
    if not report.flat:
        click.echo(f"EMERGENCY STOP FAILED: {report.message}", err=True)
        sys.exit(EXIT_RETRYABLE)
    click.echo(report.message, err=True)


def _live_spec(spec_json: str | None, **options: Any) -> Any:
    """The LiveDeploymentSpec: from --spec-json (what the operator passes) or from the options."""
    from pydantic import ValidationError

    from kubetrader.cli.options import spec_error_from_validation
    from kubetrader.specs.live import LiveDeploymentSpec

    if spec_json:
        try:
            return LiveDeploymentSpec.model_validate_json(spec_json)
        except ValidationError as exc:
            raise spec_error_from_validation(exc) from exc
    if not options["strategy"]:
        raise SpecError("--strategy", "required (or --spec-json)")
    if not options["symbols"]:
        raise SpecError("--symbols", "at least one symbol")
    risk = {name: options[name] for name in RISK_OPTIONS if options[name] is not None}
    doc = {
        "strategy": {"path": options["strategy"], "params": dict(_parse_param(p) for p in options["param"])},
        "symbols": split_symbols(options["symbols"]),
        "mode": options["mode"],
        "timeframe": options["timeframe"],
        "risk": risk,
    }
    try:
        return LiveDeploymentSpec.model_validate(doc)
    except ValidationError as exc:
        raise spec_error_from_validation(exc, {"strategy.path": "--strategy", "symbols": "--symbols"}) from exc


@live.command("run")
@click.option("--strategy", default=None, help="Import path, e.g. strategies.sma_crossover.SMACrossover.")
@click.option("--param", multiple=True, help="Strategy parameter NAME=VALUE (repeatable).")
@greedy_option("--symbols", "symbols", help="Symbols: --symbols ORCL NVDA (or comma-separated).")
@click.option("--mode", type=click.Choice(["paper", "live"]), default="paper", show_default=True)
@click.option("--timeframe", default="1m", show_default=True, help="Bar size the strategy sees: 1d, 1h, 5m, 1m.")
@click.option("--max-position-size", type=float, default=None, help="Shares per symbol.")
@click.option("--max-concentration", type=float, default=None, help="Share of equity in one symbol (0-1).")
@click.option("--max-daily-loss", type=float, default=None, help="Loss from the day's start that halts (0-1).")
@click.option("--max-drawdown", type=float, default=None, help="Drawdown from the peak that halts for good (0-1).")
@click.option("--max-order-notional", type=float, default=None, help="Largest value of one order.")
@click.option("--max-orders-per-minute", type=int, default=None, help="Order-rate limit.")
@click.option("--spec-json", envvar="KUBETRADER_LIVE_SPEC", default=None, help="A whole LiveDeployment spec (JSON).")
@click.option("--host", default="127.0.0.1", show_default=True, help="IB Gateway / TWS host.")
@click.option("--port", type=int, default=None, help="API port (default by mode: gateway 4002 paper, 4001 live).")
@click.option("--client-id", type=int, default=None, help="API client id (default: the spec's gateway.clientId).")
@click.option("--replay", is_flag=True, help="No gateway: fill against stored bars (SimulatedBroker).")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Replay: first day.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Replay: last day.")
@click.option("--cash", type=float, default=100_000.0, show_default=True, help="Replay: starting cash.")
@click.option("--bar-interval", type=float, default=0.0, show_default=True, help="Replay: seconds per bar.")
@click.option("--journal-url", default=None, help="SQLAlchemy URL of the journal (default: a SQLite file here).")
@click.option("--deployment", default="local", show_default=True, help="Name in the journal and order refs.")
@click.option("--http-host", default="0.0.0.0", show_default=True)
@click.option("--http-port", type=int, default=None, help="Serve /status, /stop, /flatten, /halt (token required).")
@click.option("--insecure-local", is_flag=True, help="Serve the endpoint without a token, on 127.0.0.1 only.")
@click.option("--account-lease", envvar="KUBETRADER_ACCOUNT_LEASE", default=None,
              help="One trader per account: the key of the lease this runner must hold in the journal "
              "database to send (default with IB: the gateway's host:port; none with --replay).")  # fmt: skip
@click.option("--gateway-deadline", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True,
              help="Seconds the gateway may stay unreachable before the runner exits 3 with a report.")  # fmt: skip
@click.option("--stall-fence", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="A runner whose loop stalled this long halts itself before sending again (the operator "
              "takes over a hung runner after a longer deadline).")  # fmt: skip
def run_cmd(
    spec_json: str | None,
    host: str,
    port: int | None,
    client_id: int | None,
    replay: bool,
    start: dt.datetime | None,
    end: dt.datetime | None,
    cash: float,
    bar_interval: float,
    journal_url: str | None,
    deployment: str,
    http_host: str,
    http_port: int | None,
    insecure_local: bool,
    account_lease: str | None,
    gateway_deadline: float,
    stall_fence: float,
    **options: Any,
) -> None:
    """Trade a strategy: through IB (paper or live) or, with --replay, on stored bars.

    The same BaseStrategy subclass as in a backtest runs unchanged; every order passes
    the risk limits, is journaled, then sent. Stop it with `kubetrader live stop`.
    """
    import logging

    from kubetrader.live.launch import (
        Connection,
        Endpoint,
        Replay,
        ib_broker,
        load_checked_strategy,
        replay_broker,
        run_deployment,
    )
    from kubetrader.live.session import GatewayDownError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = _live_spec(spec_json, **options)
    load_checked_strategy(spec)  # a typo fails before any data is read or connection made
    if replay:
        broker = replay_broker(
            spec, Replay(start.date() if start else None, end.date() if end else None, cash, bar_interval)
        )
    else:
        broker = ib_broker(Connection(host, port or spec.api_port, client_id or spec.gateway.client_id))
        account_lease = account_lease or f"{host}:{port or spec.api_port}"
    endpoint = None
    if http_port is not None:
        endpoint = Endpoint("127.0.0.1" if insecure_local else http_host, http_port, insecure_local)
    try:
        session = run_deployment(
            spec,
            broker,
            deployment=deployment,
            journal_url=journal_url or f"sqlite:///kubetrader-live-{deployment}.db",
            endpoint=endpoint,
            lease_account=account_lease,
            gateway_deadline=gateway_deadline,
            stall_fence=stall_fence,
        )
    except GatewayDownError as exc:
        click.echo(json.dumps({k: v for k, v in exc.report.items() if k != "prices"}, default=str))
        click.echo(str(exc), err=True)
        sys.exit(EXIT_RETRYABLE)
    click.echo(json.dumps({k: v for k, v in session.snapshot().items() if k != "prices"}, default=str))


@live.command("stop")
@click.option("--url", required=True, help="The runner's endpoint, e.g. http://my-live-runner:8080.")
@click.option("--token", envvar="KUBETRADER_RUNNER_TOKEN", default=None, help="Bearer token (or the env variable).")
@click.option("--flatten", "how", flag_value="flatten", help="Flatten now and wait for the broker's confirmation.")
@click.option("--halt", "how", flag_value="halt", help="Kill switch: no new exposure, positions kept.")
@click.option("--graceful", "how", flag_value="stop", default=True, help="No new entries, close, exit (default).")
@click.option("--wait", type=float, default=30.0, show_default=True, help="Seconds to wait for a flatten.")
def stop_cmd(url: str, token: str | None, how: str, wait: float) -> None:
    """Stop a running trader through its endpoint (exit 0 only when the request was accepted / flat)."""
    from kubetrader.live.http import RunnerUnreachableError, call_runner

    path = f"/flatten?wait={wait}" if how == "flatten" else f"/{how}"
    try:
        body = call_runner(url, path, token=token, method="POST", timeout=wait + 5)
    except RunnerUnreachableError as exc:
        click.echo(f"STOP FAILED: {exc} (use `kubetrader live emergency-stop` against the gateway)", err=True)
        sys.exit(EXIT_RETRYABLE)
    click.echo(json.dumps(body, default=str))
    if how == "flatten" and not body.get("flat"):
        click.echo(f"NOT FLAT after {wait:.0f} s; the runner keeps trying", err=True)
        sys.exit(EXIT_RETRYABLE)


@live.command("download")
@greedy_option("--symbols", "symbols", required=True, help="Symbols: --symbols SPY AAPL.")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First day.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last day.")
@click.option("--resolution", default="Daily", show_default=True, help="Daily, Hour or Minute.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=4002, show_default=True)
@click.option("--client-id", type=int, default=998, show_default=True, help="A client id the runner does not use.")
@click.option("--data-dir", default=None, help="Data store (default: KUBETRADER_DATA_DIR or ./data).")
@click.option("--max-requests", type=int, default=60, show_default=True, help="Historical requests per window.")
@click.option("--window", type=float, default=600.0, show_default=True, help="Pacing window, seconds.")
def download_cmd(
    symbols: tuple[str, ...],
    start: dt.datetime,
    end: dt.datetime,
    resolution: str,
    host: str,
    port: int,
    client_id: int,
    data_dir: str | None,
    max_requests: int,
    window: float,
) -> None:
    """Download historical bars from IB (chunked, paced) and merge them into the data store."""
    from kubetrader.data import DataStore
    from kubetrader.live.connection import RetryPolicy, connect_with_retry
    from kubetrader.live.download import Pacer, download
    from kubetrader.live.download import resolution as parse_resolution
    from kubetrader.live.ib_broker import IBBroker

    res = parse_resolution(resolution)
    broker = IBBroker(host, port, client_id, timeout=60.0)
    connect_with_retry(broker, RetryPolicy(attempts=3, base_delay=0.5, max_delay=5.0))
    try:
        reports = download(
            broker,
            split_symbols(symbols),
            start.date(),
            end.date(),
            res,
            DataStore(data_dir or os.environ.get("KUBETRADER_DATA_DIR") or None),
            pacer=Pacer(max_requests=max_requests, window=window),
        )
    finally:
        broker.disconnect()
    for r in reports:
        click.echo(f"{r.symbol}: {r.bars} bars in {r.requests} requests, {r.added} new, waited {r.waited:.1f} s")
