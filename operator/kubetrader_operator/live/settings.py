"""Settings of the LiveDeployment handlers (env `KUBETRADER_OPERATOR_LIVE_<FIELD>`).

The address templates exist because the operator must reach the runner and the
gateway from wherever it runs: cluster DNS in production, loopback in tests.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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


@lru_cache(maxsize=1)
def get_live_settings() -> LiveSettings:
    return LiveSettings()
