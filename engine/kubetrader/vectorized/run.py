"""Running a twin: one BacktestSpec to a `TwinResult` shaped like the runner's, or many
parameter points to a block of equity curves.

`not_screenable(spec)` says why a spec cannot be run by a twin (then the study runs on
Backtrader alone); every other spec gives the same equity, trades and metrics as
`BacktestRunner(spec).run()` (pinned by tests/vectorized and the bench harness).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kubetrader.vectorized.simulate import simulate, simulate_many
from kubetrader.vectorized.twins import Bars, IndicatorCache, Twin, twin_for

if TYPE_CHECKING:
    import pandas as pd

    from kubetrader.specs import BacktestSpec

SCREENABLE_TIMEFRAMES = frozenset({"1d"})


def not_screenable(spec: BacktestSpec) -> str | None:
    """Why the spec has no exact twin (None: it has one).

    Twins model one symbol on daily bars, market orders only, and the sizing risk
    limits; the order rate and price band are gate checks they do not model.
    """
    twin = twin_for(spec.strategy.path)
    if twin is None:
        return f"{spec.strategy.path} has no vectorized twin"
    if not twin.verified:
        return f"the twin of {spec.strategy.path} has not passed the equivalence harness"
    if len(spec.data.symbols) != 1:
        return f"twins trade one symbol; the spec has {len(spec.data.symbols)}"
    if spec.risk.max_orders_per_minute is not None or spec.risk.max_price_deviation is not None:
        return "twins do not model the order-rate limit or the price band"
    if spec.data.timeframe not in SCREENABLE_TIMEFRAMES:
        return f"twins are verified on daily bars only, not {spec.data.timeframe}"
    if spec.broker.slippage.model != "capped":
        return f"twins model slippage capped at the bar, not {spec.broker.slippage.model!r}"
    return None


def cost_array(spec: BacktestSpec) -> np.ndarray:
    """`simulate.COST_FIELDS` from the spec's broker, through `costs.commission_schedule`."""
    from kubetrader.costs import commission_schedule

    s = commission_schedule(spec.broker)
    cap = np.nan if s.max_percent is None else s.max_percent
    slip = spec.broker.slippage.market_bps / 10_000
    return np.array([s.per_share, s.percent, s.minimum, cap, s.sec_fee_rate, slip], dtype=np.float64)


