"""The result document written to `results/backtests/{id}.json` (versioned).

pydantic only, so the API and the operator can read results without pandas.
Bump `SCHEMA_VERSION` on any incompatible change and keep a reader for the old one.

Versions:

1. The first.
2. Records what reproducing a result takes (issue 18): `metadata.first_bar` /
   `last_bar` (the bars actually used, where `start` / `end` are the ones asked
   for), `metadata.versions` (Python, kubetrader, pandas, numpy, numba, Backtrader),
   `metadata.git_commit`, `metadata.datasets` (per symbol: role, bars, hash, raw
   files' sha256) and `warnings`; `data_hash` covers the benchmark's bars too.
   Documents of schema 1 are read with those fields empty (their defaults); a
   document of a newer schema is refused with a message saying so.

What the hashes mean: `spec_hash` is the sha256 of the spec's canonical JSON
(kubetrader.specs.spec_hash) and the result id is `{name}-{spec_hash[:10]}`, so a
re-run of one spec under one name overwrites its result, whatever the data.
`data_hash` is the sha256 over the bars the run saw (every traded symbol and the
benchmark, as loaded: adjusted when the spec adjusts): two results can be compared
only when both hashes agree, and the software in `versions` / `git_commit` is the
rest of the story.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 2


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


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


class DatasetRecord(_Doc):
    """One data set a run read: which bars, their hash, and the raw files they were imported from."""

    symbol: str
    traded: bool = Field(description="A feed the strategy trades.")
    benchmark: bool = Field(description="The benchmark (it may also be traded).")
    timeframe: str
    bars: int = Field(description="Bars in the range used.")
    first_bar: str | None
    last_bar: str | None
    data_hash: str = Field(description="kubetrader.data.data_hash of these bars, as loaded.")
    sources: list[str] = Field(default_factory=list, description="Where the stored bars came from.")
    raw_files: dict[str, str | None] = Field(
        default_factory=dict, description="sha256 of each raw file kept in the store (None: no raw copy)."
    )


class ResultMetadata(_Doc):
    id: str
    name: str
    strategy: str
    symbols: list[str]
    start: str = Field(description="The start date the spec asked for.")
    end: str = Field(description="The end date the spec asked for.")
    first_bar: str | None = Field(default=None, description="Date of the first bar used (schema 2).")
    last_bar: str | None = Field(default=None, description="Date of the last bar used (schema 2).")
    spec_hash: str
    data_hash: str = Field(description="sha256 over every data set's hash, benchmark included (from schema 2).")
    package_version: str
    backtrader_version: str
    versions: dict[str, str] = Field(
        default_factory=dict, description="python, kubetrader, pandas, numpy, numba, backtrader (schema 2)."
    )
    git_commit: str | None = Field(default=None, description="Commit of the source checkout, if run from one.")
    datasets: list[DatasetRecord] = Field(default_factory=list, description="The data sets read (schema 2).")
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
    warnings: list[str] = Field(
        default_factory=list, description="What the run could not do as asked, e.g. a range beyond the data."
    )
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

    @field_validator("schema_version")
    @classmethod
    def _readable(cls, value: int) -> int:
        if value > SCHEMA_VERSION:
            newer = f"written with result schema {value} by a newer kubetrader"
            raise ValueError(f"{newer}; this one reads schemas up to {SCHEMA_VERSION}")
        return value
