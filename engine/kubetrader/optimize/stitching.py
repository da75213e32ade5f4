"""Stitching out-of-sample windows into one track record: equity and trades alike.

The treatment of a position carried into a window (one rule for both): **marked to
market at the boundary**. A window's run starts at its in-sample start (indicators are
warm when the unseen stretch begins), so at the boundary bar `b` (the last in-sample
bar, the previous window's last out-of-sample bar) the chosen parameters may already
hold a position. The stitched record then

- switches at the close of `b` from the previous window's position to this one's (in
  the stitched record's own size: the run's shares scaled by stitched equity / run
  equity), and pays for the difference what an order would: the commission schedule
  plus the market-order slippage at the full rate, priced at the close of `b`;
- counts from the close of `b` on: equity follows the run's returns after `b`, and a
  trade entered before the boundary enters the record at `b` at the close (its earlier
  P&L and entry commission belong to the in-sample stretch and are dropped);
- ends each window the same way: a trade still open at the window's last bar leaves
  the record there at the close, with no exit cost (the switch at the next boundary
  pays for what actually changes).

The switch cost is booked on the trade that carries the position (the one entering at
the boundary, else the previous window's trade leaving there), so the out-of-sample
trades' net P&L adds up to the stitched equity's change to the cent.

Assumption: a round trip has one entry fill and one exit fill (Backtrader's trade of a
position opened and closed whole, as the example strategies trade); its commission is
the schedule's for each fill.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from kubetrader.costs import CommissionSchedule, order_commission


@dataclass(frozen=True)
class Costs:
    schedule: CommissionSchedule
    slippage_bps: float

    def of_order(self, shares: float, price: float) -> float:
        """What filling `shares` (signed) at `price` costs: commission + slippage at the full rate."""
        if not shares:
            return 0.0
        return order_commission(shares, price, self.schedule) + abs(shares) * price * self.slippage_bps / 10_000


@dataclass
class StitchedWindow:
    """One window's contribution: its equity on the out-of-sample bars, its trades, the switch."""

    equity: pd.Series
    trades: list[dict[str, object]]
    shares_at_end: dict[str, float]
    switch_shares: float
    switch_cost: float
    value_before: float  # the stitched value at the boundary, before the switch


