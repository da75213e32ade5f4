"""The fill engine of the twins: Backtrader's BackBroker for one long-only symbol, in numba.

A twin reduces a strategy to two boolean arrays (enter at bar t's close, exit at
bar t's close); this kernel turns them into the same orders, fills, cash and equity
as the runner's Cerebro, operation by operation, so the floats are identical:

- Bar t, broker first (`BackBroker.next`): the order sent at t-1 is checked against
  cash at its creation price (close[t-1]): cash - size * close[t-1] - commission < 0
  rejects it (status Margin, not retried). Otherwise it fills at open[t], slipped:
  buys at open * (1 + slip) capped at high[t], sells at open * (1 - slip) floored
  at low[t] (slip 0: the open). A buy the cash cannot pay at the fill is rejected.
  Cash moves as in `BackBroker._execute`: buy cash - size * p - comm; sell cash +
  (size * entry + size * (p - entry) * 1.0) - comm.
- Equity (`BackBroker._get_value`): cash + ((size * close - u) + u) with
  u = size * (close - entry) * 1.0.
- Risk (`BaseStrategy.notify_cashvalue`, only when max_drawdown or max_daily_loss
  is set): day-opening equity is the previous bar's equity on the first bar of a
  new UTC date; equity below (1 - max_daily_loss) of it refuses entries for the
  day; equity below (1 - max_drawdown) of the running peak halts for good and
  sends a market sell of the whole position (filled at t+1 like any order).
- Strategy (`next`, from bar `start`): flat, no order waiting and enter[t]: buy
  int(fraction * equity[t] // close[t]) shares (CPython's float floor division),
  cut by `BaseStrategy._pretrade` (max_position_size, max_concentration,
  max_order_notional, each floored to whole shares; zero refuses); long, no order
  waiting and exit[t]: sell the whole position.
- Commission: `kubetrader.costs.order_commission` (per share + percent, floored at
  the minimum, capped at max_percent of value; SEC fee on sells).

`costs` = [per_share, percent, minimum, max_percent (NaN: no cap), sec_fee_rate, slip].
`risk` = [max_position_size, max_concentration, max_order_notional, max_daily_loss,
max_drawdown], NaN where unset.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

COST_FIELDS = ("per_share", "percent", "minimum", "max_percent", "sec_fee_rate", "slip")
RISK_FIELDS = ("max_position_size", "max_concentration", "max_order_notional", "max_daily_loss", "max_drawdown")
# trades[k]: entry bar, exit bar (-1: open), size, entry fill, exit fill, entry commission, exit commission
TRADE_FIELDS = ("entry_bar", "exit_bar", "size", "entry_fill", "exit_fill", "entry_comm", "exit_comm")


@njit(cache=True)
def py_floordiv(a: float, b: float) -> float:
    """CPython's float `a // b` (Objects/floatobject.c, float_floor_div), for b != 0."""
    mod = np.fmod(a, b)  # fmod is exact; numba lacks math.fmod
    div = (a - mod) / b
    if mod and (b < 0) != (mod < 0):
        mod += b
        div -= 1.0
    if div:
        floordiv = math.floor(div)
        if div - floordiv > 0.5:
            floordiv += 1.0
    else:
        floordiv = math.copysign(0.0, a / b)
    return floordiv


@njit(cache=True)
def commission(size: float, price: float, costs: np.ndarray) -> float:
    """`kubetrader.costs.order_commission` (size signed: negative is a sell)."""
    if size == 0:
        return 0.0
    shares = abs(size)
    value = shares * price
    fee = costs[0] * shares + costs[1] * value
    fee = max(fee, costs[2])
    if not math.isnan(costs[3]):
        fee = min(fee, costs[3] * value)
    if size < 0:
        fee += costs[4] * value
    return fee


@njit(cache=True)
def _allowed_entry(requested: float, price: float, equity: float, risk: np.ndarray) -> float:
    """`BaseStrategy._pretrade` for an entry from flat with nothing pending."""
    allowed = requested
    if not math.isnan(risk[0]):
        room = max(0.0, math.floor(risk[0]))
        allowed = min(allowed, room)
    if not math.isnan(risk[1]) and price > 0:
        room = max(0.0, math.floor(risk[1] * equity / price))
        allowed = min(allowed, room)
    if not math.isnan(risk[2]) and price > 0:
        cap = max(0.0, math.floor(risk[2] / price))
        allowed = min(allowed, cap)
    return allowed


