"""The dashboard's Live view against a REAL runner: `run_deployment` (the code behind
`kubetrader live run`) trading through ib_insync against the TWS peer, its token-guarded
HTTP endpoint on a free port, and the dashboard API (FastAPI TestClient) pointed at it.

The peer replays the last bars of ORCL and then stops sending any, so the runner's
state settles (position, resting bid, prices) and the dashboard can be compared with
the runner's own `/status` number for number.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import backtrader as bt
import pytest
from fastapi.testclient import TestClient

from kubetrader.live.http import RunnerUnreachableError, call_runner
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.launch import Endpoint, run_deployment
from kubetrader.live.testing.tws_peer import TwsPeer, load_daily_bars
from kubetrader.specs.live import LiveDeploymentSpec
from strategies.base_strategy import BaseStrategy
from tests.fixtures.dashboard import API_TOKEN, dashboard_settings
from tests.helpers import free_port, wait_until

TOKEN = "runner-token-9f3Kq-dashboard-test"
SHARES = 100
BARS_LEFT = 80  # 5-second bars: six complete 1-minute bars for the strategy (kubetrader.live.bars)


class BuyThenRestingBid(BaseStrategy):
    """Buy `shares` at market on the first bar, then rest one small bid far below the market."""

    params = (("shares", SHARES), ("bid_fraction", 0.5))

    def __init__(self) -> None:
        super().__init__()
        self.bid_placed = False

    def next(self) -> None:
        data = self.datas[0]
        if self.bid_placed or self.has_open_order(data):
            return
        if not self.getposition(data).size:
            self.buy(data=data, size=self.p.shares)
        else:
            price = round(data.close[0] * self.p.bid_fraction, 2)
            self.buy(data=data, size=10, price=price, exectype=bt.Order.Limit)
            self.bid_placed = True


@dataclass
class Runner:
    url: str
    peer: TwsPeer
    last_close: float

    def status(self) -> dict[str, Any]:
        return call_runner(self.url, "/status", token=TOKEN)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    bars = load_daily_bars("ORCL")
    peer = TwsPeer(port=free_port(), bar_interval=0.05, replay_start={"ORCL": len(bars) - BARS_LEFT}).start()
    spec = LiveDeploymentSpec.model_validate(
        {
            "strategy": {"path": f"{__name__}.BuyThenRestingBid", "params": {}},
            "symbols": ["ORCL"],
            "mode": "paper",
            "risk": {"max_position_size": 1_000},
        }
    )
    port = free_port()
    journal_url = f"sqlite:///{tmp_path_factory.mktemp('live-runner') / 'journal.db'}"
    errors: list[BaseException] = []

    def trade() -> None:  # ib_insync's loop lives in the thread that trades
        try:
            run_deployment(
                spec,
                IBBroker("127.0.0.1", peer.port, 11, timeout=3.0),
                deployment="dash-live",
                journal_url=journal_url,
                endpoint=Endpoint("127.0.0.1", port),
                token=TOKEN,
                health_interval=0.5,
            )
        except BaseException as exc:
            errors.append(exc)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBETRADER_STRATEGY_PREFIXES", f"strategies.,{__name__}.")
        thread = threading.Thread(target=trade, name="live-runner", daemon=True)
        thread.start()
        # the runner aggregates the peer's 5-second bars to the spec's 1m (kubetrader.live.bars): the
        # last price it knows is the close of the last COMPLETE minute (12 bars; sessions hold 4680)
        last = len(bars) - 1
        last -= (last + 1) % 12
        running = Runner(f"http://127.0.0.1:{port}", peer, bars[last].close)
        try:

            def settled() -> bool:
                assert not errors, errors
                status = running.status()
                return (
                    status.get("positions") == {"ORCL": SHARES}  # an empty snapshot until the session starts
                    and len(status.get("open_orders") or []) == 1
                    and (status.get("prices") or {}).get("ORCL") == running.last_close
                )

            wait_until(
                settled,
                timeout=60,
                what="the runner to hold its position and bid after the replay ends",
                retry_on=(RunnerUnreachableError,),  # its endpoint is not up yet
            )
            yield running
        finally:
            try:
                call_runner(running.url, "/stop", token=TOKEN, method="POST")
            finally:
                thread.join(30)
                peer.stop()
    assert not thread.is_alive(), "the runner did not stop on POST /stop"
    assert not errors, errors


@pytest.fixture
def dashboard(tmp_path: Path, runner: Runner) -> Iterator[Callable[[str | None], TestClient]]:
    """`dashboard(token)`: the dashboard API pointed at the runner, with that runner token (None: unset)."""
    from kubetrader_dashboard.api.main import create_app

    with contextlib.ExitStack() as stack:

        def open_client(token: str | None) -> TestClient:
            settings = dashboard_settings(
                tmp_path / "results",
                None,
                None,
                live_runner_url=runner.url,
                runner_token=token or "",
                api_token_role="trader",  # the live view needs the trader role
            )
            client = stack.enter_context(TestClient(create_app(settings)))
            client.headers["Authorization"] = f"Bearer {API_TOKEN}"
            return client

        yield open_client


def test_live_view_shows_the_runners_positions_orders_pnl_and_journal(
    runner: Runner, dashboard: Callable[[str | None], TestClient]
) -> None:
    client = dashboard(TOKEN)
    response = client.get("/api/v1/live")
    status = runner.status()
    assert response.status_code == 200
    live = response.json()
    assert live["available"] is True and live["reason"] is None
    assert live["deployment"] == "dash-live" and live["mode"] == "paper"
    assert live["connected"] is True and live["halted"] is None and live["stopping"] is False
    assert live["last_heartbeat"] is not None and 0 <= live["heartbeat_age_seconds"] < 30

    (position,) = live["positions"]
    (detail,) = status["position_details"]
    assert position["symbol"] == "ORCL" and position["size"] == SHARES
    assert position["avg_price"] == pytest.approx(detail["avg_price"])
    assert position["market_price"] == pytest.approx(runner.last_close)
    assert position["market_value"] == pytest.approx(SHARES * runner.last_close)
    assert position["unrealized_pnl"] == pytest.approx(SHARES * (runner.last_close - detail["avg_price"]))

    (order,) = live["open_orders"]
    assert order == status["open_orders"][0]
    assert order["side"] == "BUY" and order["order_type"] == "LMT" and order["size"] == 10
    assert 0 < order["limit_price"] < 0.6 * runner.last_close  # half the close of the bar it was placed on
    assert [o.order_ref for o in runner.peer.open_orders()] == [order["order_id"]]

    account = live["account"]
    assert account["net_liquidation"] == pytest.approx(status["equity"])
    assert account["cash"] == pytest.approx(status["cash"])
    assert account["unrealized_pnl"] == pytest.approx(status["unrealized_pnl"])
    assert account["realized_pnl"] == pytest.approx(status["realized_pnl"])
    assert account["session_pnl"] == pytest.approx(status["pnl"])
    assert account["unrealized_pnl"] == pytest.approx(position["unrealized_pnl"])

    journal = live["journal"]
    assert live["journal_reason"] is None
    intents = [j for j in journal if j["event"] == "intent"]
    assert [j["order_ref"] for j in intents][-1] == order["order_id"]
    assert {"reconciled", "intent", "fill"} <= {j["event"] for j in journal}
    assert TOKEN not in response.text


def test_wrong_or_missing_token_is_not_available_unauthorized_never_data(
    runner: Runner, dashboard: Callable[[str | None], TestClient]
) -> None:
    for token, hint in (("not-the-runner-token-xyz", "the runner refused the token"), (None, "is not set")):
        client = dashboard(token)
        response = client.get("/api/v1/live")
        assert response.status_code == 200
        live = response.json()
        assert live["available"] is False
        assert live["reason"].startswith("unauthorized: ") and hint in live["reason"]
        assert live["positions"] == [] and live["open_orders"] == [] and live["journal"] == []
        assert live["account"] == {} and live["deployment"] is None and live["connected"] is None
        if token:
            assert token not in response.text
        assert TOKEN not in response.text


def test_the_runner_token_never_leaves_the_api(runner: Runner, dashboard: Callable[[str | None], TestClient]) -> None:
    client = dashboard(TOKEN)
    shown = {e["name"]: e for e in client.get("/api/v1/settings").json()["entries"]}
    assert shown["runner_token"]["value"] == "********" and shown["runner_token"]["secret"] is True
    assert shown["runner_token"]["env"] == "KUBETRADER_RUNNER_TOKEN"
    paths = [
        path
        for path, item in client.get("/api/v1/openapi.json").json()["paths"].items()
        if "get" in item and "{" not in path
    ]
    assert "/api/v1/live" in paths
    for path in paths:
        response = client.get(path)
        assert TOKEN not in response.text, f"{path} leaks the runner token"
