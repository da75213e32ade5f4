"""The runner's HTTP endpoint over a real session (SimulatedBroker), and `kubetrader live stop`."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from kubetrader.errors import SpecError
from kubetrader.live.broker import Bar, OrderRequest
from kubetrader.live.http import RunnerHTTPServer, SessionView, check_token, flatten_confirmed_since
from kubetrader.live.journal import Journal
from kubetrader.live.session import Session, SessionConfig
from kubetrader.live.simulated import SimulatedBroker
from kubetrader.specs import RiskSpec
from tests.helpers import ROOT, wait_until

TOKEN = "s3cret-token-for-tests"


@dataclass
class Running:
    session: Session
    server: RunnerHTTPServer
    broker: SimulatedBroker

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


def request(url: str, method: str = "GET", token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def running(journal: Journal) -> Iterator[Running]:
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    bars = [Bar("ABC", start + dt.timedelta(minutes=i), 20, 20.5, 19.5, 20, 1000) for i in range(20_000)]
    broker = SimulatedBroker({"ABC": bars}, cash=50_000.0, bar_interval=0.002)
    session = Session(broker, journal, SessionConfig("http-test", ["ABC"], RiskSpec(max_position_size=1_000)))
    session.start()
    while "ABC" not in session.prices:
        session.pump(0.0)
    assert session.submit(OrderRequest("kt-open", "ABC", "BUY", 300)) is None
    assert session.submit(OrderRequest("kt-rest", "ABC", "BUY", 10, "LMT", 1.0)) is None
    server = RunnerHTTPServer(
        SessionView(session.snapshot, session.commands.put, journal.recent_events),
        host="127.0.0.1",
        port=0,
        token=TOKEN,
    ).start()
    done = threading.Event()

    def loop() -> None:  # the session's own thread, as in the runner
        while not session.finished and not done.is_set():
            session.pump(0.01)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    wait_until(lambda: session.snapshot().get("positions") == {"ABC": 300}, what="the position to open")
    yield Running(session, server, broker)
    done.set()
    thread.join(10)
    server.stop()


def test_healthz_needs_no_token_but_status_and_commands_need_the_right_one(running: Running) -> None:
    assert request(running.url + "/healthz", token=None) == (200, {"ok": True})
    assert request(running.url + "/status", token=None)[0] == 401
    assert request(running.url + "/status", token="wrong")[0] == 401
    assert request(running.url + "/flatten", "POST", token="wrong")[0] == 401
    assert running.session.commands.empty()  # a refused command never reaches the session
    assert request(running.url + "/nope")[0] == 404


def test_status_reports_positions_pnl_open_orders_and_heartbeat(running: Running) -> None:
    code, body = request(running.url + "/status")
    assert code == 200
    assert body["positions"] == {"ABC": 300}
    assert body["connected"] is True and body["halted"] is None
    assert [o["order_id"] for o in body["open_orders"]] == ["kt-rest"]
    assert body["last_heartbeat"] is not None and body["flat_confirmed_at"] is None
    assert {"pnl", "realized_pnl", "unrealized_pnl", "equity"} <= set(body)


def test_journal_serves_the_newest_events_read_only_behind_the_token(running: Running) -> None:
    assert request(running.url + "/journal", token=None)[0] == 401
    code, body = request(running.url + "/journal?limit=1000")
    assert code == 200 and body["limit"] == 1000
    kinds = [e["kind"] for e in body["events"]]
    assert "reconciled" in kinds and "intent" in kinds
    ids = [e["id"] for e in body["events"]]
    assert ids == sorted(ids)
    refs = {e["order_ref"] for e in body["events"]}
    assert {"kt-open", "kt-rest"} <= refs
    code, newest = request(running.url + "/journal?limit=2")
    assert code == 200 and len(newest["events"]) == 2
    assert newest["events"][0]["id"] < newest["events"][1]["id"] and newest["events"][-1]["id"] >= ids[-1]
    assert request(running.url + "/journal?limit=0")[0] == 400
    assert request(running.url + "/journal?limit=x")[0] == 400
    assert request(running.url + "/journal", "POST")[0] == 405


def test_flatten_cancels_closes_and_answers_only_after_a_fresh_broker_confirmation(running: Running) -> None:
    code, body = request(running.url + "/flatten?wait=20", "POST")
    assert code == 200 and body["flat"] is True
    assert running.broker.positions() == [] and running.broker.open_orders() == []
    assert body["status"]["halted"] == "flatten requested"
    assert running.session.halted == "flatten requested"
    refused = running.session.submit(OrderRequest("kt-after", "ABC", "BUY", 1))
    assert refused is not None and refused.startswith("REDUCING: flatten requested")


def test_halt_sets_the_kill_switch_and_keeps_the_position(running: Running) -> None:
    assert request(running.url + "/halt", "POST") == (202, {"accepted": "halt"})
    wait_until(lambda: running.session.snapshot()["halted"] == "kill switch", what="the halt")
    assert running.broker.positions()[0].quantity == 300


def test_halt_with_cancel_entries_cancels_what_adds_exposure_and_keeps_the_position(running: Running) -> None:
    assert request(running.url + "/flatten?cancel=entries", "POST")[0] == 400
    assert request(running.url + "/halt?cancel=all", "POST")[0] == 400
    assert running.session.commands.empty()
    assert request(running.url + "/halt?cancel=entries", "POST") == (202, {"accepted": "halt"})
    # kt-rest (BUY 10 while long 300) adds exposure: cancelled; the position stays
    wait_until(
        lambda: running.broker.open_orders() == [] and running.session.snapshot()["halted"] == "kill switch",
        what="the halt and the entry's cancel",
    )
    assert running.broker.positions()[0].quantity == 300


def test_graceful_stop_closes_positions_and_finishes_the_session(running: Running) -> None:
    assert request(running.url + "/stop", "POST")[0] == 202
    wait_until(lambda: running.session.finished, timeout=20, what="the graceful stop")
    assert running.session.flat_confirmed_at is not None
    assert running.broker.positions() == [] and running.broker.open_orders() == []


def test_kubetrader_live_stop_flatten_from_the_cli(running: Running) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubetrader.cli.main",
            "live",
            "stop",
            "--url",
            running.url,
            "--flatten",
            "--wait",
            "20",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'engine'}:{ROOT}", "PATH": "/usr/bin:/bin", "KUBETRADER_RUNNER_TOKEN": TOKEN},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["flat"] is True
    assert running.broker.positions() == []


def test_endpoint_refuses_to_start_without_a_token_unless_insecure_local_on_loopback() -> None:
    view = SessionView(dict, lambda _: None)
    with pytest.raises(SpecError, match="KUBETRADER_RUNNER_TOKEN"):
        RunnerHTTPServer(view, host="127.0.0.1", port=0, token=None)
    with pytest.raises(SpecError, match="loopback"):
        RunnerHTTPServer(view, host="0.0.0.0", port=0, token="", insecure_local=True)
    server = RunnerHTTPServer(view, host="127.0.0.1", port=0, token=None, insecure_local=True)
    server.server.server_close()


def test_token_check_and_flat_proof_freshness_are_exact() -> None:
    assert check_token("abc", "Bearer abc") and not check_token("abc", "Bearer abd")
    assert not check_token("abc", "abc") and not check_token("abc", None)
    assert flatten_confirmed_since({"flat_confirmed_at": 10.0}, 10.0)
    assert not flatten_confirmed_since({"flat_confirmed_at": 9.0}, 10.0)
    assert not flatten_confirmed_since({"flat_confirmed_at": None}, 10.0)