def risk_array(spec: BacktestSpec) -> np.ndarray:
    """`simulate.RISK_FIELDS` from the spec's risk limits (NaN: unset)."""
    r = spec.risk
    values = (r.max_position_size, r.max_concentration, r.max_order_notional, r.max_daily_loss, r.max_drawdown)
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def strategy_params(spec: BacktestSpec, point: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The strategy's defaults, overridden by the spec's params and then by `point`, coerced as the runner does."""
    from kubetrader.strategy_loader import check_params, load_strategy, strategy_defaults

    cls = load_strategy(spec.strategy.path)
    merged = {**spec.strategy.params, **(point or {})}
    return {**strategy_defaults(cls), **check_params(cls, merged)}


def require_twin(spec: BacktestSpec) -> Twin:
    reason = not_screenable(spec)
    if reason is not None:
        from kubetrader.errors import SpecError

        raise SpecError("screen", f"not screenable: {reason}")
    twin = twin_for(spec.strategy.path)
    assert twin is not None  # not_screenable checked it
    return twin


@dataclass
class TwinResult:
    """What the twin computed for one spec, in the shapes of `runner.BacktestResult`."""

    equity: pd.Series
    exposure: pd.Series
    trades: pd.DataFrame
    metrics: dict[str, float | None]
    rejected_orders: int
    halted_bar: int | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def closed_trades(self) -> pd.DataFrame:
        return self.trades[self.trades["exit_time"].notna()]


def _trade_rows(symbol: str, dates: pd.DatetimeIndex, close: np.ndarray, trades: np.ndarray) -> list[dict[str, Any]]:
    """Rows as `runner._trade_row` builds them from Backtrader's Trade, with its float arithmetic."""
    rows = []
    n = len(close)
    for entry_bar, exit_bar, size, fill_in, fill_out, comm_in, comm_out in trades.tolist():
        first, last = int(entry_bar), int(exit_bar)
        price = (0.0 + size * fill_in) / size  # Trade.update: (oldsize * price + size * price) / size
        if last >= 0:
            pnl = 0.0 + size * (fill_out - price) * 1.0
            pnlcomm = pnl - ((0.0 + comm_in) + comm_out)
            rows.append(
                {
                    "symbol": symbol,
                    "entry_time": dates[first].isoformat(),
                    "exit_time": dates[last].isoformat(),
                    "entry_price": price,
                    "exit_price": (0 + size * fill_out) / size,
                    "size": float(size),
                    "pnl": pnl,
                    "pnl_net": pnlcomm,
                    "commission": pnl - pnlcomm,
                    "bars_held": last - first,
                }
            )
        else:
            commission = 0.0 - (0.0 - (0.0 + comm_in))
            pnl = 0.0 + size * (float(close[-1]) - price)
            rows.append(
                {
                    "symbol": symbol,
                    "entry_time": dates[first].isoformat(),
                    "exit_time": None,
                    "entry_price": price,
                    "exit_price": None,
                    "size": float(size),
                    "pnl": pnl,
                    "pnl_net": pnl - commission,
                    "commission": commission,
                    "bars_held": n - first,
                }
            )
    return rows


def run_twin(spec: BacktestSpec, *, frames: Mapping[str, pd.DataFrame] | None = None) -> TwinResult:
    """The twin's run of `spec`: equity, exposure, trades and every metric, as the runner reports them."""
    import pandas as pd

    from kubetrader.data.columns import BarColumns
    from kubetrader.metrics import compute_metrics
    from kubetrader.runner import TRADE_COLUMNS, BacktestRunner, _benchmark_returns

    twin = require_twin(spec)
    frames = frames if frames is not None else BacktestRunner(spec).load_data()
    symbol = spec.data.symbols[0]
    bars = Bars.from_frame(frames[symbol])
    params = strategy_params(spec)
    n = len(bars)
    if n < twin.min_bars(params):
        from kubetrader.warmup import not_enough_bars

        raise not_enough_bars(symbol, twin.min_bars(params), n, *((bars.dates[0], bars.dates[-1]) if n else ()))
    enter, leave, start = twin.signals(IndicatorCache(bars), params)
    equity = np.empty(n)
    gross = np.empty(n)
    trades = np.empty((n // 2 + 2, 7))
    count, rejected, halted = simulate(
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        bars.day,
        enter,
        leave,
        start,
        float(params[twin.fraction_param]),
        float(spec.broker.cash),
        cost_array(spec),
        risk_array(spec),
        equity,
        gross,
        trades,
    )
    index = bars.dates
    equity_series = pd.Series(equity, index=index, name="equity")
    exposure = np.divide(gross, equity, out=np.zeros_like(gross), where=equity != 0)
    exposure_series = pd.Series(exposure, index=index, name="exposure")
    rows = _trade_rows(symbol, index, bars.close, trades[:count])
    trade_frame = pd.DataFrame(rows, columns=list(TRADE_COLUMNS))
    days = np.asarray(pd.DatetimeIndex(equity_series.index).as_unit("ns").asi8)
    bench_values = _benchmark_returns(BarColumns.from_frame(frames[spec.benchmark_symbol]), days)
    bench = pd.Series(bench_values, index=equity_series.index, name="benchmark")
    closed = trade_frame[trade_frame["exit_time"].notna()]
    metrics = compute_metrics(equity_series, trades=closed, benchmark_returns=bench, exposure=exposure_series)
    return TwinResult(
        equity=equity_series,
        exposure=exposure_series,
        trades=trade_frame,
        metrics=metrics,
        rejected_orders=int(rejected),
        halted_bar=None if halted < 0 else int(halted),
    )


@dataclass(frozen=True)
class EquityBlock:
    """Equity curves of a chunk of points (rows), NaN rows where the strategy refuses the params."""

    points: list[dict[str, Any]]
    equity: np.ndarray
    valid: np.ndarray


def equity_blocks(
    spec: BacktestSpec,
    points: Sequence[Mapping[str, Any]],
    *,
    bars: Bars,
    chunk: int = 512,
    cache: IndicatorCache | None = None,
) -> Iterator[EquityBlock]:
    """Equity curves of `points` (each merged over the spec's params), `chunk` rows at a time.

    Memory stays at about 3 * chunk * bars bytes * 8 whatever the number of points.
    A point the strategy's own checks refuse (e.g. fast >= slow), or one that needs
    more bars than there are (the runner refuses it: kubetrader.warmup), gets an
    invalid row.
    """
    twin = require_twin(spec)
    cache = cache or IndicatorCache(bars)
    n = len(bars)
    costs, risk = cost_array(spec), risk_array(spec)
    base = strategy_params(spec)
    cash = float(spec.broker.cash)
    for lo in range(0, len(points), chunk):
        block = [dict(p) for p in points[lo : lo + chunk]]
        k = len(block)
        enter = np.zeros((k, n), dtype=np.bool_)
        leave = np.zeros((k, n), dtype=np.bool_)
        starts = np.full(k, n, dtype=np.int64)
        fractions = np.zeros(k)
        valid = np.ones(k, dtype=np.bool_)
        for row, point in enumerate(block):
            params = {**base, **point}
            if n < twin.min_bars(params):
                valid[row] = False
                continue
            try:
                enter[row], leave[row], starts[row] = twin.signals(cache, params)
            except ValueError:
                valid[row] = False
                continue
            fractions[row] = float(params[twin.fraction_param])
        equity = np.empty((k, n))
        prices = (bars.open, bars.high, bars.low, bars.close, bars.day)
        simulate_many(*prices, enter, leave, starts, fractions, cash, costs, risk, equity)
        equity[~valid] = np.nan
        yield EquityBlock(block, equity, valid)
