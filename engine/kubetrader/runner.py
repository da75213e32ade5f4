"""`BacktestRunner`: one validated BacktestSpec in, one Backtrader run out, as a `BacktestResult`.

The run is a plain Cerebro: one feed per symbol (its bars as numpy columns, no pandas on the path), the costs of
`kubetrader.costs` behind the risk gate (`kubetrader.gate`: the spec's limits), the strategy, and a
single light analyzer that records what the result needs (equity and gross
exposure once per bar, orders and trades as Backtrader notifies them). Options
are chosen for speed: preloaded data, vectorized indicators (`runonce`), no
standard observers. The benchmark is not a feed (a strategy would see and trade
it): its buy-and-hold returns come straight from its closes.

`LiveRunner` (kubetrader.live) runs the same strategy classes against a broker.
"""

from __future__ import annotations

import array
import datetime as dt
import functools
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import backtrader as bt
import numpy as np
from pydantic import TypeAdapter

from kubetrader.costs import build_broker
from kubetrader.data.inputs import describe_inputs
from kubetrader.errors import KubetraderError, StrategyError
from kubetrader.gate import GatedBroker
from kubetrader.results.daily import DailyColumns, daily_columns, daily_of_arrays
from kubetrader.results.provenance import result_metadata
from kubetrader.results.schema import DatasetRecord, OrderRecord, ResultDocument, RiskEvent, TradeRecord
from kubetrader.risk import RiskEngine
from kubetrader.specs import BacktestSpec, spec_hash
from kubetrader.startup import resume_gc
from kubetrader.strategy_loader import check_params, load_strategy
from kubetrader.warmup import check_warmup

if TYPE_CHECKING:
    import pandas as pd

    from kubetrader.data import DataStore
    from kubetrader.data.columns import BarColumns

# Backtrader's float dates count days from 0001-01-01 (day 1); this is 1970-01-01.
_BT_EPOCH_DAYS = 719163.0
_NS_PER_DAY = 86_400_000_000_000
TRADE_COLUMNS: tuple[str, ...] = tuple(TradeRecord.model_fields)
_TRADE_RECORDS = TypeAdapter(list[TradeRecord])
_UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_FINAL_STATUSES = frozenset({"Completed", "Canceled", "Margin", "Rejected", "Expired"})


def result_id(name: str, spec: BacktestSpec) -> str:
    """The deterministic id of a result: a re-run of the same spec under the same name overwrites it."""
    return f"{name}-{spec_hash(spec)[:10]}"


def _bt_ns(values: np.ndarray) -> np.ndarray:
    """Backtrader float dates -> int64 ns since the epoch (UTC), rounded to the millisecond (float noise)."""
    ns = np.round((np.asarray(values, dtype=np.float64) - _BT_EPOCH_DAYS) * (_NS_PER_DAY / 1e6)) * 1e6
    return ns.astype("int64")


def _utc_index(ns: np.ndarray) -> pd.DatetimeIndex:
    import pandas as pd

    return pd.DatetimeIndex(ns, tz="UTC").as_unit("ns")


