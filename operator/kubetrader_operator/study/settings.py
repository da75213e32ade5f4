"""Settings of the OptimizationStudy handlers that the operator-wide settings do not have.

Read from `KUBETRADER_OPERATOR_<FIELD>` like the rest (the Helm chart sets them), and
read at call time, not at import, so a changed environment applies to the next study.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StudySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBETRADER_OPERATOR_", frozen=True)

    optuna_storage: str | None = Field(
        default=None,
        description="Optuna storage URL for every study's driver (default: a journal file on the data volume). "
        "It may say $(POSTGRES_PASSWORD) where the password goes: see optuna_password_secret.",
    )
    optuna_password_secret: str | None = Field(
        default=None,
        description="Secret whose key `optuna_password_key` the driver pod gets as POSTGRES_PASSWORD, which "
        "Kubernetes substitutes into the storage URL: the password never sits in the operator or a Job spec.",
    )
    optuna_password_key: str = "password"
    study_signing_secret: str | None = Field(
        default=None,
        description="Secret whose key `study_signing_key` the driver gets as KUBETRADER_STUDY_SIGNING_KEY: the "
        "HMAC key of the cmaes sampler's pickled state (kubetrader.optimize.signing); without it cmaes is refused.",
    )
    study_signing_key: str = "key"
    stop_wait_seconds: float = Field(
        default=60.0, gt=0, description="On delete: how long to wait for the driver pod to go before moving on."
    )


@lru_cache(maxsize=1)
def get_study_settings() -> StudySettings:
    return StudySettings()
