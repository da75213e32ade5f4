"""The result document written to `results/backtests/{id}.json` (versioned).

pydantic only, so the API and the operator can read results without pandas.
Bump `SCHEMA_VERSION` on any incompatible change and keep a reader for the old one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TradeRecord(_Doc):
    """A round trip: opened and closed (or still open at the end: `exit_time` None)."""

    symbol: str
    entry_time: str
    exit_time: str | None
    entry_price: float
    exit_price: float | None
    size: float = Field(description="Signed size at entry: positive long, negative short.")
    pnl: float = Field(description="Gross PnL, before commission.")
    pnl_net: float = Field(description="PnL after commission (and fees).")
    commission: float
    bars_held: int


class OrderRecord(_Doc):
    time: str
    symbol: str
    side: Literal["buy", "sell"]
    size: float
    order_type: str
    status: str
    price: float | None = Field(default=None, description="Executed price, if executed.")
    commission: float = 0.0
    reason: str = ""


class RiskEvent(_Doc):
    time: str
    symbol: str
    rule: str = Field(description="max_position_size, max_concentration, max_daily_loss, max_drawdown, ...")
    action: Literal["reduced", "refused", "halted_day", "halted", "flattened"]
    requested: float | None = None
    allowed: float | None = None
    message: str = ""


class ResultMetadata(_Doc):
    id: str
    name: str
    strategy: str
    symbols: list[str]
    start: str
    end: str
    spec_hash: str
    data_hash: str
    package_version: str
    backtrader_version: str
    started_at: str
    finished_at: str
    wall_seconds: float
    tracking: Literal["off", "logged", "pending", "failed"] = "off"
    mlflow_run_id: str | None = None


class ResultDocument(_Doc):
    """Everything a backtest produced. Series are stored as parallel lists (dates, values)."""

    schema_version: int = SCHEMA_VERSION
    status: Literal["succeeded", "failed"] = "succeeded"
    error: str | None = None
    metadata: ResultMetadata
    spec: dict[str, Any]
    metrics: dict[str, float | None]
    dates: list[str] = Field(description="ISO dates of the daily equity curve.")
    equity: list[float]
    returns: list[float]
    benchmark_returns: list[float] | None = None
    trades: list[TradeRecord] = Field(default_factory=list)
    orders: list[OrderRecord] = Field(default_factory=list)
    positions: dict[str, float] = Field(default_factory=dict, description="Final positions by symbol.")
    risk_events: list[RiskEvent] = Field(default_factory=list)
    artifacts: dict[str, str] = Field(
        default_factory=dict, description="Relative paths of the files written beside the JSON."
    )
