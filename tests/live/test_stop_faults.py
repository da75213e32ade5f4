"""The emergency stop against an unkind gateway: never "flat" while the peer holds a position.

Every test runs the real ib_insync client against the TWS peer with faults on, and
checks the two invariants of issue #14 after the stop: a "flat" report means the
peer's account holds nothing and lists no open order, and the closing orders per
contract stay bounded.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from kubetrader.live.broker import OrderRequest
from kubetrader.live.http import RunnerUnreachableError, call_runner
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.journal import Journal
from kubetrader.live.stop import StopReport, StopSettings, emergency_stop
from kubetrader.live.testing.faults import RejectRule
from kubetrader.live.testing.instruments import con_id, future, fx, option
from kubetrader.live.testing.tws_peer import TwsPeer
from tests.helpers import ROOT, free_port, wait_until
from tests.live.test_live_ib import make_session, pump_until

MAX_CLOSES = StopSettings().max_orders


def stop(peer: TwsPeer, client_id: int = 9, **settings: object) -> StopReport:
    broker = IBBroker("127.0.0.1", peer.port, client_id, timeout=3.0)
    broker.connect()
    try:
        return emergency_stop(broker, settings=StopSettings(**{"timeout": 20.0, **settings}))  # type: ignore[arg-type]
    finally:
        broker.disconnect()


def closes_per_contract(peer: TwsPeer) -> Counter[str]:
    return Counter(o.instrument.local for o in peer.orders() if o.order_ref.startswith("kt-estop"))


def check_invariants(peer: TwsPeer, report: StopReport) -> None:
    if report.flat:
        assert peer.holdings() == {} and peer.open_orders() == [], (report, peer.holdings())
    assert all(n <= MAX_CLOSES for n in closes_per_contract(peer).values()), closes_per_contract(peer)


@pytest.mark.parametrize("lag", [0.2, 0.5, 1.0])
def test_no_false_flat_when_position_reports_trail_the_fills(tws_peer: TwsPeer, lag: float) -> None:
    tws_peer.seed_position("ORCL", 400)
    tws_peer.seed_position("NVDA", -160)
    tws_peer.faults.position_lag = lag
    tws_peer.faults.fill_slices = 3
    report = stop(tws_peer)
    check_invariants(tws_peer, report)
    assert report.flat, report
    assert closes_per_contract(tws_peer) == {"ORCL": 1, "NVDA": 1}  # one close each: never re-flattened


def test_a_fill_just_before_the_stop_that_the_reports_do_not_show_yet_is_closed_too(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    tws_peer.seed_position("ORCL", 300)
    tws_peer.faults.position_lag = 0.8
    session = make_session(tws_peer, journal, client_id=5)
    try:
        session.submit(OrderRequest("kt-last", "ORCL", "BUY", 100))
        pump_until(session, lambda: tws_peer.positions() == {"ORCL": 400}, "the last entry to fill")
    finally:
        session.broker.disconnect()
    report = stop(tws_peer)  # the reports still say 300
    check_invariants(tws_peer, report)
    assert report.flat and tws_peer.positions() == {}


def test_permanent_rejects_back_off_name_the_reason_and_block(tws_peer: TwsPeer) -> None:
    tws_peer.seed_position("ORCL", 200)
    tws_peer.faults.rejects.append(RejectRule(201, symbol="ORCL"))
    started = time.monotonic()
    report = stop(tws_peer, max_rejects=4, backoff_base=0.2, backoff_cap=1.0)
    check_invariants(tws_peer, report)
    assert not report.flat
    assert "201" in report.blocked["DU0000001:ORCL"] and "Order rejected" in report.blocked["DU0000001:ORCL"]
    assert "blocked" in report.message and "201" in report.message
    assert closes_per_contract(tws_peer) == {"ORCL": 4}  # bounded: no order storm
    assert time.monotonic() - started >= 0.2 + 0.4 + 0.8  # backed off between the attempts
    assert tws_peer.positions() == {"ORCL": 200}


def test_partial_fills_a_reject_and_a_socket_cut_during_the_stop_end_flat(tws_peer: TwsPeer) -> None:
    tws_peer.seed_position("ORCL", 500)
    tws_peer.faults.fill_slices = 5
    tws_peer.faults.fill_interval = 0.1
    tws_peer.faults.position_lag = 0.3
    tws_peer.faults.rejects.append(RejectRule(201, symbol="ORCL", remaining=1))
    reports: list[StopReport] = []
    thread = threading.Thread(target=lambda: reports.append(stop(tws_peer, backoff_base=0.2)))
    thread.start()
    # the first close was rejected; the second is sent and fills slice by slice
    wait_until(lambda: closes_per_contract(tws_peer)["ORCL"] >= 2, timeout=15, what="the close after the reject")
    tws_peer.drop_connections()
    thread.join(30)
    check_invariants(tws_peer, reports[0])
    assert reports[0].flat, reports[0]
    assert "201" in str(reports[0].rejects)


def test_an_option_position_is_closed_on_its_own_contract(tws_peer: TwsPeer) -> None:
    call = tws_peer.seed_position(option("ORCL", "20250117", 30.0, "C"), -3)
    tws_peer.seed_position("ORCL", 100)
    report = stop(tws_peer)
    check_invariants(tws_peer, report)
    assert report.flat
    closes = [o for o in tws_peer.orders() if o.order_ref.startswith("kt-estop")]
    sent = sorted((o.instrument.sec_type, o.action, o.quantity) for o in closes)
    assert sent == [("OPT", "BUY", 3), ("STK", "SELL", 100)]
    assert call.con_id in {o.con_id for o in closes}


def test_futures_fx_and_a_second_accounts_stock_close_on_their_own_contracts_and_routes(tws_peer: TwsPeer) -> None:
    es = tws_peer.seed_position(future("ES", "202503", underlying="ORCL"), -2)
    eur = tws_peer.seed_position(fx("EUR", "USD", 1.1), 25000)
    tws_peer.seed_position("NVDA", 70, account="DU0000002")
    tws_peer.faults.position_lag = 0.3
    report = stop(tws_peer)
    check_invariants(tws_peer, report)
    assert report.flat, report
    closes = {
        (o.account, o.con_id): (o.instrument.sec_type, o.exchange, o.action, o.quantity)
        for o in tws_peer.orders()
        if o.order_ref.startswith("kt-estop")
    }
    assert closes == {  # one close each, on its conId, in its account, routed where the type trades
        ("DU0000001", es.con_id): ("FUT", "CME", "BUY", 2),
        ("DU0000001", eur.con_id): ("CASH", "IDEALPRO", "SELL", 25000),
        ("DU0000002", con_id("NVDA")): ("STK", "SMART", "SELL", 70),
    }
    assert tws_peer.pacing_violations == 0  # the extra reads near the end stay inside IB's 50 messages a second


def test_warnings_on_the_closes_and_an_order_message_storm_end_flat_with_one_close_each(tws_peer: TwsPeer) -> None:
    tws_peer.seed_position("ORCL", 300)
    tws_peer.seed_position("NVDA", -120)
    tws_peer.seed_position("YHOO", 80)
    tws_peer.faults.rejects += [  # warnings: TWS keeps each order working (faults.REJECT_MESSAGES)
        RejectRule(399, symbol="ORCL", remaining=1),
        RejectRule(404, symbol="NVDA", remaining=1),
        RejectRule(2137, symbol="YHOO", remaining=1),
    ]
    tws_peer.faults.duplicate_status = 25  # every orderStatus 26 times
    tws_peer.faults.presubmit_window = 0.2
    tws_peer.faults.position_lag = 0.3
    report = stop(tws_peer)
    check_invariants(tws_peer, report)
    assert report.flat, report
    assert closes_per_contract(tws_peer) == {"ORCL": 1, "NVDA": 1, "YHOO": 1}  # a warning is no reject: no resend
    assert report.rejects == {} and report.blocked == {}


def test_strategy_scope_closes_only_what_the_deployment_trades_and_lists_the_rest(tws_peer: TwsPeer) -> None:
    call = tws_peer.seed_position(option("ORCL", "20250117", 30.0, "C"), 2)
    tws_peer.seed_position("ORCL", 100)
    tws_peer.seed_position("NVDA", 50, account="DU0000002")
    report = stop(tws_peer, scope="strategy", owned=frozenset({"ORCL"}))
    assert report.flat, report
    assert tws_peer.positions() == {call.local: 2}
    assert tws_peer.positions("DU0000002") == {"NVDA": 50}
    assert set(report.left) == {f"DU0000001:{call.local} (OPT)", "DU0000002:NVDA"}


def test_a_fill_without_any_order_status_still_confirms(tws_peer: TwsPeer) -> None:
    tws_peer.seed_position("ORCL", 100)
    tws_peer.faults.skip_fill_status = True
    report = stop(tws_peer)
    check_invariants(tws_peer, report)
    assert report.flat


def test_an_exit_filling_inside_the_cancel_window_is_not_closed_twice(tws_peer: TwsPeer, journal: Journal) -> None:
    tws_peer.seed_position("ORCL", 100)
    session = make_session(tws_peer, journal, client_id=5)
    price = session.prices["ORCL"]
    tws_peer.halt("ORCL")
    try:
        session.submit(OrderRequest("kt-tp", "ORCL", "SELL", 100, "LMT", round(price * 0.5, 2)))  # marketable
        pump_until(session, lambda: len(tws_peer.open_orders()) == 1, "the take-profit resting on the halt")
    finally:
        session.broker.disconnect()
    tws_peer.faults.cancel_window = 0.6
    tws_peer.faults.position_lag = 0.4
    reports: list[StopReport] = []
    thread = threading.Thread(target=lambda: reports.append(stop(tws_peer)))
    thread.start()
    wait_until(
        lambda: any(o.status == "PendingCancel" for o in tws_peer.orders()), timeout=15, what="the pending cancel"
    )  # the global cancel is pending ...
    tws_peer.halt("ORCL", False)  # ... and the exit fills inside its window
    thread.join(30)
    check_invariants(tws_peer, reports[0])
    assert reports[0].flat and tws_peer.positions() == {}
    assert closes_per_contract(tws_peer) == {}  # the exit did the close: nothing sent to go -100


def test_nothing_is_sent_during_1100_and_the_stop_finishes_after_1102(tws_peer: TwsPeer) -> None:
    tws_peer.seed_position("ORCL", 100)
    tws_peer.connectivity_lost()
    reports: list[StopReport] = []
    thread = threading.Thread(target=lambda: reports.append(stop(tws_peer)))
    thread.start()
    time.sleep(1.5)
    assert not reports and closes_per_contract(tws_peer) == {}  # held back, and not "flat"
    tws_peer.connectivity_restored()
    thread.join(30)
    check_invariants(tws_peer, reports[0])
    assert reports[0].flat and closes_per_contract(tws_peer) == {"ORCL": 1}


def test_orders_ib_insync_marks_cancelled_on_a_10349_warning_still_count_as_open(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    session = make_session(tws_peer, journal, client_id=5)
    try:
        tws_peer.faults.rejects.append(RejectRule(10349))
        tws_peer.halt("ORCL")
        session.submit(OrderRequest("kt-halted", "ORCL", "SELL", 100))  # rests on the halt
        pump_until(session, lambda: len(tws_peer.open_orders()) == 1, "the order resting")
        listed = session.broker.open_orders()
        assert [o.order_ref for o in listed] == ["kt-halted"]  # TWS lists it; ib_insync says Cancelled
    finally:
        session.broker.disconnect()


def test_the_runner_flattens_with_its_ledger_under_lag_and_reports_connected_false_during_1100(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    session = make_session(tws_peer, journal, client_id=5)
    try:
        session.submit(OrderRequest("kt-in", "ORCL", "BUY", 100))
        pump_until(session, lambda: tws_peer.positions() == {"ORCL": 100}, "the entry")
        tws_peer.faults.position_lag = 0.5
        tws_peer.faults.skip_fill_status = True
        tws_peer.connectivity_lost()
        pump_until(session, lambda: session.snapshot()["connected"] is False, "1100 reported as disconnected")
        session.commands.put("flatten")
        for _ in range(20):
            session.pump(0.05)
        assert tws_peer.positions() == {"ORCL": 100} and session.flat_confirmed_at is None  # nothing sent
        tws_peer.connectivity_restored()
        pump_until(session, lambda: session.flat_confirmed_at is not None, "the flatten to confirm", timeout=15)
        assert tws_peer.positions() == {} and tws_peer.open_orders() == []
        assert sum(1 for o in tws_peer.orders() if o.order_ref.startswith("kt-flat")) == 1
    finally:
        session.broker.disconnect()


def test_the_runners_flatten_under_permanent_rejects_blocks_with_the_reason_and_then_sends_nothing(
    tws_peer: TwsPeer, journal: Journal
) -> None:
    """Issue #14: the runner kept resending every 0.25 s after the operator had given up."""
    session = make_session(tws_peer, journal, client_id=5)
    try:
        session.submit(OrderRequest("kt-in", "ORCL", "BUY", 100))
        pump_until(session, lambda: tws_peer.positions() == {"ORCL": 100}, "the entry")
        tws_peer.faults.rejects.append(RejectRule(201, symbol="ORCL"))
        session.commands.put("flatten")
        pump_until(session, lambda: session.stop_blocked is not None, "the flatten to block", timeout=30)
        assert session.stop_blocked is not None and "201" in session.stop_blocked
        assert "Order rejected" in session.snapshot()["stop_blocked"]
        closes = [o for o in tws_peer.orders() if o.order_ref.startswith("kt-flat")]
        assert len(closes) == StopSettings().max_rejects  # then blocked: bounded, no order storm
        for _ in range(40):  # two seconds more of the runner's loop: past every backoff step
            session.pump(0.05)
        assert len([o for o in tws_peer.orders() if o.order_ref.startswith("kt-flat")]) == len(closes)
        assert tws_peer.positions() == {"ORCL": 100} and session.flat_confirmed_at is None  # never "flat"
    finally:
        session.broker.disconnect()