def _bt_dates(values: np.ndarray) -> pd.DatetimeIndex:
    """Backtrader float dates -> UTC DatetimeIndex, rounded to the millisecond (float noise)."""
    return _utc_index(_bt_ns(values))


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class FrameFeed(bt.feed.DataBase):
    """A feed that reads its rows from plain lists prepared once, from a frame (a naive index) or from
    the bars' numpy columns (kubetrader.data.columns: the run path, without pandas).

    Stock PandasData reads every cell with `DataFrame.iloc`, which under pandas 3
    is about 40 % of a whole daily run. The values fed are identical (the datetime
    goes through Backtrader's own `date2num`), so results do not change; a test
    compares a run on this feed with a run on PandasData to the cent. No open interest
    (its line stays NaN, as PandasData leaves it with `openinterest=None`).

    Preloaded (the runner's case), the feed also skips Backtrader's per-bar machinery that has
    nothing to do for it: `preload` builds each line's array in one call instead of a
    forward/`_load`/filter pass per bar (25 ms of a 5,000-bar run), and `advance`/`advance_peek`
    move the lines and set the `tick_*` prices the broker fills at straight from those arrays
    instead of through `getattr`/`setattr` by alias name (50 ms). Both leave the lines and the
    ticks exactly as Backtrader's own methods would, bar for bar (tests/engine/test_run_loop.py);
    anything they do not cover (filters, a time zone or date range on the feed, replay or
    resample, memory saving) goes through Backtrader's code unchanged.
    """

    _TICKS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "openinterest")

    def start(self) -> None:
        super().start()
        self._idx = -1
        data = self.p.dataname
        if hasattr(data, "stamps"):  # BarColumns: UTC stamps, fed as naive UTC wall time
            self._dates = _date_nums(data.stamps)
            values = [data.columns[name] for name in ("open", "high", "low", "close", "volume")]
        else:
            import pandas as pd

            self._dates = _date_nums(pd.DatetimeIndex(data.index))
            values = [data[name].to_numpy(dtype=np.float64) for name in ("open", "high", "low", "close", "volume")]
        self._rows = len(self._dates)
        self._columns = [
            (getattr(self.lines, name), np.asarray(column, dtype=np.float64).tolist())
            for name, column in zip(("open", "high", "low", "close", "volume"), values, strict=True)
        ]
        self._preloaded = False

    def _load(self) -> bool:
        self._idx += 1
        i = self._idx
        if i >= self._rows:
            return False
        for line, values in self._columns:
            line[0] = values[i]
        self.lines.datetime[0] = self._dates[i]
        return True

    def preload(self) -> None:
        lines = list(self.lines.lines)
        plain = (
            not self._filters
            and not self._ffilters
            and not self._tzinput
            and self.fromdate == -math.inf
            and self.todate == math.inf
            and set(self.getlinealiases()) == {"datetime", *self._TICKS}
            and all(
                line.mode == line.UnBounded and not len(line.array) and not line.extension and not line.bindings
                for line in lines
            )
        )
        if not plain:
            super().preload()
            return
        # What the loading loop would leave: each column's values, NaN in the lines not fed
        # (`forward` fills with NaN), then every line at home.
        filled = {id(line): values for line, values in self._columns}
        filled[id(self.lines.datetime)] = self._dates
        for line in lines:
            values = filled.get(id(line))
            line.array = array.array("d", values) if values is not None else array.array("d", [math.nan]) * self._rows
        self._idx = self._rows
        self.home()
        self._preloaded = True
        self._lines_list = lines
        self._close = self.lines.close
        self._datetime = self.lines.datetime
        self._tick_lines = [(f"tick_{name}", getattr(self.lines, name)) for name in self._TICKS]

    def advance_peek(self) -> float:
        if not self._preloaded:
            return float(super().advance_peek())
        close = self._close
        if close.lencount < len(close.array) - close.extension:  # len(self) < self.buflen()
            when = self._datetime
            return float(when.array[when._idx + 1])
        return math.inf

    def advance(self, size: int = 1, datamaster: Any = None, ticks: bool = True) -> None:
        if not self._preloaded or size != 1 or datamaster is not None or not ticks:
            super().advance(size, datamaster, ticks)
            return
        # feed.AbstractDataBase.advance without a master: nullify the ticks, advance every line,
        # and fill the ticks from the new bar unless that was the last one.
        for line in self._lines_list:
            line._idx += 1  # LineBuffer.set_idx of an UnBounded buffer
            line.lencount += 1
        close = self._close
        if close.lencount < len(close.array) - close.extension:
            i = close._idx
            for name, line in self._tick_lines:
                setattr(self, name, line.array[i])
            self.tick_last = close.array[i]
        else:
            for name, _ in self._tick_lines:
                setattr(self, name, None)
            self.tick_last = None


