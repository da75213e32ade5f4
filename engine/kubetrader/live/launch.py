"""Start a live (or replayed) trading run from a `LiveDeploymentSpec`: the one service behind
`kubetrader live run` and the runner Deployment the operator creates.

The strategy is loaded and its params checked exactly as for a backtest (allowed
prefixes, known names, types), so a typo fails before a connection is made. The
same BaseStrategy subclass then runs under `LiveRunner`; only the broker differs:
`IBBroker` against a gateway, or `SimulatedBroker` over stored bars with `replay`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
from dataclasses import dataclass
from typing import Any

from kubetrader.live.broker import Broker
from kubetrader.live.download import WARMUP
from kubetrader.live.http import TOKEN_ENV, RunnerHTTPServer, SessionView
from kubetrader.live.session import Session, SessionConfig
from kubetrader.specs.live import LiveDeploymentSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Connection:
    host: str
    port: int
    client_id: int


@dataclass(frozen=True)
class Replay:
    start: dt.date | None
    end: dt.date | None
    cash: float = 100_000.0
    bar_interval: float = 0.0


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    insecure_local: bool = False


def load_checked_strategy(spec: LiveDeploymentSpec) -> tuple[type[Any], dict[str, Any]]:
    from kubetrader.strategy_loader import check_params, load_strategy

    cls = load_strategy(spec.strategy.path)
    return cls, check_params(cls, spec.strategy.params)


def replay_broker(spec: LiveDeploymentSpec, replay: Replay) -> Broker:
    """A SimulatedBroker over the stored bars of every symbol (bundled data registers itself)."""
    from kubetrader.data import load_bars
    from kubetrader.live.simulated import SimulatedBroker, bars_from_frame

    bars = {
        s: bars_from_frame(s, load_bars(s, timeframe=spec.timeframe, start=replay.start, end=replay.end))
        for s in spec.symbols
    }
    return SimulatedBroker(bars, cash=replay.cash, bar_interval=replay.bar_interval)


def ib_broker(connection: Connection) -> Broker:
    from kubetrader.live.ib_broker import IBBroker

    return IBBroker(connection.host, connection.port, connection.client_id)


def run_deployment(
    spec: LiveDeploymentSpec,
    broker: Broker,
    *,
    deployment: str,
    journal_url: str,
    endpoint: Endpoint | None = None,
    token: str | None = None,
    health_interval: float = 30.0,
    lease_account: str | None = None,
    gateway_deadline: float = 300.0,
    stall_fence: float = 60.0,
) -> Session:
    """Trade until stopped (POST /stop, SIGTERM) or the replay ends; returns the finished session."""
    from kubetrader.live.journal import Journal
    from kubetrader.live.runner import LiveRunner

    strategy, params = load_checked_strategy(spec)
    journal = Journal(journal_url, deployment=deployment)
    config = SessionConfig(
        deployment=deployment,
        symbols=list(spec.symbols),
        limits=spec.risk,
        health_interval=health_interval,
        mode=spec.mode,
        lease_account=lease_account,
        gateway_deadline=gateway_deadline,
        stall_fence=stall_fence,
        protection=spec.risk.protective_stop,
        timeframe=spec.timeframe,
        # IB streams 5-second bars: warm the strategy up from IB's history first (a replay broker
        # has no "before": its bars start where the backtest's do)
        warmup=WARMUP.get(spec.timeframe) if getattr(broker, "realtime_bar_seconds", None) else None,
    )
    session = Session(broker, journal, config)
    server = None
    if endpoint is not None:
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        server = RunnerHTTPServer(
            SessionView(session.snapshot, session.commands.put, journal.recent_events),
            host=endpoint.host,
            port=endpoint.port,
            token=token,
            insecure_local=endpoint.insecure_local,
        ).start()
        log.info("runner endpoint on %s:%d", endpoint.host, server.port)
    previous = _on_sigterm(lambda: session.commands.put("shutdown"))
    try:
        session.start()
        LiveRunner(session, strategy, params).run()
    finally:
        _restore_sigterm(previous)
        if server is not None:
            server.stop()
        broker.disconnect()
        session.release_lease()  # after the socket is gone: the next runner may take the account
        journal.close()
    return session


def _on_sigterm(action: Any) -> Any:
    """SIGTERM (pod stop) asks the session to shut down (positions kept); only the main thread may set it."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda *_: action())


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
