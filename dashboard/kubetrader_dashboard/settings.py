"""The dashboard's one configuration object, read from the environment.

One pydantic-settings object for the API and the UI (as in full-stack-fastapi-template),
so a setting has one name everywhere and `/api/v1/settings` can show all of them with
every secret masked. With nothing set, the API reads what the CLI wrote under the same
local defaults (`kubetrader.defaults`: `./results`, MLflow's `data/mlflow.db`, every
Optuna journal under `data/optuna/`, the Redis on 127.0.0.1:6379 when one runs), so
`make demo && make dashboard` shows the demo without configuration. A store that is
named explicitly is used as named; `KUBETRADER_LOCAL_DEFAULTS=false` turns the local
look-ups off (then an empty URL means "not available").

People sign in (the built-in login with a users file, or OIDC through an auth proxy) and the
API authorizes each route by their role (`kubetrader_dashboard.auth`). The machine token
(`KUBETRADER_API_TOKEN`) is for automation only and carries a role of its own. A placeholder
token is refused outside development (and warned about in it), because an API that submits
backtests (or, in a cluster, creates custom resources) must not run with a password everybody
knows.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubetrader import defaults
from kubetrader_dashboard.auth.roles import Role

PLACEHOLDER_TOKEN = "changethis"
MIN_TOKEN_LENGTH = 16
MIN_SESSION_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """Environment variables: `KUBETRADER_<NAME>`, plus the two well-known names below."""

    model_config = SettingsConfigDict(env_prefix="KUBETRADER_", extra="ignore", populate_by_name=True)

    environment: Literal["development", "production"] = Field(
        default="development",
        description="`production` refuses the placeholder token and needs a session secret for the built-in "
        "login; `development` with no users file creates the local admin user.",
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="Machine-to-machine bearer token for automation (helm test, CI, KEDA); never used by the "
        "dashboard. Empty: no machine access.",
    )
    api_token_role: Role = Field(default=Role.RESEARCHER, description="The role the machine token carries.")
    public_read: bool = Field(default=False, description="Read-only endpoints open without signing in.")
    users_file: Path | None = Field(
        default=None,
        description="Users of the built-in login (YAML; in a cluster a mounted Secret); empty in development: "
        "<data_dir>/dashboard/users.yaml with the local admin.",
    )
    session_secret: SecretStr = Field(
        default=SecretStr(""),
        description="Key that signs the built-in login's session tokens (in a cluster: from a Secret); empty in "
        "development: a random key per process.",
    )
    session_ttl_seconds: int = Field(default=8 * 3600, ge=60, le=7 * 86400, description="How long a session lasts.")
    oidc_issuer: str | None = Field(default=None, description="OIDC issuer whose ID tokens the API accepts.")
    oidc_audience: str | None = Field(default=None, description="Expected `aud` of those tokens (the client id).")
    oidc_jwks_url: str | None = Field(default=None, description="JWKS URL; empty: from the issuer's discovery.")
    oidc_username_claim: str = Field(default="email", description="Claim naming the user (else `sub`).")
    oidc_groups_claim: str = Field(default="groups", description="Claim listing the user's groups.")
    oidc_viewer_groups: list[str] = Field(default_factory=list, description="Groups that get the viewer role.")
    oidc_researcher_groups: list[str] = Field(default_factory=list, description="Groups that get researcher.")
    oidc_trader_groups: list[str] = Field(default_factory=list, description="Groups that get the trader role.")
    oidc_default_role: Role | None = Field(
        default=None, description="Role of a signed-in OIDC user in no mapped group; empty: refused."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body, refused with 413 before it is read."
    )
    submit_rate_limit: int = Field(
        default=30, ge=0, description="Submissions per identity and window (0: unlimited); over it: 429."
    )
    submit_rate_window_seconds: float = Field(default=60.0, gt=0, description="The submission limit's window.")
    login_rate_limit: int = Field(default=10, ge=0, description="Sign-in attempts per user name per minute.")
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
    def _refuse_placeholder_secrets(self) -> Settings:
        token = self.api_token.get_secret_value() if self.api_token else ""
        weak = token == PLACEHOLDER_TOKEN or len(token) < MIN_TOKEN_LENGTH
        if token and self.environment != "development" and weak:
            raise ValueError(
                f"KUBETRADER_API_TOKEN must be a secret of at least {MIN_TOKEN_LENGTH} characters outside "
                f"development (it is {'the placeholder' if token == PLACEHOLDER_TOKEN else 'too short'}), or unset"
            )
        secret = self.session_secret.get_secret_value()
        if self.users_file and self.environment != "development" and len(secret) < MIN_SESSION_SECRET_LENGTH:
            raise ValueError(
                f"KUBETRADER_SESSION_SECRET must be a secret of at least {MIN_SESSION_SECRET_LENGTH} characters "
                "when KUBETRADER_USERS_FILE is set outside development"
            )
        if bool(self.oidc_issuer) != bool(self.oidc_audience):
            raise ValueError("KUBETRADER_OIDC_ISSUER and KUBETRADER_OIDC_AUDIENCE are set together or not at all")
        return self

    @property
    def uses_placeholder_token(self) -> bool:
        return self.api_token is not None and self.api_token.get_secret_value() == PLACEHOLDER_TOKEN

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
