"""The dashboard's one configuration object, read from the environment.

One pydantic-settings object for the API and the UI (as in full-stack-fastapi-template),
so a setting has one name everywhere and `/api/v1/settings` can show all of them with
every secret masked. With nothing set, the API reads what the CLI wrote under the same
local defaults (`kubetrader.defaults`: `./results`, MLflow's `data/mlflow.db`, every
Optuna journal under `data/optuna/`, the Redis on 127.0.0.1:6379 when one runs), so
`make demo && make dashboard` shows the demo without configuration. A store that is
named explicitly is used as named; `KUBETRADER_LOCAL_DEFAULTS=false` turns the local
look-ups off (then an empty URL means "not available").

The API token guards every state-changing endpoint. A placeholder token is refused
outside development, because a dashboard that submits backtests (or, in a cluster,
creates custom resources) must not run with a password everybody knows.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubetrader import defaults

PLACEHOLDER_TOKEN = "changethis"
MIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    """Environment variables: `KUBETRADER_<NAME>`, plus the two well-known names below."""

    model_config = SettingsConfigDict(env_prefix="KUBETRADER_", extra="ignore", populate_by_name=True)

    environment: Literal["development", "production"] = Field(
        default="development", description="`production` refuses the placeholder token."
    )
    api_token: SecretStr = Field(
        default=SecretStr(PLACEHOLDER_TOKEN),
        description="Bearer token for state-changing endpoints (in a cluster: from a Secret via env).",
    )
    public_read: bool = Field(default=True, description="Read-only endpoints open without a token.")
    fastapi_backend_url: str = Field(
        default="http://127.0.0.1:8000",
        validation_alias="FASTAPI_BACKEND_URL",
        description="Where the Streamlit UI finds the API.",
    )
    results_dir: Path = Field(
        default=defaults.RESULTS_DIR, description="Result store (holds backtests/*.json); default: the CLI's ./results."
    )
    local_defaults: bool = Field(
        default=True,
        description="Stores not set are looked for where the CLI puts them (data/mlflow.db, data/optuna/*.log, "
        "the Redis on 127.0.0.1:6379).",
    )
    data_dir: Path = Field(
        default_factory=defaults.data_dir,
        description="The CLI's data directory (holds mlflow.db and optuna/*.log); default ./data.",
    )
    index_path: Path | None = Field(
        default=None, description="SQLite index of the result store; default: <results_dir>/.index.sqlite."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, validation_alias="MLFLOW_TRACKING_URI", description="MLflow tracking store."
    )
    mlflow_ui_url: str | None = Field(default=None, description="Link shown on the MLflow tab.")
    mlflow_cache_seconds: float = Field(default=15.0, ge=0, description="How long MLflow aggregates are reused.")
    redis_url: str | None = Field(default=None, description="Work queue; empty: queue not available.")
    optuna_storage: str | None = Field(default=None, description="Optuna storage URL; empty: studies not available.")
    live_runner_url: str | None = Field(default=None, description="Live runner HTTP endpoint; empty: not available.")
    runner_token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token of the live runner's endpoint (the runner reads the same KUBETRADER_RUNNER_TOKEN).",
    )
    kubernetes: Literal["auto", "off"] = Field(
        default="auto", description="`auto`: use in-cluster config or a kubeconfig when one exists."
    )
    namespace: str = Field(default="default", description="Namespace of the custom resources.")
    submit_workers: int = Field(default=1, ge=1, le=8, description="Local background runs at a time.")

    @model_validator(mode="after")
    def _refuse_placeholder_token(self) -> Settings:
        token = self.api_token.get_secret_value()
        if self.environment != "development" and (token == PLACEHOLDER_TOKEN or len(token) < MIN_TOKEN_LENGTH):
            raise ValueError(
                f"KUBETRADER_API_TOKEN must be set to a secret of at least {MIN_TOKEN_LENGTH} characters "
                f"outside development (it is {'the placeholder' if token == PLACEHOLDER_TOKEN else 'too short'})"
            )
        return self

    @property
    def backtests_dir(self) -> Path:
        return self.results_dir / "backtests"

    @property
    def effective_redis_url(self) -> str | None:
        return self.redis_url or (defaults.LOCAL_REDIS_URL if self.local_defaults else None)

    @property
    def redis_is_local_default(self) -> bool:
        return not self.redis_url and self.local_defaults

    @property
    def optuna_journal_dir(self) -> Path | None:
        """Where the local studies' journals are, when no storage is named."""
        return None if self.optuna_storage or not self.local_defaults else defaults.optuna_dir(self.data_dir)

    @property
    def resolved_index_path(self) -> Path:
        return self.index_path or (self.results_dir / ".index.sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (tests build their own `Settings` and pass it to `create_app`)."""
    return Settings()
