"""Settings of the LiveDeployment handlers (env `KUBETRADER_OPERATOR_LIVE_<FIELD>`).

The address templates exist because the operator must reach the runner and the
gateway from wherever it runs: cluster DNS in production, loopback in tests.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# gnzsnz/ib-gateway 10.45.1j, by digest (an index digest recorded by two independent users of the
# image); a tag such as `:stable` moves and would receive the IB credentials of whatever it points to.
DEFAULT_GATEWAY_IMAGE = (
    "ghcr.io/gnzsnz/ib-gateway@sha256:91165c0752ca534c0dad3c40683ae7c2745974d4d277651a90e90411ca609d8d"
)
# IBKR "Host and Ports Documentation" (ibkr.info, tag technical): TWS and IB Gateway reach IBKR's
# servers on TCP 4000 and 4001 (SSL) "and will not operate on any other port". IBKR names hosts,
# not addresses, so the default is every public IPv4 address on those ports (private ranges and
# the link-local metadata range excepted); a cluster that knows IBKR's addresses narrows `cidr`.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")


class PodPeer(BaseModel):
    """Pods of one namespace, by labels: a NetworkPolicy peer that another namespace cannot imitate."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    namespace: str = Field(min_length=1, max_length=63)
    labels: dict[str, str] = Field(min_length=1)


class EgressTarget(BaseModel):
    """Addresses outside the cluster (an ipBlock) and the ports a gateway may reach there."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    cidr: str
    except_: tuple[str, ...] = Field(default=(), alias="except")
    ports: tuple[int, ...] = Field(min_length=1)
    protocol: Literal["TCP", "UDP"] = "TCP"


class ScrapePeer(BaseModel):
    """The metrics scraper (Prometheus): a NetworkPolicy peer as the chart's monitoring.scrapeFrom
    writes it, label selectors of its namespace and of its pods. Both are required and must
    select something: an empty selector would admit every namespace or every pod."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    namespace_selector: dict[str, Any] = Field(alias="namespaceSelector", min_length=1)
    pod_selector: dict[str, Any] = Field(alias="podSelector", min_length=1)

    def peer(self) -> dict[str, Any]:
        return {"namespaceSelector": dict(self.namespace_selector), "podSelector": dict(self.pod_selector)}


class LiveNetwork(BaseModel):
    """Who may talk to a deployment's gateway and runner, and where its gateway may connect."""

    model_config = ConfigDict(frozen=True)
    operator_pod: PodPeer | None = None
    api_pod: PodPeer | None = None
    # admitted to the runner's HTTP port, whose /metrics it scrapes (every other path needs the token)
    metrics_scraper: ScrapePeer | None = None
    dns_pod: PodPeer
    gateway_egress: tuple[EgressTarget, ...]


def _ib_endpoints() -> list[EgressTarget]:
    return [EgressTarget.model_validate({"cidr": "0.0.0.0/0", "except": PRIVATE_RANGES, "ports": (4000, 4001)})]


class LiveSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBETRADER_OPERATOR_LIVE_", frozen=True)

    runner_image: str | None = Field(default=None, description="Default: the operator's engine image.")
    runner_port: int = Field(default=8080, ge=1, le=65535)
    # {service}, {namespace}, {port} are filled in; the result is host:port (gateway) or a URL (runner).
    gateway_address: str = "{service}.{namespace}.svc:{port}"
    runner_url: str = "http://{service}.{namespace}.svc:{port}"
    emergency_client_id: int = Field(default=999, ge=0, description="The operator's own IB client id for stops.")
    flatten_wait_seconds: float = Field(default=20.0, gt=0, description="How long one flatten attempt may take.")
    poll_interval_seconds: float = Field(default=15.0, gt=0, description="Status poll of the runner.")
    http_timeout_seconds: float = Field(default=3.0, gt=0)
    max_backtest_age_days: int | None = Field(default=None, ge=1)
    hung_runner_deadline_seconds: float = Field(
        default=90.0, gt=0,
        description="How long the emergency stop waits on a runner that is connected but hung (it keeps its "
        "client id at the gateway, its loop does not run) before it acts under its own client id.",
    )  # fmt: skip

    # ---- the operator is no deputy (issue 21): images, Secrets, network peers (JSON in env) ----
    allowed_gateway_images: list[str] = Field(
        default=[DEFAULT_GATEWAY_IMAGE],
        min_length=1,
        description="spec.gateway.image must be one of these; the first is the default.",
    )
    operator_pod: PodPeer | None = Field(
        default=None, description="The operator's own pods: admitted to gateways (emergency stop) and runners."
    )
    api_pod: PodPeer | None = Field(default=None, description="The API's pods: admitted to runners' HTTP port.")
    metrics_scraper: ScrapePeer | None = Field(
        default=None, description="Prometheus' pods (the chart's monitoring.scrapeFrom): admitted to runners' /metrics."
    )
    refusal_retry_seconds: float = Field(
        default=30.0, gt=0, description="How soon a refused Secret or an unmet promotion gate is checked again."
    )
    dns_pod: PodPeer = PodPeer(namespace="kube-system", labels={"k8s-app": "kube-dns"})
    runner_token_key: SecretStr | None = Field(
        default=None,
        description="The key each runner's bearer token is derived from (builders.runner_token); the chart "
        "mounts it from the operator's one generated Secret, so no runner's token Secret is ever read.",
    )
    gateway_egress: list[EgressTarget] = Field(default_factory=_ib_endpoints)

    @property
    def runner_stall_fence_seconds(self) -> float:
        """The runners' `--stall-fence`: two thirds of the hung-runner deadline, so a runner hung long
        enough for the operator to take over has fenced itself (halted, sends nothing) before then;
        one setting, so the two can never be configured the wrong way round (the default 90 s gives
        the runner's own default of 60 s)."""
        return self.hung_runner_deadline_seconds * 2 / 3

    def network(self) -> LiveNetwork:
        return LiveNetwork(
            operator_pod=self.operator_pod,
            api_pod=self.api_pod,
            metrics_scraper=self.metrics_scraper,
            dns_pod=self.dns_pod,
            gateway_egress=tuple(self.gateway_egress),
        )


@lru_cache(maxsize=1)
def get_live_settings() -> LiveSettings:
    return LiveSettings()
