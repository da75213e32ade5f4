"""OCA "with block" at the peer (ocaType 1 and 2), with the real ib_insync client.

IB's ocaType: 1 "cancel all remaining orders with block", 2 "proportionately reduce with block",
3 "... without block" (https://interactivebrokers.github.io/tws-api/oca.html); the block is
overfill protection, "only one order routed at a time". So while one order of a with-block group
is filling (here an exit in two slices), another (a stop the market has just traded through)
waits, and then works only what is left of it (nothing: the exit closed the position). Without
the block the stop fills beside the exit (the peer still reduces each by the other's fills at
once, so it models no overfill: README).
"""

from __future__ import annotations

import pytest

from kubetrader.live.testing.tws_peer import TwsPeer
from tests.helpers import free_port, wait_until


@pytest.mark.parametrize(("oca_type", "blocked"), [(1, True), (2, True), (3, False)])
def test_a_stop_triggered_while_an_exit_of_its_group_fills_waits_for_it_with_block(
    oca_type: int, blocked: bool
) -> None:
    import ib_insync

    with TwsPeer(port=free_port()) as peer:
        price = peer.price("ORCL")
        peer.set_price("ORCL", price)
        peer.seed_position("ORCL", 100)
        peer.faults.fill_slices, peer.faults.fill_interval = 2, 1.0
        ib = ib_insync.IB()
        ib.connect("127.0.0.1", peer.port, clientId=41, timeout=10)
        try:
            contract = ib_insync.Stock("ORCL", "SMART", "USD")
            ib.qualifyContracts(contract)
            stop = ib_insync.StopOrder("SELL", 100, round(price * 0.95, 2), ocaGroup="g", ocaType=oca_type)
            exit_ = ib_insync.MarketOrder("SELL", 100, ocaGroup="g", ocaType=oca_type)
            ib.placeOrder(contract, stop)
            ib.placeOrder(contract, exit_)
            filling = wait_until(lambda: next((o for o in peer.orders() if o.order_type == "MKT" and o.filled), None),
                                 what="the exit's first slice")  # fmt: skip
            assert filling.filled == 50 and filling.is_open
            peer.set_price("ORCL", round(price * 0.9, 2))  # through the stop while the exit is filling
            wait_until(lambda: peer.open_orders() == [], timeout=15, what="the group done")
        finally:
            ib.disconnect()
        assert peer.positions() == {}  # closed once: 100 sold in all
        assert sum(e.shares for e in peer.executions() if e.order.action == "SELL") == 100
        stop_fills = sum(e.shares for e in peer.executions() if e.order.order_type == "STP")
        assert (stop_fills == 0) is blocked  # with block the stop never worked beside the exit