def _date_nums(index: pd.DatetimeIndex | np.ndarray) -> list[float]:
    """Backtrader's `date2num` of each timestamp (naive: wall time as given; an array is int64 ns).

    Daily bars (every stamp a naive midnight) take a vectorized path: `date2num` of a midnight is
    `float(toordinal())` exactly (the fsum of the ordinal and four zeros), i.e. days since 1970
    plus 1970-01-01's ordinal, computed here from the nanoseconds without a Python datetime per
    bar (5 ms of a 5,000-bar run). Anything else goes through `date2num` itself."""
    ns = index if isinstance(index, np.ndarray) else np.asarray(index.as_unit("ns").asi8) if index.tz is None else None
    if ns is not None and not (ns % _NS_PER_DAY).any():
        return list((ns // _NS_PER_DAY + int(_BT_EPOCH_DAYS)).astype(np.float64).tolist())
    if isinstance(index, np.ndarray):
        epoch = dt.datetime(1970, 1, 1)
        return [bt.date2num(epoch + dt.timedelta(microseconds=n // 1000)) for n in index.tolist()]
    return [bt.date2num(d) for d in index.to_pydatetime()]


class _Recorder(bt.Analyzer):
    """Equity, gross exposure, orders and trades, collected with as little work per bar as possible.

    Per bar it keeps the value Backtrader has just computed for `notify_cashvalue` and, with one
    feed (the common case), that feed's position size: the bar's time and close are the feed's own
    preloaded line arrays at that bar (bar i is element i: the feed advances once per bar), so
    `curves` reads them once at the end. With several feeds each bar's time is the latest feed's and
    its gross exposure the sum over the feeds, taken per bar as the bars come.
    """

    def __init__(self) -> None:
        self.values: list[float] = []
        self.sizes: list[float] = []  # one feed: its position size at each bar
        self.times: list[float] = []  # several feeds: each bar's time ...
        self.gross: list[float] = []  # ... and gross position value
        self.orders: list[tuple[Any, ...]] = []
        self.open_trades: dict[int, Any] = {}
        self.closed_trades: list[Any] = []

    def start(self) -> None:
        check_warmup(self.strategy)  # "not enough bars" instead of Backtrader's IndexError
        # Looked up once: per bar, `self.strategy.broker`, `data.datetime` and `data.close` each go through
        # Backtrader's descriptors, a few percent of a daily run. The broker has started (its positions
        # exist) before the strategies and their analyzers start (Cerebro.runstrategies); BackBroker keeps
        # one Position per data and updates it in place on every fill.
        self._broker = self.strategy.broker
        self._feeds = [(data, data.lines.datetime, data.lines.close) for data in self.datas]
        self._position = self._broker.getposition(self.datas[0]) if len(self.datas) == 1 else None

    def notify_cashvalue(self, cash: float, value: float) -> None:
        self.values.append(value)
        position = self._position
        if position is not None:
            self.sizes.append(position.size)
            return
        getposition = self._broker.getposition
        feeds = self._feeds
        self.times.append(max(when[0] for data, when, _ in feeds if len(data)))
        gross = 0.0
        for data, _, close in feeds:
            size = getposition(data).size
            if size:
                gross += abs(size) * close[0]
        self.gross.append(gross)

    def curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Backtrader's float time, the equity and the gross position value of every bar."""
        values = np.asarray(self.values, dtype=np.float64)
        if self._position is None:
            return np.asarray(self.times, dtype=np.float64), values, np.asarray(self.gross, dtype=np.float64)
        _, when, close = self._feeds[0]
        bars = len(values)
        sizes = np.asarray(self.sizes, dtype=np.float64)
        closes = np.asarray(close.array[:bars], dtype=np.float64)
        gross = np.where(sizes != 0, np.abs(sizes) * closes, 0.0)
        return np.asarray(when.array[:bars], dtype=np.float64), values, gross

    # Backtrader calls `_notify_cashvalue`, `_notify_fund` and `_next` on every analyzer every bar; the
    # base class's versions loop over child analyzers (a recorder has none) before calling the public
    # hook. Bound straight to the hooks (or to nothing), three calls per bar fewer.
    _notify_cashvalue = notify_cashvalue

    def _notify_fund(self, cash: float, value: float, fundvalue: float, shares: float) -> None:
        return None

    def _next(self) -> None:
        return None

    def notify_order(self, order: Any) -> None:
        status = order.getstatusname()
        if status not in _FINAL_STATUSES:
            return
        executed = order.executed
        when = executed.dt if executed.size else order.data.datetime[0]
        self.orders.append(
            (
                when,
                order.data._name,
                "buy" if order.isbuy() else "sell",
                abs(executed.size) if executed.size else abs(order.created.size),
                order.getordername(),
                status,
                executed.price if executed.size else None,
                executed.comm,
                order.info.get("reason", ""),
            )
        )

    def notify_trade(self, trade: Any) -> None:
        if trade.isclosed:
            self.open_trades.pop(trade.ref, None)
            self.closed_trades.append(trade)
        elif trade.justopened:
            self.open_trades[trade.ref] = trade


@dataclass(frozen=True)
class RunArrays:
    """What a run computed, as numpy arrays and plain rows: the result's files, document and metrics
    are written from these without pandas (a run's start-up cost, kubetrader.data.columns)."""

    days: np.ndarray
    """The equity's days: int64 ns since the epoch, UTC (the last bar of each day)."""
    equity: np.ndarray
    exposure: np.ndarray
    benchmark: np.ndarray | None
    """The benchmark's daily returns on `days` (0 on the first); None without one."""
    trades: list[dict[str, Any]]
    """TradeRecord's fields per round trip (closed, then still open), None where a value is missing."""
    bar_times: np.ndarray
    bar_equity: np.ndarray


class _FromArrays:
    """A BacktestResult field in pandas, built from its RunArrays on first read (so a run that only
    writes its files never imports pandas). A value given to the constructor (or `dataclasses.replace`)
    is kept as given, and then the result's files and document are computed from the pandas fields."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self  # the dataclass default: "from the arrays"
        values = obj.__dict__
        if self.name not in values:
            values[self.name] = _pandas_field(self.name, obj.arrays)
        return values[self.name]

    def __set__(self, obj: Any, value: Any) -> None:
        if value is not self:
            obj.__dict__[self.name] = value
            obj.__dict__["_given"] = True


def _pandas_field(name: str, arrays: RunArrays | None) -> Any:
    import pandas as pd

    if arrays is None:
        raise AttributeError(f"BacktestResult.{name}: neither given nor computed by a run")
    index = _utc_index(arrays.days)
    if name == "equity":
        return pd.Series(arrays.equity, index=index, name="equity")
    if name == "exposure":
        return pd.Series(arrays.exposure, index=index, name="exposure")
    if name == "benchmark_returns":
        return None if arrays.benchmark is None else pd.Series(arrays.benchmark, index=index, name="benchmark")
    return pd.DataFrame(arrays.trades, columns=list(TRADE_COLUMNS))


@dataclass(kw_only=True)
class BacktestResult:
    """What one run produced; `to_document` turns it into the JSON result.

    `equity`, `exposure`, `benchmark_returns` (Series) and `trades` (DataFrame) are pandas views of
    `arrays`, built when first read; the run path writes its files from the arrays."""

    spec: BacktestSpec
    equity: pd.Series = _FromArrays()  # type: ignore[assignment]
    exposure: pd.Series = _FromArrays()  # type: ignore[assignment]
    benchmark_returns: pd.Series | None = _FromArrays()  # type: ignore[assignment]
    trades: pd.DataFrame = _FromArrays()  # type: ignore[assignment]
    orders: list[OrderRecord]
    positions: dict[str, float]
    risk_events: list[RiskEvent]
    metrics: dict[str, float | None]
    data_hash: str
    started_at: str
    finished_at: str
    wall_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    datasets: list[DatasetRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    arrays: RunArrays | None = None

    @property
    def arrays_only(self) -> bool:
        """No pandas field was given: the arrays are the result."""
        return self.arrays is not None and not self.__dict__.get("_given", False)

    @property
    def closed_trades(self) -> pd.DataFrame:
        from kubetrader.results.trades import closed_frame

        return closed_frame(self.trades)

    @property
    def bar_equity(self) -> pd.Series:
        """Equity at every bar (the daily curve keeps each day's last): walk-forward stitches
        intraday out-of-sample windows at bar resolution (kubetrader.optimize.validation)."""
        import pandas as pd

        if self.arrays is None:
            raise AttributeError("BacktestResult.bar_equity: not computed by a run")
        return pd.Series(self.arrays.bar_equity, index=_utc_index(self.arrays.bar_times))

    def trade_rows(self) -> list[dict[str, Any]]:
        """TradeRecord's fields per round trip, None where missing (NaN in the frame)."""
        if self.arrays_only and self.arrays is not None:
            return self.arrays.trades
        return _trade_rows(self.trades)

    @functools.cached_property
    def daily(self) -> DailyColumns:
        """Dates, returns, exposure and benchmark per day, computed once for the JSON and the equity CSV."""
        if self.arrays_only and self.arrays is not None:
            arrays = self.arrays
            return daily_of_arrays(arrays.days, arrays.equity, arrays.exposure, arrays.benchmark)
        return daily_columns(self.equity, self.exposure, self.benchmark_returns)

    def to_document(self, name: str, *, artifacts: dict[str, str] | None = None) -> ResultDocument:
        """The versioned result document; the id is `result_id(name, spec)`."""
        daily = self.daily
        dates = daily.dates
        bench = None
        if daily.benchmark is not None:
            bench = np.where(np.isnan(daily.benchmark), 0.0, daily.benchmark).tolist()
        trades = _TRADE_RECORDS.validate_python(self.trade_rows())
        metadata = result_metadata(
            self.spec,
            name=name,
            data_hash=self.data_hash,
            datasets=self.datasets,
            first_bar=dates[0] if dates else None,
            last_bar=dates[-1] if dates else None,
            started_at=self.started_at,
            finished_at=self.finished_at,
            wall_seconds=self.wall_seconds,
        )
        return ResultDocument(
            warnings=self.warnings,
            metadata=metadata,
            spec=self.spec.to_wire(),
            metrics=self.metrics,
            dates=dates,
            equity=daily.equity.tolist(),
            returns=daily.returns.tolist(),
            benchmark_returns=bench,
            trades=trades,
            orders=self.orders,
            positions=self.positions,
            risk_events=self.risk_events,
            artifacts=artifacts or {},
        )


class BacktestRunner:
    """Runs one BacktestSpec (without `matrix`; see kubetrader.pipeline for campaigns)."""

    def __init__(self, spec: BacktestSpec, *, store: DataStore | None = None) -> None:
        if spec.matrix is not None:
            raise StrategyError("BacktestRunner runs one cell; expand the matrix first (kubetrader.pipeline)")
        self.spec = spec
        self.store = store

    def load_data(self) -> dict[str, pd.DataFrame]:
        """Bars for every symbol and the benchmark, as the spec asks for them."""
        return {symbol: bars.frame() for symbol, bars in self.load_columns().items()}

    def load_columns(self) -> dict[str, BarColumns]:
        """`load_data` as numpy columns, without pandas: what `run` feeds to Backtrader."""
        from kubetrader.data.loader import load_columns

        data = self.spec.data
        symbols = list(dict.fromkeys([*data.symbols, self.spec.benchmark_symbol]))
        return {
            symbol: load_columns(
                symbol,
                timeframe=data.timeframe,
                start=data.start,
                end=data.end,
                adjust=data.adjust,
                store=self.store,
            )
            for symbol in symbols
        }

    def run(self) -> BacktestResult:
        started_at, started = _utc_now(), time.perf_counter()
        spec = self.spec
        strategy_cls = load_strategy(spec.strategy.path)
        params = check_params(strategy_cls, spec.strategy.params)
        frames = self.load_columns()
        cerebro = bt.Cerebro(stdstats=False, preload=True, runonce=True, optreturn=False, tradehistory=True)
        # the risk gate: every order passes the spec's limits at the broker (kubetrader.gate)
        cerebro.broker = build_broker(spec.broker, GatedBroker, risk=RiskEngine(spec.risk))
        for symbol in spec.data.symbols:
            cerebro.adddata(FrameFeed(dataname=frames[symbol]), name=symbol)
        cerebro.addstrategy(strategy_cls, **params)
        cerebro.addanalyzer(_Recorder, _name="kubetrader")
        resume_gc()  # the CLI's start-up ends here: the strategy runs with the collector on (kubetrader.startup)
        try:
            (strategy,) = cerebro.run()
        except KubetraderError:
            raise
        except Exception as exc:
            raise StrategyError(_failure_message(spec.strategy.path, exc, cerebro)) from exc

        recorder: _Recorder = strategy.analyzers.kubetrader
        bar_times, bar_values, bar_gross = recorder.curves()
        days, equity, exposure = _daily_curves(bar_times, bar_values, bar_gross)
        if not days.size:
            raise StrategyError(f"{spec.strategy.path}: the run produced no bars")
        trades = _trade_frame(recorder, strategy, frames)
        bench = _benchmark_returns(frames[spec.benchmark_symbol], days)
        from kubetrader.metrics import metrics_of_arrays

        pnl = np.array([t["pnl_net"] for t in trades if t["exit_time"] is not None], dtype=np.float64)
        metrics = metrics_of_arrays(days, equity, pnl=pnl, benchmark=bench, exposure=exposure)
        positions = {data._name: float(strategy.getposition(data).size) for data in strategy.datas}
        inputs = describe_inputs(spec.data, frames, benchmark=spec.benchmark_symbol, store=self.store)
        return BacktestResult(
            spec=spec,
            arrays=RunArrays(
                days=days,
                equity=equity,
                exposure=exposure,
                benchmark=bench,
                trades=trades,
                bar_times=_bt_ns(bar_times),
                bar_equity=bar_values,
            ),
            orders=_order_records(recorder.orders),
            positions=positions,
            risk_events=list(getattr(strategy, "risk_events", [])),
            metrics=metrics,
            data_hash=inputs.data_hash,
            datasets=inputs.datasets,
            warnings=inputs.warnings,
            started_at=started_at,
            finished_at=_utc_now(),
            wall_seconds=time.perf_counter() - started,
        )


def _failure_message(path: str, exc: BaseException, cerebro: Any) -> str:
    """'<path> raised <Type>: <message> at bar <date>' (the bar when the run got that far)."""
    bar = ""
    try:
        datas = [d for d in cerebro.datas if len(d)]
        if datas:
            bar = f" at bar {bt.num2date(max(d.datetime[0] for d in datas)).isoformat()}"
    except Exception:  # the message matters more than the bar: never fail while describing a failure
        bar = ""
    return f"{path} raised {type(exc).__name__}: {exc}{bar}"


def _daily_curves(
    times: np.ndarray, values: np.ndarray, gross: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Days (int64 ns, UTC), equity and exposure (gross position value / equity): the last bar of each
    UTC date. Daily bars, one per midnight, are that already; other bars go through pandas' groupby."""
    ns = _bt_ns(times)
    exposure = np.divide(gross, values, out=np.zeros_like(gross), where=values != 0)
    if not ns.size or _one_stamp_per_midnight(ns):
        return ns, values, exposure
    import pandas as pd

    index = _utc_index(ns)
    days = index.normalize()
    if len(days.unique()) == len(days) and not (days != index).any():
        return ns, values, exposure
    equity_days = pd.Series(values, index=index).groupby(days).last()
    exposure_days = pd.Series(exposure, index=index).groupby(days).last()
    return (
        np.asarray(pd.DatetimeIndex(equity_days.index).as_unit("ns").asi8),
        equity_days.to_numpy(dtype=np.float64),
        exposure_days.to_numpy(dtype=np.float64),
    )


def _one_stamp_per_midnight(index: pd.DatetimeIndex | np.ndarray) -> bool:
    """Each stamp a midnight (of its own time zone; an array is int64 ns), strictly increasing: already
    one point per day.

    Daily bars, the common case, checked on the nanoseconds instead of building `normalize()`
    and its `unique()`; when it says True those would have changed nothing (callers fall back to
    them otherwise)."""
    if isinstance(index, np.ndarray):
        ns = index
    else:
        local = index.tz_localize(None) if index.tz is not None else index
        ns = np.asarray(local.as_unit("ns").asi8)
    return not (ns % _NS_PER_DAY).any() and bool((np.diff(ns) > 0).all())


def _benchmark_returns(bars: BarColumns, days: np.ndarray) -> np.ndarray:
    """Buy-and-hold daily returns of the benchmark's close on the equity's days (first day 0).

    The close of each day (its last bar), carried forward over days it has none, then
    `pct_change().fillna(0.0)`: what pandas' reindex / ffill / pct_change gave, on arrays."""
    from kubetrader.results.daily import simple_returns

    stamps, close = bars.stamps, bars.columns["close"]
    if not _one_stamp_per_midnight(stamps):  # intraday: each day's last bar, as pandas' groupby().last()
        import pandas as pd

        index = _utc_index(stamps)
        last = pd.Series(close, index=index).groupby(index.normalize()).last()
        stamps = np.asarray(pd.DatetimeIndex(last.index).as_unit("ns").asi8)
        close = last.to_numpy(dtype=np.float64)
    union = np.union1d(days, stamps)
    values = np.full(union.shape, np.nan)
    values[np.searchsorted(union, stamps)] = close
    known = np.where(np.isnan(values), 0, np.arange(values.size))  # ffill: the last known position so far
    filled = values[np.maximum.accumulate(known)]
    return simple_returns(filled[np.searchsorted(union, days)])


def _trade_rows(trades: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as dicts of Python values, NaN as None (pandas turns None into NaN in mixed
    columns; the document wants null). Column by column: `to_dict("records")` boxes every cell."""
    names = [str(name) for name in trades.columns]
    columns = [[None if isinstance(v, float) and math.isnan(v) else v for v in trades[name].tolist()] for name in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _iso(num: float) -> str:
    return bt.num2date(num).replace(tzinfo=dt.UTC).isoformat()


def _trade_frame(recorder: _Recorder, strategy: Any, frames: dict[str, BarColumns]) -> list[dict[str, Any]]:
    """One row per round trip (closed, then still open at the end), in TradeRecord's columns."""
    rows: list[dict[str, Any]] = []
    for trade in recorder.closed_trades:
        rows.append(_trade_row(trade, closed=True))
    for trade in recorder.open_trades.values():
        row = _trade_row(trade, closed=False)
        bars = frames[row["symbol"]]
        status = trade.history[-1].status
        unrealized = status.size * (float(bars.columns["close"][-1]) - status.price)
        row["pnl"] = status.pnl + unrealized
        row["pnl_net"] = row["pnl"] - row["commission"]
        entered = (dt.datetime.fromisoformat(row["entry_time"]) - _UTC_EPOCH) // dt.timedelta(microseconds=1) * 1000
        row["bars_held"] = int(len(bars) - np.searchsorted(bars.stamps, entered, side="left"))
        rows.append(row)
    return [{name: row[name] for name in TRADE_COLUMNS} for row in rows]


def _trade_row(trade: Any, *, closed: bool) -> dict[str, Any]:
    history = trade.history
    entry_size = history[0].event.size if history else trade.size
    exits = [h.event for h in history if h.event.size * entry_size < 0]
    exit_shares = sum(abs(e.size) for e in exits)
    exit_price = sum(abs(e.size) * e.price for e in exits) / exit_shares if exit_shares else None
    last_status = history[-1].status if history else None
    commission = last_status.pnl - last_status.pnlcomm if last_status else trade.commission
    entry_price = last_status.price if last_status else trade.price
    return {
        "symbol": trade.data._name,
        "entry_time": _iso(trade.dtopen),
        "exit_time": _iso(trade.dtclose) if closed else None,
        "entry_price": float(entry_price),
        "exit_price": float(exit_price) if closed and exit_price is not None else None,
        "size": float(entry_size),
        "pnl": float(trade.pnl),
        "pnl_net": float(trade.pnlcomm),
        "commission": float(commission),
        "bars_held": int(trade.barlen),
    }


def _order_records(rows: list[tuple[Any, ...]]) -> list[OrderRecord]:
    records = []
    for when, symbol, side, size, order_type, status, price, commission, reason in rows:
        records.append(
            OrderRecord(
                time=_iso(when),
                symbol=str(symbol),
                side=side,
                size=float(size),
                order_type=str(order_type),
                status=str(status),
                price=None if price is None or (isinstance(price, float) and math.isnan(price)) else float(price),
                commission=float(commission or 0.0),
                reason=str(reason or ""),
            )
        )
    return records