def test_the_cli_survives_a_socket_cut_mid_stop_and_confirms_flat(tws_peer: TwsPeer) -> None:
    tws_peer.seed_position("ORCL", 300)
    tws_peer.faults.position_lag = 0.5
    tws_peer.faults.fill_slices = 3
    tws_peer.faults.fill_interval = 0.2
    cli = start_cli("emergency-stop", "--port", str(tws_peer.port), "--timeout", "20")
    wait_until(lambda: any(o.order_ref.startswith("kt-estop") for o in tws_peer.orders()), what="the first close")
    tws_peer.drop_connections()
    out, err = cli.communicate(timeout=40)
    assert cli.returncode == 0, err
    assert '"flat": true' in out and tws_peer.holdings() == {}
    assert closes_per_contract(tws_peer)["ORCL"] <= 2


def test_the_cli_exits_3_with_a_report_when_the_gateway_stays_down(tws_peer: TwsPeer) -> None:
    tws_peer.seed_position("ORCL", 300)
    tws_peer.halt("ORCL")  # the close rests: the stop is mid-way when the gateway goes
    cli = start_cli("emergency-stop", "--port", str(tws_peer.port), "--timeout", "4")
    wait_until(lambda: any(o.order_ref.startswith("kt-estop") for o in tws_peer.orders()), what="the close")
    tws_peer.set_down(True)
    out, err = cli.communicate(timeout=40)
    assert cli.returncode == 3, err
    assert "EMERGENCY STOP FAILED" in err and "Traceback" not in err
    assert '"flat": false' in out


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kubetrader.cli.main", "live", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'engine'}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )


def test_a_runner_killed_mid_flatten_is_taken_over_under_its_client_id_without_a_double_close(
    tws_peer: TwsPeer, tmp_path: Path
) -> None:
    """SIGKILL the real runner process while its close rests; the operator's stop finishes, once."""
    from kubetrader_operator.live.stopping import stop_everything

    tws_peer.seed_position("ORCL", 300)
    tws_peer.faults.position_lag = 0.5
    tws_peer.halt("ORCL")  # the runner's close rests: it is mid-flatten when killed
    http_port = free_port()
    runner = subprocess.Popen(
        [sys.executable, "-m", "kubetrader.cli.main", "live", "run", "--strategy",
         "strategies.sma_crossover.SMACrossover", "--symbols", "ORCL", "--port", str(tws_peer.port),
         "--client-id", "1", "--http-port", str(http_port), "--insecure-local",
         "--journal-url", f"sqlite:///{tmp_path / 'journal.db'}", "--deployment", "killed"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={"PYTHONPATH": f"{ROOT / 'engine'}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_until(lambda: call_runner(url, "/status", token=None).get("connected"), timeout=30, what="the runner",
                   retry_on=(RunnerUnreachableError,))  # fmt: skip
        call_runner(url, "/flatten?wait=0", token=None, method="POST")
        wait_until(lambda: [o for o in tws_peer.open_orders() if o.order_ref.startswith("kt-flat")], what="its close")
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        threading.Timer(1.0, lambda: tws_peer.halt("ORCL", False)).start()
        outcome = stop_everything(
            runner_url=url, token=None, gateway_host="127.0.0.1", gateway_port=tws_peer.port, client_id=999,
            wait=20, http_timeout=1, flatten=True, runner_client_id=1, scope="strategy", owned=frozenset({"ORCL"}),
        )  # fmt: skip
    finally:
        runner.kill()
        runner.wait(10)
    assert outcome.flat, outcome
    assert tws_peer.holdings() == {} and tws_peer.open_orders() == []
    sold = sum(e.shares for e in tws_peer.executions() if e.order.action == "SELL")
    assert sold == 300  # the killed runner's close was cancelled, not filled beside the operator's
