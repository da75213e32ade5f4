"""The `Backtest` spec: what to run, on which data, with which costs and limits."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from kubetrader.specs.common import IMPORT_PATH_PATTERN, SYMBOL_PATTERN, Scalar, SpecModel
from kubetrader.specs.limits import (
    MAX_MATRIX_CELLS,
    MAX_MATRIX_PARAMS,
    MAX_MATRIX_STRATEGIES,
    MAX_MATRIX_SYMBOLS,
    MAX_MATRIX_VALUES,
    MAX_STRATEGY_PARAMS,
)

Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN, description="Ticker as stored in the data store.")]
ImportPath = Annotated[
    str,
    Field(
        pattern=IMPORT_PATH_PATTERN,
        description="Import path of a BaseStrategy subclass, e.g. strategies.sma_crossover.SMACrossover.",
    ),
]
Timeframe = Literal["1d", "1h", "5m", "1m"]
CommissionModel = Literal["ib-standard", "ib-pro", "none", "custom"]


class StrategySpec(SpecModel):
    """Which strategy class to run and with which parameters."""

    path: ImportPath
    params: dict[str, Scalar] = Field(
        default_factory=dict,
        max_length=MAX_STRATEGY_PARAMS,
        description="Strategy parameters; names and types are checked against the class.",
    )


class DataSpec(SpecModel):
    """Market data: one feed per symbol, from the local data store."""

    symbols: list[Symbol] = Field(min_length=1, max_length=100)
    start: dt.date
    end: dt.date
    timeframe: Timeframe = "1d"
    source: Literal["store", "ib"] = Field(
        default="store",
        description="`store`: the local data store (bundled sample data is registered on first use).",
    )
    benchmark: Symbol | None = Field(
        default=None,
        description="Symbol whose buy-and-hold is the benchmark; defaults to the first symbol.",
    )
    adjust: bool = Field(default=True, description="Adjust OHLC by the Adj Close ratio where present.")

    @field_validator("symbols")
    @classmethod
    def _unique_symbols(cls, value: list[str]) -> list[str]:
        duplicates = sorted({s for s in value if value.count(s) > 1})
        if duplicates:
            raise ValueError(f"symbols listed twice: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _end_after_start(self) -> DataSpec:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


class CommissionSpec(SpecModel):
    """Commission model. The IB tiers are presets; `custom` sets the numbers."""

    model: CommissionModel = "ib-standard"
    per_share: float | None = Field(default=None, ge=0, description="custom: currency per share.")
    percent: float | None = Field(default=None, ge=0, le=0.1, description="custom: fraction of trade value.")
    minimum: float | None = Field(default=None, ge=0, description="custom: minimum per order.")
    max_percent: float | None = Field(default=None, gt=0, le=1, description="custom: cap as a fraction of trade value.")

    @model_validator(mode="after")
    def _custom_needs_numbers(self) -> CommissionSpec:
        custom_fields = (self.per_share, self.percent, self.minimum, self.max_percent)
        if self.model == "custom" and self.per_share is None and self.percent is None:
            raise ValueError("model 'custom' needs perShare or percent")
        if self.model != "custom" and any(v is not None for v in custom_fields):
            raise ValueError(f"perShare/percent/minimum/maxPercent only apply to model 'custom', not {self.model!r}")
        return self


class SlippageSpec(SpecModel):
    """Slippage in basis points of the fill price."""

    market_bps: float = Field(default=5.0, ge=0, le=1000)
    limit_bps: float = Field(default=0.0, ge=0, le=1000)
    model: Literal["capped", "uncapped"] = Field(
        default="capped",
        description="capped: a slipped fill stays within its bar (a buy pays at most the high, a sell gets at least"
        " the low), so less than the rate may be charged; uncapped: the full rate always, even beyond the bar."
        " A limit order never fills beyond its limit either way.",
    )


class BrokerSpec(SpecModel):
    """Simulated broker: cash, costs and fills."""

    cash: float = Field(default=100_000.0, gt=0)
    commission: CommissionSpec = Field(default_factory=CommissionSpec)
    slippage: SlippageSpec = Field(default_factory=SlippageSpec)
    sec_fee_per_million: float = Field(
        default=27.80, ge=0, description="SEC fee on sells, in currency per 1,000,000 of notional."
    )


class RiskSpec(SpecModel):
    """Risk limits, enforced on every order before it is sent (backtest and live alike)."""

    max_position_size: float | None = Field(
        default=None, gt=0, description="Largest position per symbol, in shares or contracts."
    )
    max_concentration: float | None = Field(
        default=None, gt=0, le=1, description="Largest share of equity held in one symbol."
    )
    max_daily_loss: float | None = Field(
        default=None, gt=0, le=1, description="Loss from the day's opening equity that halts trading for the day."
    )
    max_drawdown: float | None = Field(
        default=None, gt=0, le=1, description="Drawdown from the equity peak that halts trading for good."
    )
    max_order_notional: float | None = Field(default=None, gt=0, description="Largest value of one order.")
    max_orders_per_minute: int | None = Field(
        default=None, gt=0, description="Orders sent per minute (bar time in a backtest, wall time live)."
    )
    max_price_deviation: float | None = Field(
        default=None, gt=0, le=1, description="Price band: a limit price's largest distance from the last trade."
    )


class TrackingSpec(SpecModel):
    """Where the run is recorded in MLflow: experiment Project.AssetClass.StrategyFamily.Strategy."""

    enabled: bool = False
    project: str = Field(default="Default", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    asset_class: str = Field(default="Equities", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    strategy_family: str = Field(default="General", pattern=r"^[A-Za-z0-9_-]{1,64}$")


class MatrixSpec(SpecModel):
    """A campaign: the cross product of symbols x strategies x params, fanned out over the work queue.

    Empty lists mean "as in the base spec".
    """

    symbols: list[Symbol] = Field(default_factory=list, max_length=MAX_MATRIX_SYMBOLS)
    strategies: list[ImportPath] = Field(default_factory=list, max_length=MAX_MATRIX_STRATEGIES)
    params: dict[str, Annotated[list[Scalar], Field(max_length=MAX_MATRIX_VALUES)]] = Field(
        default_factory=dict, max_length=MAX_MATRIX_PARAMS
    )
    task_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=7 * 24 * 3600,
        description="Execution deadline of one cell on a worker; past it the cell is stopped and dead-lettered. "
        "Default: 300 s plus 5 ms per bar and symbol.",
    )

    @model_validator(mode="after")
    def _bounded_cells(self) -> MatrixSpec:
        """The cross product is counted, not built: every cell becomes a task (CEL cannot multiply a map)."""
        cells = max(len(self.symbols), 1) * max(len(self.strategies), 1)
        for values in self.params.values():
            cells *= len(values)
        if cells > MAX_MATRIX_CELLS:
            raise ValueError(f"the matrix has {cells} cells; at most {MAX_MATRIX_CELLS} are allowed")
        return self


class BacktestSpec(SpecModel):
    """A backtest (or, with `matrix`, a campaign of backtests)."""

    strategy: StrategySpec
    data: DataSpec
    broker: BrokerSpec = Field(default_factory=BrokerSpec)
    risk: RiskSpec = Field(default_factory=RiskSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    matrix: MatrixSpec | None = None

    @property
    def benchmark_symbol(self) -> str:
        return self.data.benchmark or self.data.symbols[0]
