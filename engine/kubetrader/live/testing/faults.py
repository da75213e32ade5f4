"""The faults the TWS peer can inject, with what real TWS does in each case (and where that is written).

Every knob here is something the real gateway does on a bad day; the defaults are a
good day. Tests and the fault campaign (`tests/live/test_stop_campaign.py`, `bench/`)
set them on a running peer (`peer.faults.position_lag = 0.5`); the peer reads them at
the moment it acts, under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The messages of IB's reject / warning codes the peer can answer an order with.
# https://interactivebrokers.github.io/tws-api/message_codes.html
REJECT_MESSAGES = {
    # a real rejection: the order is dead (status Inactive); ib_insync marks it Cancelled
    201: "Order rejected - reason:The contract is not available for trading.",
    # the warnings below leave the order WORKING at TWS; ib_insync 0.9.86 treats 399 and
    # 404 as warnings (wrapper.py warningCodes) and 2137 too (2100-2199), but NOT 10349:
    # it marks that order Cancelled locally while TWS still lists it
    # (ib_async issues #191, #217: "On error 10349 ib_async incorrectly reports orders as cancelled")
    399: "Order Message:\nWarning: your order will not be placed at the exchange until 09:30:00 US/Eastern",
    # shares to short are being located: the order is held, then works (ib_insync #328)
    404: "Order held while securities are located.",
    2137: "The closing order quantity is greater than your current position.",
    10349: "Order TIF was set to DAY based on order preset.",
}
# Codes after which the order is gone at TWS; the others are warnings with the order working.
FINAL_REJECT_CODES = frozenset({201})


@dataclass
class RejectRule:
    """Answer matching orders with `code`; `remaining` None = every time. `con_id` 0 = any contract."""

    code: int
    con_id: int = 0
    symbol: str = ""
    action: str = ""  # BUY / SELL / "" (both)
    remaining: int | None = None
    message: str = ""

    def matches(self, con_id: int, symbol: str, action: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.con_id and self.con_id != con_id:
            return False
        if self.symbol and self.symbol != symbol:
            return False
        return not self.action or self.action == action


@dataclass
class PeerFaults:
    """The knobs. Times are seconds of wall clock."""

    # Position reports (reqPositions answers and `position` updates) trail executions by
    # this much: real TWS sends them asynchronously, and users see ib.positions() lag
    # behind fills (ib_async #15: "positions not updating fast enough"; ib_insync #575).
    position_lag: float = 0.0
    # A market order fills in this many executions (several execDetails + commissionReport
    # per order, as IB does for partial fills: "Each partial fill has a separate ExecId"),
    # `fill_interval` apart.
    fill_slices: int = 1
    fill_interval: float = 0.05
    # New orders sit PreSubmitted this long before they work (and can fill).
    presubmit_window: float = 0.0
    # A cancel shows PendingCancel this long; the order can still fill meanwhile ("You may
    # still receive an execution while your cancellation request is pending": IB API guide, orderStatus).
    cancel_window: float = 0.0
    # "There are not guaranteed to be orderStatus callbacks for every change in order status.
    # For example with market orders when the order is accepted and executes immediately, there
    # commonly will not be any corresponding orderStatus callbacks"
    # (https://interactivebrokers.github.io/tws-api/order_submission.html).
    skip_fill_status: bool = False
    # "It is possible that orderStatus() may return duplicate messages" (IB API guide, orderStatus):
    # every status is sent 1 + this many times; a large number is an order-message storm.
    duplicate_status: int = 0
    rejects: list[RejectRule] = field(default_factory=list)
    # Symbols with a trading halt: no bars, market (and limit) orders rest unfilled.
    halted: set[str] = field(default_factory=set)
    # Seconds a 404 (locating shares) holds an order before it works.
    locate_delay: float = 0.5

    def reject_for(self, con_id: int, symbol: str, action: str) -> RejectRule | None:
        for rule in self.rejects:
            if rule.matches(con_id, symbol, action):
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None