@dataclass
class Stitcher:
    """Adds windows in order; `equity()` and `trades()` are the stitched record so far."""

    cash: float
    costs: Costs
    _equity: list[pd.Series] = field(default_factory=list)
    _trades: list[dict[str, object]] = field(default_factory=list)
    _shares: dict[str, float] = field(default_factory=dict)
    _open_rows: dict[str, dict[str, object]] = field(default_factory=dict)  # symbol -> row leaving at the last end

    @property
    def value(self) -> float:
        return float(self._equity[-1].iloc[-1]) if self._equity else self.cash

    def add(
        self,
        index: int,
        bar_equity: pd.Series,
        trades: pd.DataFrame,
        closes: Mapping[str, pd.Series],
        boundary: pd.Timestamp,
        end: pd.Timestamp,
    ) -> StitchedWindow:
        """Stitch the run of window `index`: `bar_equity` from its in-sample start, its trade
        frame (TradeRecord columns, open ones with no exit), every symbol's closes, the
        boundary bar (last in-sample bar) and the window's last bar."""
        run_at_boundary = float(bar_equity.loc[boundary])
        before = self.value
        scale = before / run_at_boundary
        frame = _with_times(trades)
        held = frame[(frame["entry"] <= boundary) & (frame["exit"].isna() | (frame["exit"] > boundary))]
        wanted = {str(s): float(z) * scale for s, z in held.groupby("symbol")["size"].sum().items()}
        switch_shares = 0.0
        switch_cost = 0.0
        cost_by_symbol: dict[str, float] = {}
        for symbol in sorted(set(wanted) | set(self._shares)):
            delta = wanted.get(symbol, 0.0) - self._shares.get(symbol, 0.0)
            if abs(delta) < 1e-9:
                continue
            cost = self.costs.of_order(delta, float(closes[symbol].loc[boundary]))
            switch_shares += abs(delta)
            switch_cost += cost
            cost_by_symbol[symbol] = cost
        start_value = before - switch_cost
        scale = start_value / run_at_boundary
        after = bar_equity[(bar_equity.index > boundary) & (bar_equity.index <= end)]
        equity = (after / run_at_boundary * start_value).rename("equity")

        rows: list[dict[str, object]] = []
        window_trades = frame[(frame["entry"] <= end) & (frame["exit"].isna() | (frame["exit"] > boundary))]
        for _, trade in window_trades.iterrows():
            rows.append(self._segment(index, trade, closes, boundary, end, scale))
        for symbol, cost in cost_by_symbol.items():
            carrier = next((r for r in rows if r["symbol"] == symbol and r["carried_in"]), None)
            carrier = carrier or self._open_rows.get(symbol)
            if carrier is None:  # a switch always has a side that holds the symbol
                raise AssertionError(f"switch of {symbol} at {boundary} with no position on either side")
            carrier["commission"] = float(carrier["commission"]) + cost  # type: ignore[arg-type]
            carrier["pnl_net"] = float(carrier["pnl_net"]) - cost  # type: ignore[arg-type]
        self._open_rows = {str(r["symbol"]): r for r in rows if r["left_at_end"]}
        held_end = frame[(frame["entry"] <= end) & (frame["exit"].isna() | (frame["exit"] > end))]
        self._shares = {str(s): float(z) * scale for s, z in held_end.groupby("symbol")["size"].sum().items()}
        self._equity.append(equity)
        self._trades.extend(rows)
        return StitchedWindow(equity, rows, dict(self._shares), switch_shares, switch_cost, before)

    def _segment(
        self,
        index: int,
        trade: pd.Series,
        closes: Mapping[str, pd.Series],
        boundary: pd.Timestamp,
        end: pd.Timestamp,
        scale: float,
    ) -> dict[str, object]:
        symbol = str(trade["symbol"])
        size = float(trade["size"])
        carried_in = bool(trade["entry"] <= boundary)
        exited = pd.notna(trade["exit"]) and trade["exit"] <= end
        entry_price = float(closes[symbol].loc[boundary]) if carried_in else float(trade["entry_price"])
        exit_price = float(trade["exit_price"]) if exited else float(closes[symbol].loc[end])
        commission = 0.0 if carried_in else order_commission(size, entry_price, self.costs.schedule)
        commission += order_commission(-size, exit_price, self.costs.schedule) if exited else 0.0
        pnl = size * (exit_price - entry_price)
        return {
            "window": index,
            "symbol": symbol,
            "entry_time": (boundary if carried_in else trade["entry"]).isoformat(),
            "exit_time": (trade["exit"] if exited else end).isoformat(),
            "entry_price": entry_price,
            "exit_price": exit_price,
            "size": size * scale,
            "pnl": pnl * scale,
            "pnl_net": (pnl - commission) * scale,
            "commission": commission * scale,
            "carried_in": carried_in,
            "left_at_end": not exited,
        }

    def equity(self) -> pd.Series:
        return pd.concat(self._equity) if self._equity else pd.Series(dtype=float, name="equity")

    def trades(self) -> pd.DataFrame:
        return pd.DataFrame(self._trades)


def _with_times(trades: pd.DataFrame) -> pd.DataFrame:
    """Entry/exit as UTC timestamps rounded to the second (Backtrader's float dates carry noise)."""
    frame = trades.copy()
    frame["entry"] = pd.to_datetime(frame["entry_time"], utc=True).dt.round("s")
    frame["exit"] = pd.to_datetime(frame["exit_time"], utc=True).dt.round("s")
    return frame
