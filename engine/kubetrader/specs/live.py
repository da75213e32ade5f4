"""The `LiveDeployment` spec: a strategy trading through an IB Gateway, paper or live."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kubetrader.specs.backtest import RiskSpec, StrategySpec, Symbol, Timeframe
from kubetrader.specs.common import SpecModel

# IB's own defaults. The original platform's table had the gateway ports swapped.
DEFAULT_PORTS: dict[tuple[str, str], int] = {
    ("gateway", "live"): 4001,
    ("gateway", "paper"): 4002,
    ("tws", "live"): 7496,
    ("tws", "paper"): 7497,
}

LIVE_REQUIRED_LIMITS = (
    "max_position_size",
    "max_concentration",
    "max_daily_loss",
    "max_drawdown",
    "max_order_notional",
    "max_orders_per_minute",
)


class GatewaySpec(SpecModel):
    image: str | None = Field(
        default=None,
        max_length=512,
        pattern=r"^[^\s@]+@sha256:[0-9a-f]{64}$",
        description="The IB Gateway image, pinned by digest; it must be one the operator allows "
        "(its first allowed image when absent). A tag could move to an image that receives the credentials.",
    )
    credentials_secret: str = Field(
        default="ib-credentials",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Name of the Secret with keys `username` and `password` (never the values here). "
        "It must opt in to this deployment: annotation `kubetrader.io/live-deployments` listing its name.",
    )
    kind: Literal["gateway", "tws"] = "gateway"
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="API port; default by mode (gateway 4001 live / 4002 paper). The "
        "ib-gateway image's socat relays listen on 4003 (live) / 4004 (paper).",
    )
    client_id: int = Field(default=1, ge=0, le=999_999)
    vnc: bool = False


class StopPolicySpec(SpecModel):
    cancel_orders: bool = True
    flatten: bool = True
    retry_seconds: float = Field(default=5.0, gt=0, le=300, description="Backoff between stop attempts.")
    scope: Literal["strategy", "account"] = Field(
        default="strategy",
        description="What a stop flattens: the stocks this deployment trades (strategy) or every position "
        "of the account (account). Orders are cancelled account-wide either way.",
    )
    on_update: Literal["keep", "flatten"] = Field(
        default="keep",
        description="What a spec edit does before the runner restarts with the new spec: keep the positions "
        "(the old runner stops on SIGTERM, the new one reconciles them from the broker) or flatten them first.",
    )


class PromotionSpec(SpecModel):
    from_backtest: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    min_sharpe: float | None = None
    max_drawdown: float | None = Field(default=None, gt=0, le=1, description="Largest allowed |max drawdown|.")
    max_backtest_age_days: int | None = Field(
        default=None,
        ge=1,
        description="The Backtest must have finished within this many days (default: the operator's).",
    )
    # Thresholds on the Backtest's robustness numbers (status.metrics): a Backtest that reports
    # none of them while one is required does not promote (the gate says which is missing).
    min_deflated_sharpe: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Smallest allowed deflated Sharpe ratio (a probability: P[skill beyond the luck of the "
        "trials], Bailey & Lopez de Prado 2014), from status.metrics.deflatedSharpe.",
    )
    min_walk_forward_efficiency: float | None = Field(
        default=None,
        gt=0,
        le=10,
        description="Smallest allowed walk-forward efficiency (out-of-sample over in-sample performance), "
        "from status.metrics.walkForwardEfficiency.",
    )


# ---------------------------------------------------------------- broker-side protection (issue #15, item 5)


class ProtectiveStopSpec(SpecModel):
    """A stop (and optionally a take-profit) held AT THE BROKER for every entry, so a dead runner
    still has a stop at IB.

    Each entry goes out as an IB bracket: the entry is the parent, a STP child (and an LMT
    child for the take-profit, in one OCA group with the stop) is attached with `parentId`
    and transmitted with it; the children work only once the entry fills. One group per
    position: the strategy's exits join it and a fill of any member reduces the rest (OCA
    reduce), so a partial exit leaves a stop of what is held and an exit never fills beside
    the stop. Prices are fractions of the entry's reference price (its limit price,
    else the last trade the strategy saw): `stopLoss: 0.05` puts a long entry's stop 5 % below.
    """

    stop_loss: float = Field(gt=0, lt=1, description="Stop distance from the entry's reference price (0.05 = 5 %).")
    take_profit: float | None = Field(
        default=None,
        gt=0,
        le=10,
        description="Take-profit distance (0.1 = 10 %), OCA with the stop; none by default.",
    )


class LiveRiskSpec(RiskSpec):
    """The backtest's risk limits, plus what only a broker can hold for a live deployment."""

    protective_stop: ProtectiveStopSpec | None = Field(
        default=None, description="Attach a broker-side stop (and take-profit) to every entry."
    )


# ----------------------------------------------------------------


class LiveDeploymentSpec(SpecModel):
    strategy: StrategySpec
    symbols: list[Symbol] = Field(min_length=1, max_length=50)
    mode: Literal["paper", "live"] = "paper"
    timeframe: Timeframe = "1m"
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    risk: LiveRiskSpec
    stop_policy: StopPolicySpec = Field(default_factory=StopPolicySpec)
    promotion: PromotionSpec | None = None

    @model_validator(mode="after")
    def _live_needs_every_limit(self) -> LiveDeploymentSpec:
        if self.mode == "live":
            missing = [name for name in LIVE_REQUIRED_LIMITS if getattr(self.risk, name) is None]
            if missing:
                raise ValueError("mode 'live' needs every risk limit; missing: " + ", ".join(missing))
        return self

    @property
    def api_port(self) -> int:
        return self.gateway.port or DEFAULT_PORTS[(self.gateway.kind, self.mode)]
