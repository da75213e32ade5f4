"""A study's progress in Redis, for whoever watches it without Optuna access.

The driver (a Job in the cluster) writes one small hash per study after every
collected result; the operator's timer reads it into the OptimizationStudy's status,
so the driver needs no write access to custom resources (the same reason Backtest
Jobs report through their termination message).
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel

KEY = "kubetrader:study:{name}:progress"
TTL_SECONDS = 7 * 24 * 3600


class PublishedProgress(BaseModel):
    study_name: str
    done: int
    failed: int
    running: int
    infeasible: int
    best_value: float | None
    best_params: dict[str, Any]
    updated_at: float


def progress_key(study_name: str) -> str:
    return KEY.format(name=study_name)


def publish_progress(client: Any, study_name: str, progress: Any) -> None:
    """Write a StudyProgress (from the driver's callback) as the study's progress hash."""
    record = PublishedProgress(
        study_name=study_name,
        done=progress.done,
        failed=progress.failed,
        running=progress.running,
        infeasible=progress.infeasible,
        best_value=progress.best_value,
        best_params=progress.best_params,
        updated_at=time.time(),
    )
    key = progress_key(study_name)
    pipe = client.pipeline(transaction=True)
    pipe.set(key, record.model_dump_json())
    pipe.expire(key, TTL_SECONDS)
    pipe.execute()


def read_progress(client: Any, study_name: str) -> PublishedProgress | None:
    raw = client.get(progress_key(study_name))
    if not raw:
        return None
    return PublishedProgress.model_validate(json.loads(raw))
