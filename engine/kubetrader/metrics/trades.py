"""Metrics of closed trades, from their net PnL (after commission), in account currency.

A trade with pnl_net > 0 is a win, < 0 a loss; a break-even trade counts in
num_trades (and so lowers the win rate) but is neither a win nor a loss.
These are per-trade figures. quantstats' functions of the same names
(`profit_factor`, `payoff_ratio`, `win_rate`) work on daily returns instead
and are not comparable; see the module docstring of `kubetrader.metrics`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kubetrader.metrics._numbers import clean, ratio


class TradeStats(NamedTuple):
    num_trades: float
    trade_win_rate: float | None
    profit_factor: float | None
    payoff_ratio: float | None
    avg_trade_pnl: float | None
    expectancy: float | None


def trade_stats(pnl: np.ndarray) -> TradeStats:
    """Counts and ratios over the closed trades' net PnL.

    trade_win_rate = wins / trades.
    profit_factor = gross profit / |gross loss|; None without a losing trade.
    payoff_ratio = mean win / |mean loss|; None without a win or without a loss.
    avg_trade_pnl = mean net PnL per trade (currency).
    expectancy = avg_trade_pnl / |mean loss| = win_rate * payoff_ratio - loss_rate:
    Van Tharp's expectancy in R-multiples, what a trade earns per unit of a
    typical loss. (Expectancy in currency is avg_trade_pnl itself: the popular
    win_rate * avg_win - loss_rate * avg_loss equals the mean PnL identically.)
    None without a losing trade.
    """
    pnl = pnl[np.isfinite(pnl)]
    n = pnl.size
    if n == 0:
        return TradeStats(0.0, None, None, None, None, None)
    wins = pnl[pnl > 0]
    losses = pnl[pnl < 0]
    mean_pnl = float(pnl.mean())
    mean_loss = abs(float(losses.mean())) if losses.size else 0.0
    payoff = ratio(float(wins.mean()), mean_loss) if wins.size else None
    return TradeStats(
        num_trades=float(n),
        trade_win_rate=wins.size / n,
        profit_factor=ratio(float(wins.sum()), abs(float(losses.sum()))),
        payoff_ratio=payoff,
        avg_trade_pnl=clean(mean_pnl),
        expectancy=ratio(mean_pnl, mean_loss),
    )