@njit(cache=True)
def simulate(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    day: np.ndarray,
    enter: np.ndarray,
    leave: np.ndarray,
    start: int,
    fraction: float,
    cash0: float,
    costs: np.ndarray,
    risk: np.ndarray,
    equity: np.ndarray,
    gross: np.ndarray,
    trades: np.ndarray,
) -> tuple[int, int, int]:
    """Fill `equity` and `gross` (per bar) and `trades` (rows of TRADE_FIELDS).

    Returns (number of trades, orders rejected for cash, halted bar or -1).
    """
    n = close.shape[0]
    slip = costs[5]
    watch = not math.isnan(risk[3]) or not math.isnan(risk[4])
    cash = cash0
    size = 0.0
    entry = 0.0
    pending = 0  # 0 none, 1 buy, -1 sell
    order_size = 0.0
    created = 0.0
    n_trades = 0
    rejected = 0
    halted = False
    halted_at = -1
    halted_day = False
    peak = -math.inf
    current_day = -(2**62)
    day_open = 0.0
    last_value = math.nan
    for t in range(n):
        if pending != 0:
            if pending > 0:
                check = cash - order_size * created
                check -= commission(order_size, created, costs)
                if check < 0.0:
                    rejected += 1
                else:
                    price = open_[t]
                    if slip:
                        slipped = price * (1 + slip)
                        price = slipped if slipped <= high[t] else high[t]
                    fee = commission(order_size, price, costs)
                    after = cash - order_size * price
                    after -= fee
                    if after < 0.0:
                        rejected += 1
                    else:
                        cash = after
                        size = order_size
                        entry = price
                        trades[n_trades, 0] = t
                        trades[n_trades, 1] = -1
                        trades[n_trades, 2] = order_size
                        trades[n_trades, 3] = price
                        trades[n_trades, 4] = math.nan
                        trades[n_trades, 5] = fee
                        trades[n_trades, 6] = math.nan
            elif cash + (order_size * created + 0.0) - commission(-order_size, created, costs) < 0.0:
                rejected += 1  # never for a long exit; kept because BackBroker checks it
            else:
                price = open_[t]
                if slip:
                    slipped = price * (1 - slip)
                    price = slipped if slipped >= low[t] else low[t]
                pnl = order_size * (price - entry) * 1.0
                fee = commission(-order_size, price, costs)
                cash += order_size * entry + pnl
                cash -= fee
                cash += 0.0
                trades[n_trades, 1] = t
                trades[n_trades, 4] = price
                trades[n_trades, 6] = fee
                n_trades += 1
                size = 0.0
                entry = 0.0
            pending = 0
        px = close[t]
        if size > 0:
            dvalue = size * px
            unrealized = size * (px - entry) * 1.0
            value = cash + ((0.0 + (dvalue - unrealized)) + unrealized)
            gross[t] = abs(size) * px
        else:
            value = cash + 0.0
            gross[t] = 0.0
        equity[t] = value
        sent_now = False
        if watch:
            if day[t] != current_day:
                current_day = day[t]
                day_open = value if math.isnan(last_value) else last_value
                halted_day = False
            last_value = value
            peak = max(peak, value)
            if not math.isnan(risk[4]) and not halted and value < peak * (1 - risk[4]):
                halted = True
                halted_at = t
                if size > 0:
                    pending = -1
                    order_size = size
                    created = px
                    sent_now = True
            if not math.isnan(risk[3]) and not halted_day and value < day_open * (1 - risk[3]):
                halted_day = True
        if t < start or sent_now:
            continue
        if size == 0 and enter[t]:
            if halted or halted_day or px <= 0:
                continue
            requested = float(int(py_floordiv(fraction * value, px)))
            if requested == 0:
                continue
            allowed = _allowed_entry(requested, px, value, risk)
            if allowed > 0:
                pending = 1
                order_size = allowed
                created = px
        elif size > 0 and leave[t]:
            pending = -1
            order_size = size
            created = px
    if size > 0:
        n_trades += 1  # the open trade is the last row (exit_bar -1)
    return n_trades, rejected, halted_at


@njit(cache=True)
def simulate_many(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    day: np.ndarray,
    enter: np.ndarray,
    leave: np.ndarray,
    starts: np.ndarray,
    fractions: np.ndarray,
    cash0: float,
    costs: np.ndarray,
    risk: np.ndarray,
    equity: np.ndarray,
) -> None:
    """`simulate` for each row of `enter`/`leave` (shape (k, n)); equity rows into `equity`."""
    n = close.shape[0]
    gross = np.empty(n)
    trades = np.empty((n // 2 + 2, 7))
    for k in range(enter.shape[0]):
        simulate(
            open_,
            high,
            low,
            close,
            day,
            enter[k],
            leave[k],
            starts[k],
            fractions[k],
            cash0,
            costs,
            risk,
            equity[k],
            gross,
            trades,
        )
