"""The TWS peer's outgoing messages, at server version 176 (what ib_insync 0.9.86 negotiates
with a current TWS: `Client.MaxClientVersion = 176`).

Pure functions from the peer's records to field lists; `encode` frames them. Field
orders mirror `ib_insync/decoder.py` for version 176 (a test decodes each message with
ib_insync's own Decoder): errors carry `advancedOrderRejectJson` (166+), contract
details have no version field and end with minSize / sizeIncrement /
suggestedSizeIncrement (164+), open and completed orders end with the fields of
159/160/162/170.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from kubetrader.live.testing.instruments import Field, Instrument

SERVER_VERSION = 176


def encode(fields: Iterable[Field]) -> bytes:
    """One TWS message: NUL-terminated fields behind a 4-byte big-endian length."""
    parts = []
    for value in fields:
        if value is None:
            parts.append("")
        elif isinstance(value, bool):
            parts.append("1" if value else "0")
        else:
            parts.append(str(value))
    payload = "".join(p + "\0" for p in parts).encode()
    return struct.pack(">I", len(payload)) + payload


@dataclass
class PeerOrder:
    order_id: int
    client_id: int
    perm_id: int
    instrument: Instrument
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    tif: str
    order_ref: str
    account: str
    status: str = "Submitted"
    filled: float = 0.0
    avg_fill_price: float = 0.0
    completed_time: str = ""
    held: bool = False  # accepted by TWS but not working (PreSubmitted window, 404 locate, 1100)
    cancel_pending: bool = False
    slices_left: int = 0
    # Attached orders and OCA groups (IB "Attaching Orders", "One-Cancels-All"): a child works only
    # once its parent has filled; a transmit=False order is held at TWS until a transmitted order
    # of its bracket arrives; a fill in an OCA group cancels (ocaType 1) or reduces (2, 3) the rest.
    aux_price: float | None = None  # a STP order's trigger price
    parent_id: int = 0
    oca_group: str = ""
    oca_type: int = 0
    transmit: bool = True
    exchange: str = "SMART"  # where the client routed it (SMART, the future's exchange, IDEALPRO)

    @property
    def remaining(self) -> float:
        return self.quantity - self.filled

    @property
    def is_open(self) -> bool:
        return self.status in ("PendingSubmit", "PreSubmitted", "Submitted", "PendingCancel")

    @property
    def con_id(self) -> int:
        return self.instrument.con_id


@dataclass
class PeerExecution:
    exec_id: str
    order: PeerOrder
    shares: float
    price: float
    cum_qty: float
    epoch: int
    commission: float
    realized_pnl: float

    @property
    def side(self) -> str:
        return "BOT" if self.order.action == "BUY" else "SLD"


def error(req_id: int, code: int, message: str) -> list[Field]:
    return [4, 2, req_id, code, message, ""]


def order_status(o: PeerOrder) -> list[Field]:
    avg = o.avg_fill_price
    return [3, o.order_id, o.status, o.filled, o.remaining, avg, o.perm_id, o.parent_id, avg, o.client_id, "", 0.0]


def execution(req_id: int, e: PeerExecution) -> list[Field]:
    o = e.order
    return [
        11, req_id, o.order_id, *o.instrument.block11(), e.exec_id, e.epoch, o.account, o.instrument.route,
        e.side, e.shares, e.price, o.perm_id, o.client_id, 0, e.cum_qty, o.avg_fill_price, o.order_ref,
        "", "", "", 0,
    ]  # fmt: skip


def commission_report(e: PeerExecution) -> list[Field]:
    return [59, 1, e.exec_id, e.commission, "USD", e.realized_pnl, "", ""]


def position(account: str, instrument: Instrument, quantity: float, avg_cost: float) -> list[Field]:
    return [61, 3, account, *instrument.block11(), quantity, avg_cost]


def portfolio(account: str, instrument: Instrument, quantity: float, price: float, avg_cost: float) -> list[Field]:
    mult = instrument.contract_multiplier
    value = quantity * price * mult
    return [
        7, 8, *instrument.block11(primary=True), quantity, price, value, avg_cost,
        value - quantity * avg_cost, 0.0, account,
    ]  # fmt: skip


def contract_details(req_id: int, i: Instrument) -> list[Field]:
    min_tick = 0.00005 if i.sec_type == "CASH" else 0.01
    order_types = "LMT,MKT" if i.sec_type != "OPT" else "LMT,MKT,STP"
    return [
        10, req_id, i.symbol, i.sec_type, i.expiry, i.strike, i.right, i.route, i.currency, i.local,
        i.klass, i.klass, i.con_id, min_tick, i.multiplier, order_types, f"{i.route},NYSE,NASDAQ", 1, 0,
        f"{i.symbol} INC", i.primary_exchange, "", "", "", "", "US/Eastern", "", "", "", "", 0,
        1, "", "", "26", "", "COMMON" if i.sec_type == "STK" else "",
        1, 1, 1,  # minSize, sizeIncrement, suggestedSizeIncrement (164+)
    ]  # fmt: skip


def open_order(o: PeerOrder) -> list[Field]:
    head: list[Field] = [5, o.order_id, *o.instrument.block11()]
    body: list[Field] = [
        o.action, o.quantity, o.order_type, o.limit_price, o.aux_price, o.tif, o.oca_group, o.account, "O", 0,
        o.order_ref, o.client_id, o.perm_id, 0, 0, 0, "", "",  # ... outsideRth, hidden, discretionaryAmt, ...
        "", "", "", "", "", "", "", None, "",  # fa*, modelCode, goodTillDate, rule80A, percentOffset, firm
        0, "", -1, 0, None, None, None, None, None,  # shortSaleSlot .. stockRangeUpper
        0, 0, 0, 0, None, o.oca_type, 0, 0, None,  # displaySize .. minQty, ocaType, .. nbboPriceCap
        o.parent_id, 0, None, 0, "", None,  # parentId, triggerMethod, volatility(+type), deltaNeutral type/aux
    ]  # fmt: skip
    tail: list[Field] = [
        0, 0, None, None, None, None, "",  # continuousUpdate .. comboLegsDescrip
        0, 0, 0,  # combo legs, order combo legs, smart combo params
        None, None, "",  # scale
        "",  # hedgeType
        0, "", "", 0, 0,  # optOutSmartRouting, clearing, notHeld, dncPresent
        "",  # algoStrategy
        0, 0, o.status, "", "", "", "", "", "", "", "", "", None, None, None, "", "", 0, 0,
        0,  # conditions
        "", None, None, None, None, None, None, 0, "", "", "", None, 0, 0, None, 0,
        None, 0, 0,  # duration (159), postToAts (160), autoCancelParent (162)
        None, None, 0, None, None,  # minTradeQty .. midOffsetAtHalf (170)
    ]  # fmt: skip
    return [*head, *body, *tail]


def completed_order(o: PeerOrder) -> list[Field]:
    return [
        101, *o.instrument.block11(),
        o.action, o.quantity, o.order_type, o.limit_price, None, o.tif, "", o.account, "O", 0, o.order_ref,
        o.perm_id, 0, 0, 0, "", "", "", "", "", "", "", "", "", "", "", 0, "", None, None, None, None, None,
        0, 0, 0, 0, 0, 0, None, 0, "", "",
        0, 0, None, None, "",  # continuousUpdate .. comboLegsDescrip
        0, 0, 0,  # legs
        None, None, "",  # scale
        "",  # hedgeType
        "", "", 0, 0,  # clearing, notHeld, dncPresent
        "",  # algoStrategy
        0, o.status, 0, 0,
        0,  # conditions
        None, None, None, 0, 0, "", o.filled, 0, 0, "", 0, 0, 0, o.completed_time, o.status,
        None, None, 0, None, None,  # minTradeQty .. midOffsetAtHalf (170)
    ]  # fmt: skip
