"""The TWS peer's messages decode with ib_insync's OWN decoder at the version it negotiates (176)."""

from __future__ import annotations

from typing import Any

import pytest

from kubetrader.live.testing import messages as msg
from kubetrader.live.testing.instruments import Instrument, future, fx, option, stock
from kubetrader.live.testing.messages import SERVER_VERSION, PeerExecution, PeerOrder
from tests.helpers import wait_until


class Recorder:
    """A wrapper that records every callback the decoder makes (name, args)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any) -> None:
            self.calls.append((name, args))

        return record


def decode(fields: list[msg.Field]) -> tuple[str, tuple[Any, ...]]:
    from ib_insync.decoder import Decoder

    recorder = Recorder()
    decoder = Decoder(recorder, SERVER_VERSION)  # type: ignore[arg-type]
    raw = msg.encode(fields)[4:].decode().split("\0")[:-1]
    decoder.handlers[int(raw[0])](raw)  # the handler itself: interpret() would swallow a decoding error
    assert len(recorder.calls) == 1, recorder.calls
    return recorder.calls[0]


INSTRUMENTS = [
    stock("ORCL"),
    option("ORCL", "20250117", 30.0, "C"),
    future("ES", "202503", underlying="ORCL"),
    fx("EUR", "USD", 1.1),
]


def order(instrument: Instrument, status: str = "Submitted") -> PeerOrder:
    return PeerOrder(7, 3, 1_000_001, instrument, "SELL", 2, "LMT", 1.5, "DAY", "kt-x", "DU0000002", status)


def test_the_peer_offers_the_version_ib_insync_negotiates() -> None:
    from ib_insync.client import Client

    assert SERVER_VERSION == Client.MaxClientVersion == 176


def test_error_carries_the_advanced_reject_field_of_version_166() -> None:
    name, args = decode(msg.error(7, 201, "Order rejected - reason:x"))
    assert name == "error" and args == (7, 201, "Order rejected - reason:x", "")


@pytest.mark.parametrize("instrument", INSTRUMENTS, ids=lambda i: i.sec_type)
def test_contract_details_decode_with_the_instruments_con_id(instrument: Instrument) -> None:
    name, args = decode(msg.contract_details(4, instrument))
    assert name == "contractDetails"
    details = args[1]
    assert details.contract.conId == instrument.con_id and details.contract.secType == instrument.sec_type
    assert details.minSize == 1


@pytest.mark.parametrize("instrument", INSTRUMENTS, ids=lambda i: i.sec_type)
def test_open_and_completed_orders_decode_with_account_ref_and_status(instrument: Instrument) -> None:
    name, (order_id, contract, o, state) = decode(msg.open_order(order(instrument, "PendingCancel")))
    assert name == "openOrder" and order_id == 7 and contract.conId == instrument.con_id
    assert (o.orderRef, o.account, o.clientId, o.permId, state.status) == ("kt-x", "DU0000002", 3, 1_000_001,
                                                                          "PendingCancel")  # fmt: skip
    name, (contract, o, state) = decode(msg.completed_order(order(instrument, "Inactive")))
    assert name == "completedOrder" and state.status == "Inactive" and contract.conId == instrument.con_id


def test_execution_commission_and_position_decode() -> None:
    o = order(option("ORCL", "20250117", 30.0, "C"))
    e = PeerExecution("0000e1.01", o, 1, 1.5, 1, 1_700_000_000, 1.0, 0.0)
    name, (_, contract, execution) = decode(msg.execution(-1, e))
    assert name == "execDetails" and contract.secType == "OPT" and execution.orderRef == "kt-x"
    assert execution.acctNumber == "DU0000002" and execution.shares == 1
    name, (report,) = decode(msg.commission_report(e))
    assert name == "commissionReport" and report.execId == "0000e1.01"
    name, args = decode(msg.position("DU0000002", o.instrument, -3, 150.0))
    assert name == "position" and args[0] == "DU0000002" and args[1].conId == o.instrument.con_id and args[2] == -3


def test_the_peer_refuses_messages_past_50_a_second_with_error_100(tws_peer: Any) -> None:
    """TWS's pacing (https://interactivebrokers.github.io/tws-api/message_codes.html, 100: "Max rate
    of messages per second has been exceeded"): with ib_insync's own throttle off, a burst is refused."""
    import ib_insync

    ib = ib_insync.IB()
    codes: list[int] = []
    ib.errorEvent += lambda _req_id, code, _message, _contract: codes.append(code)
    ib.connect("127.0.0.1", tws_peer.port, clientId=77, timeout=5)
    try:
        ib.client.MaxRequests = 0  # no client-side throttle: the gateway must enforce the limit
        for _ in range(80):
            ib.client.reqCurrentTime()

        def refused() -> bool:
            # ib.sleep(0) runs ib_insync's event loop once: the peer's answers (and its 100s) arrive
            # through it. It returns True, so it cannot be or-ed into the condition.
            ib.sleep(0)
            return 100 in codes

        wait_until(refused, timeout=10, what="TWS's error 100")
    finally:
        ib.disconnect()
    assert tws_peer.pacing_violations > 0
    assert 100 in codes
